"""The parsers' token checks written with str methods (no `re` in a sample's start-up) accept exactly what the
regular expressions they replaced accept: over random tokens of ASCII and non-ASCII letters, digits
(superscripts, other scripts'), signs, separators and blanks."""

from __future__ import annotations

import random
import re

import pytest

from connwatch.errors import ParseError
from connwatch.parsers.netstat_snmp import is_prefix
from connwatch.parsers.numbers import MAX_DIGITS, hexnum, is_decimal, is_word, num
from connwatch.parsers.sysctl import parse_reserved_ports

ALPHABET = ["a", "Z", "q", "0", "9", "5", "f", "F", "g", "_", "-", ":", "+", " ", "\n", "\t", "é", "ß", "٣", "²",
            "𝟙", "Ⅻ", "x", "ǅ", ".", ",", "\x00"]


def _tokens(seed: str, count: int = 6000) -> list[str]:
    rng = random.Random(seed)
    out = ["", "-", "_", ":", "a", "A1:", "-0", "0" * MAX_DIGITS, "9" * (MAX_DIGITS + 1), "f" * 16, "f" * 17]
    for _ in range(count):
        out.append("".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 24 if rng.random() < 0.2 else 5))))
    return out


@pytest.mark.parametrize(("check", "pattern"), [
    (is_decimal, r"-?[0-9]+"),
    (is_word, r"[A-Za-z][A-Za-z0-9_]*"),
    (lambda t: is_word(t, underscore=False), r"[A-Za-z][A-Za-z0-9]*"),
    (is_prefix, r"[A-Za-z][A-Za-z0-9]*:"),
])
def test_check_accepts_what_its_expression_accepts(check: object, pattern: str) -> None:
    assert callable(check)
    compiled = re.compile(pattern)
    for token in _tokens(pattern):
        assert check(token) == (compiled.fullmatch(token) is not None), repr(token)


def _accepts(call: object, token: str) -> bool:
    assert callable(call)
    try:
        call(token)
    except ValueError:
        return False
    return True


def test_num_and_hexnum_accept_what_their_expressions_accept() -> None:
    decimal, hexadecimal = re.compile(rf"-?[0-9]{{1,{MAX_DIGITS}}}"), re.compile(r"[0-9A-Fa-f]{1,16}")
    for token in _tokens("numbers"):
        assert _accepts(num, token) == (decimal.fullmatch(token) is not None), repr(token)
        assert _accepts(hexnum, token) == (hexadecimal.fullmatch(token) is not None), repr(token)


def test_reserved_port_items_are_read_as_their_expression_reads_them() -> None:
    item = re.compile(r"([0-9]+)(?:-([0-9]+))?")
    rng = random.Random("ports")
    pool = ["1", "80", "65535", "65536", "0", "-", "", "٣", "²", "a", " ", "99999999999999999999999"]
    for _ in range(4000):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 4)))
        match = item.fullmatch(text.strip())
        try:
            got = parse_reserved_ports(text, "t")
        except ParseError as exc:
            assert match is None or "above" in str(exc) or "backwards" in str(exc) or "digits" in str(exc), text
            continue
        if not text.strip():
            assert got == ()
            continue
        assert match is not None, repr(text)
        low = int(match.group(1))
        assert got == ((low, int(match.group(2)) if match.group(2) else low),), text
