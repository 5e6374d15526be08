"""parse_netstat_snmp's fast path against its careful path (careful_netstat_snmp): the same counters in the
same order, or the same ParseError (message and line), on every fixture, on the live files and on files
mutated token by token and line by line."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connwatch.errors import ParseError
from connwatch.parsers import netstat_snmp
from connwatch.parsers.netstat_snmp import careful_netstat_snmp, careful_snmp6, parse_netstat_snmp, parse_snmp6

FIXTURES = Path(__file__).parent.parent / "fixtures"
FILES = sorted(p for p in FIXTURES.rglob("*") if p.is_file() and p.name in ("netstat", "snmp")
               and p.parent.name == "net")
SNMP6 = sorted(p for p in FIXTURES.rglob("snmp6") if p.is_file())


def outcome(parse: object, text: str) -> tuple[str, object]:
    """What a parser gives: its counters as (key, value) pairs in order, or its error's message and line."""
    try:
        got = parse(text, "src")  # type: ignore[operator]
    except ParseError as exc:
        return "error", (exc.source, exc.message, exc.line)
    return "counters", list(got.items())


def same(text: str) -> None:
    assert outcome(parse_netstat_snmp, text) == outcome(careful_netstat_snmp, text)


def test_fixtures_are_there() -> None:
    assert len(FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_fixture_same_as_careful(path: Path) -> None:
    text = path.read_text()
    assert outcome(parse_netstat_snmp, text)[0] == "counters"
    same(text)


@pytest.mark.parametrize("name", ["netstat", "snmp"])
def test_live_file_takes_the_fast_path(name: str) -> None:
    path = Path("/proc/net") / name
    if not path.exists():
        pytest.skip("no /proc/net")
    text = path.read_text()
    assert netstat_snmp._fast_netstat_snmp(text, "src") is not None  # (the path the agent takes)
    same(text)


TOKENS = ["-1", "-", "--1", "0", "1" * 20, "1" * 21, "-" + "1" * 20, "-" + "1" * 21, "+5", "1_000", "\u0663",
          "\u00b2", "x", "Tcp:", "TcpExt:", "Ip:", "RtoMin", "Max_Conn", "9Name", "", "0x10"]


def mutations(text: str, rng: random.Random) -> str:
    lines = text.split("\n")
    for _ in range(rng.randint(1, 3)):
        if not lines:
            break
        i = rng.randrange(len(lines))
        kind = rng.randrange(6)
        tokens = lines[i].split(" ")
        if kind == 0:  # a token replaced
            tokens[rng.randrange(len(tokens))] = rng.choice(TOKENS)
            lines[i] = " ".join(tokens)
        elif kind == 1:  # a token dropped or doubled
            j = rng.randrange(len(tokens))
            tokens[j:j + 1] = [] if rng.random() < 0.5 else [tokens[j]] * 2
            lines[i] = " ".join(tokens)
        elif kind == 2:  # a line dropped, doubled or blanked
            lines[i:i + 1] = rng.choice([[], [lines[i]] * 2, [""], ["  \t"]])
        elif kind == 3:  # a line from elsewhere
            lines[i] = rng.choice(lines)
        elif kind == 4:  # whitespace
            lines[i] = lines[i].replace(" ", rng.choice(["  ", "\t", "\r", " \x0b"]), 1)
        else:  # cut short
            lines = lines[:i]
    return "\n".join(lines)


def _mutated_errors(path: Path, text: str, careful: Callable[..., object], compare: Callable[[str], None]) -> int:
    """150 mutations of a fixture, each parsed by both paths (`compare`): how many the careful parser refused."""
    rng = random.Random(path.name + str(len(text)))
    errors = 0
    for _ in range(150):
        mutated = mutations(text, rng)
        errors += outcome(careful, mutated)[0] == "error"
        compare(mutated)
    return errors


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_mutated_fixture_same_as_careful(path: Path) -> None:
    assert _mutated_errors(path, path.read_text(), careful_netstat_snmp, same) > 20  # (they do reach the errors)


def test_negative_value_read_token_by_token() -> None:
    text = "Tcp: RtoAlgorithm MaxConn\nTcp: 1 -1\nTcpExt: A B\nTcpExt: 2 3\n"
    assert parse_netstat_snmp(text, "s") == {"Tcp.RtoAlgorithm": 1, "Tcp.MaxConn": -1, "TcpExt.A": 2, "TcpExt.B": 3}
    with pytest.raises(ParseError) as exc:
        parse_netstat_snmp("Tcp: A B\nTcp: 1 --1\n", "s")
    assert (exc.value.line, exc.value.message) == (2, "non-integer for Tcp.B '--1'")
    with pytest.raises(ParseError) as exc:
        parse_netstat_snmp("Tcp: A B\nTcp: 1 " + "2" * 21 + "\n", "s")
    assert exc.value.line == 2 and "more than 20 digits" in exc.value.message


def test_duplicate_named_by_the_careful_path() -> None:
    with pytest.raises(ParseError) as exc:
        parse_netstat_snmp("Tcp: A B\nTcp: 1 2\nTcp: B\nTcp: 3\n", "s")
    assert (exc.value.line, exc.value.message) == (4, "counter Tcp.B appears twice")


WORDS = st.sampled_from(["Tcp:", "TcpExt:", "A", "B", "C_d", "1", "-1", "22", "x:", "\u0663", "-", "00"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(WORDS, max_size=5).map(" ".join), max_size=6).map("\n".join))
def test_fuzzed_same_as_careful(text: str) -> None:
    same(text)


def same6(text: str) -> None:
    assert outcome(parse_snmp6, text) == outcome(careful_snmp6, text)


@pytest.mark.parametrize("path", SNMP6, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_snmp6_fixture_and_mutations_same_as_careful(path: Path) -> None:
    text = path.read_text()
    if outcome(careful_snmp6, text)[0] == "counters":  # (procfs_4x's ends with a stray "Mode: 644")
        assert netstat_snmp._fast_snmp6(text) is not None
    same6(text)
    assert _mutated_errors(path, text, careful_snmp6, same6) > 20


def test_snmp6_live_file_takes_the_fast_path() -> None:
    path = Path("/proc/net/snmp6")
    if not path.exists():
        pytest.skip("no IPv6")
    text = path.read_text()
    assert netstat_snmp._fast_snmp6(text) is not None
    same6(text)


def test_snmp6_edges_go_careful() -> None:
    for text in ("A 1\nB 2 3\n", "A 1 B\n2\n", "A 1\n\nB 2\n", "A 1\nA 2\n", "A -1\n", "9A 1\n", "A 1\n\n"):
        same6(text)
    assert parse_snmp6("A 1\nB\t2\n", "s") == {"snmp6.A": 1, "snmp6.B": 2}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["Ip6A", "Ip6B", "1", "-1", "x_y", "\u0663", "22", "9z"]), max_size=3)
                .map(" ".join), max_size=5).map("\n".join))
def test_snmp6_fuzzed_same_as_careful(text: str) -> None:
    same6(text)
