"""The block path (PlainBlocks: parsers/ss_text.plain_ss_block, parsers/netstat_text.plain_windows_block,
analyze/plaincount.py, Segmenter.feed_plain) gives exactly what the row-by-row path gives: the same RowScan
(counts, keys in the same order, listeners, notes, ports), the same segments and the same analyze report,
on every real connection listing here and on fuzzed row mixes. Small block sizes make real captures (a
few hundred lines, a header first) go through many PlainBlocks and many block edges."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connwatch.analyze import detect as fmt
from connwatch.analyze import plaincount, rowpass
from connwatch.analyze.rowpass import FAST_KINDS, Recognised, RowScan, scan_rows, young_limit
from connwatch.analyze.segment import Segmenter, segment
from connwatch.cli import main
from connwatch.errors import ParseError
from connwatch.parsers.conn_rows import PlainBlock

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "captures"
SHARED = Path("/work/shared/captures")  # real captures of this project's machines' peers (SOURCES.md there)
SIZES = (2, 3, 5, 17, 1024)


def _listings() -> list[Path]:
    paths = sorted(FIXTURES.rglob("*.txt"))
    if SHARED.is_dir():
        paths += sorted(p for d in ("ss", "netstat_an") for p in (SHARED / d).glob("*.txt"))
    out = []
    for path in paths:
        kind = fmt.detect(path.read_text(errors="replace")[:20000])
        if kind in FAST_KINDS:
            out.append(path)
    return out


LISTINGS = _listings()


def state(scan: RowScan) -> dict[str, Any]:
    """Everything a RowScan holds, key order included."""
    return {"rows": scan.rows, "listeners": scan.listeners, "notes": scan.notes, "other": scan.other,
            "sources": list(scan.sources.items()), "dests": list(scan.dests.items()), "unresolved": scan.unresolved,
            "ports": scan.ports, "used": bytes(scan.outbound_ports) if scan.outbound_ports is not None else None,
            "local_ports": scan.local_ports, "young": scan.young, "timed_tw": scan.timed_tw}


def outcome(lines: list[str], kind: str, ports: frozenset[int], size: int) -> dict[str, Any] | str:
    try:
        return state(scan_rows(lambda: [lines], "x", kind, ports, young_limit(None), size))
    except ParseError as exc:
        return f"ParseError {exc}"


def plain_blocks(lines: list[str], kind: str, size: int) -> int:
    return sum(isinstance(b, PlainBlock) for b in Recognised([lines], kind, size))


def same_everywhere(lines: list[str], kind: str) -> int:
    """Asserts the block path at every size equals the row path (with no listeners known and with the
    listing's own); returns how many PlainBlocks the sizes made."""
    row_path = outcome(lines, kind, frozenset(), 0)
    ports = frozenset(x.port for x in row_path["listeners"]) if isinstance(row_path, dict) else frozenset()
    row_ported = outcome(lines, kind, ports, 0)
    for size in SIZES:
        assert outcome(lines, kind, frozenset(), size) == row_path, size
        assert outcome(lines, kind, ports, size) == row_ported, size
        assert segments_by_blocks(lines, kind, size) == segment(lines), size
    return sum(plain_blocks(lines, kind, size) for size in SIZES)


def segments_by_blocks(lines: list[str], kind: str, size: int) -> Any:
    """The segments as analyze/run.py makes them in its one pass (PlainBlocks through feed_plain)."""
    seg = Segmenter()
    for block in Recognised([lines], kind, size):
        if isinstance(block, PlainBlock):
            seg.feed_plain(block.lines, block.shapes)
        else:
            seg.feed(block)
    return seg.finish()


@pytest.mark.parametrize("path", LISTINGS, ids=lambda p: p.name)
def test_real_listing_reads_the_same_by_blocks_and_by_rows(path: Path) -> None:
    text = path.read_text(errors="replace")
    kind = fmt.detect(text[:20000])
    assert kind is not None
    for lines in (text.split("\n"), text.replace("\n", "\r\n").split("\n")):  # CRLF: `\r` left on each line
        same_everywhere(lines, kind)


def test_the_block_path_is_taken_on_real_listings() -> None:
    taken = {p.name: same_everywhere(p.read_text(errors="replace").split("\n"),
                                     fmt.detect(p.read_text(errors="replace")[:20000]) or "")
             for p in LISTINGS}
    assert len(LISTINGS) >= 6
    assert sum(1 for n in taken.values() if n) >= 4, taken  # ss and Windows listings of plain rows


@pytest.mark.parametrize("path", LISTINGS, ids=lambda p: p.name)
def test_real_listing_report_is_the_same_by_blocks_and_by_rows(path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    def report() -> tuple[int, str]:
        code = main(["analyze", "--format", "json", str(path)])
        out = json.loads(capsys.readouterr().out or "null")
        if isinstance(out, dict):
            out.pop("generated_at", None)
        return code, json.dumps(out, sort_keys=True)

    monkeypatch.setattr(rowpass, "BLOCK_LINES", 3)  # many PlainBlocks in a few hundred lines
    by_blocks = report()
    monkeypatch.setattr(rowpass, "_PLAIN_BLOCK", {})
    assert report() == by_blocks


# Fuzzing: rows of the shapes the block path takes, mixed with every kind of line it must hand back.
_V4 = st.builds(lambda a, b: f"10.{a}.0.{b}", st.integers(0, 3), st.integers(1, 4))
_V6 = st.sampled_from(["[::1]", "[fe80::1%eth0]", "[::ffff:10.0.0.1]", "[2001:db8::5]", "*", "[::]", "::1"])
_HOSTY = st.sampled_from(["myhost", "0.0.0.0", "localhost"])  # host names: counted by state only
_PORT = st.sampled_from(["22", "80", "443", "5432", "40000", "40001", "0", "*", "http", "022", "65535", "65536",
                         "00443"])
_ADDR = st.builds(lambda h, p: f"{h}:{p}", st.one_of(_V4, _V4, _V4, _V6, _HOSTY), _PORT)
# lines a plain row's fast path must not take as it is: the whole listing then goes to the parser's ConnRows
_BAD = ["ESTAB 0 0 10.0.0.1:99999 10.0.0.2:1", "ESTAB 0 0 10.0.0.1 10.0.0.2:1", "ESTAB 0 0 10.0.0.1:1 1.2.3:x",
        "ESTAB 0 0 [a]:1]:2 10.0.0.2:1", "ESTAB x 0 10.0.0.1:1 10.0.0.2:2", "ESTAB 0 0 10.0.0.1:1 :5"]
_BLANK = st.sampled_from([" ", "  ", "\t", " \t "])
_SS_STATE = st.sampled_from(["ESTAB", "ESTAB", "TIME-WAIT", "SYN-SENT", "UNCONN", "CLOSE-WAIT", "LISTEN",
                             "NEW-SYN-RECV", "CLOSING", "FIN-WAIT-1"])
_WIN_STATE = st.sampled_from(["ESTABLISHED", "ESTABLISHED", "TIME_WAIT", "SYN_SENT", "CLOSED", "LISTENING",
                              "CLOSE_WAIT", "HERGESTELLT", "BOUND"])


def _join(parts: list[str], blanks: list[str]) -> str:
    return "".join(p + b for p, b in zip(parts, blanks, strict=False)) + parts[-1]


_QUEUE = st.sampled_from(["0", "0", "5", "007"])
_SS_ROW = st.builds(lambda s, q, a, b, sp: _join([s, q, "0", a, b], sp), _SS_STATE, _QUEUE, _ADDR, _ADDR,
                    st.lists(_BLANK, min_size=4, max_size=4))
_SS_ODD = st.sampled_from([
    "State      Recv-Q Send-Q Local Address:Port   Peer Address:Port", "", "   ",
    "\tskmem:(r0,rb131072,t0,tb2626560,f0,w0,o0,bl0,d3)", " timer:(timewait,59sec,0)",
    "tcp   ESTAB 0 0 10.0.0.1:22 10.0.0.9:5000", "udp   UNCONN 0 0 0.0.0.0:68 0.0.0.0:*",
    "ESTAB 0 0 10.0.0.1:22 10.0.0.9:5000 users:((\"sshd\",pid=1,fd=3))", "ESTAB 0 0 10.0.0.1:22",
    " ESTAB 0 0 10.0.0.1:22 10.0.0.9:5001", "ESTAB 0 0 10.0.0.1:22 10.0.0.9:5002 ESTAB", "LISTEN 0 128 *:40000 *:*",
    "ESTAB 0 0 a=b:1 10.0.0.1:2", "ESTAB 0 0 10.0.0.1:22 10.0.0.9:5003\r", *_BAD])
_WIN_ROW = st.builds(lambda ind, s, a, b, pid, sp: ind + _join(["TCP", a, b, s, *pid], sp),
                     st.sampled_from(["  ", " ", ""]), _WIN_STATE, _ADDR, _ADDR,
                     st.sampled_from([["0"], ["4"], ["1192"]]),
                     st.lists(_BLANK, min_size=4, max_size=4))
_WIN_ODD = st.sampled_from([
    "", "Active Connections", "  Proto  Local Address          Foreign Address        State           PID",
    "  TCPv6  [::1]:1 [::1]:2 ESTABLISHED 4", " [svchost.exe]", "  UDP    0.0.0.0:500  *:*  4",
    "  TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       1192",
    "  TCP    10.0.0.5:49700 52.1.1.1:443 ESTABLISHED 4 InHost", "  TCP 10.0.0.5:1 10.0.0.6:2 ESTABLISHED 4\r",
    "  TCP    10.0.0.5:1 10.0.0.6:2 ESTABLISHED", "  TCP    10.0.0.5:1 10.0.0.6:2 ESTABLISHED x",
    *("  TCP    " + " ".join(bad.split()[3:5]) + " ESTABLISHED 4" for bad in _BAD)])


_LINUX_STATE = st.sampled_from(["ESTABLISHED", "ESTABLISHED", "TIME_WAIT", "SYN_SENT", "CLOSE", "CLOSE_WAIT",
                                 "LISTEN", "SYN_RECV", "FIN_WAIT1", "CLOSING"])
_LINUX_ROW = st.builds(lambda proto, q, a, b, s, owner, sp: _join([proto, q, "0", a, b, s, *owner], sp),
                       st.sampled_from(["tcp", "tcp", "tcp", "tcp6"]), _QUEUE, _ADDR, _ADDR, _LINUX_STATE,
                       st.sampled_from([[], [], ["-"], ["1192/sshd"]]),
                       st.lists(st.sampled_from([" ", "      ", "  "]), min_size=6, max_size=6))
_LINUX_ODD = st.sampled_from([
    "", "Active Internet connections (servers and established)",
    "Proto Recv-Q Send-Q Local Address           Foreign Address         State", "tcp6 0 0 :::22 :::* LISTEN",
    "tcp        0      0 0.0.0.0:22              0.0.0.0:*               LISTEN", "udp 0 0 0.0.0.0:68 0.0.0.0:*",
    "tcp 0 0 10.0.0.1:22 10.0.0.9:5000 ESTABLISHED off (0.00/0/0)", "tcp 0 0 10.0.0.1:22 10.0.0.9:5000 ESTABLISHED",
    "Active UNIX domain sockets (servers and established)", "unix  2 [ ACC ] STREAM LISTENING 1234 /run/x",
    "tcp 0 0 10.0.0.1:ESTABLISHED 10.0.0.9:5000 ESTABLISHED", "tcp 0 0 10.0.0.1:22 10.0.0.9:50 TIME_WAIT 1/x y",
    "tcp 0 0 10.0.0.1:EST ABLISHED:1 ESTABLISHED", " tcp 0 0 10.0.0.1:22 10.0.0.9:5001 ESTABLISHED",
    "tcp 0 0 10.0.0.1:22 10.0.0.9:5003 ESTABLISHED\r", *("tcp 0 0 " + " ".join(bad.split()[3:5]) + " ESTABLISHED"
                                                         for bad in _BAD)])


def _listing(rows: list[str], odd: list[str], picks: list[int], cut: int) -> list[str]:
    lines = list(rows)
    for line, at in zip(odd, picks, strict=False):
        lines.insert(at % (len(lines) + 1), line)
    if lines and cut:
        lines[-1] = lines[-1][:max(1, len(lines[-1]) - cut)]  # a truncated last line
    return lines


_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(rows=st.lists(_SS_ROW, min_size=1, max_size=40), odd=st.lists(_SS_ODD, max_size=6),
       picks=st.lists(st.integers(0, 60), min_size=6, max_size=6), cut=st.integers(0, 12),
       header=st.booleans())
def test_fuzzed_ss_rows_read_the_same_by_blocks_and_by_rows(rows: list[str], odd: list[str], picks: list[int],
                                                            cut: int, header: bool) -> None:
    head = ["State Recv-Q Send-Q Local:Port Peer:Port"] if header else []
    same_everywhere(head + _listing(rows, odd, picks, cut), fmt.SS)


@_SETTINGS
@given(rows=st.lists(_WIN_ROW, min_size=1, max_size=40), odd=st.lists(_WIN_ODD, max_size=6),
       picks=st.lists(st.integers(0, 60), min_size=6, max_size=6), cut=st.integers(0, 12))
def test_fuzzed_windows_rows_read_the_same_by_blocks_and_by_rows(rows: list[str], odd: list[str], picks: list[int],
                                                                 cut: int) -> None:
    same_everywhere(["", "Active Connections", "", *_listing(rows, odd, picks, cut)], fmt.NETSTAT_WINDOWS)


@_SETTINGS
@given(rows=st.lists(_LINUX_ROW, min_size=1, max_size=40), odd=st.lists(_LINUX_ODD, max_size=6),
       picks=st.lists(st.integers(0, 60), min_size=6, max_size=6), cut=st.integers(0, 12))
def test_fuzzed_linux_netstat_rows_read_the_same_by_blocks_and_by_rows(rows: list[str], odd: list[str],
                                                                       picks: list[int], cut: int) -> None:
    same_everywhere(["Active Internet connections (servers and established)",
                     "Proto Recv-Q Send-Q Local Address           Foreign Address         State",
                     *_listing(rows, odd, picks, cut)], fmt.NETSTAT_LINUX)


def test_plain_rows_of_every_kind_are_taken_as_blocks() -> None:
    """The fuzz grammar's plain rows do reach the block path (it is not only the fallback being compared)."""
    ss = ["ESTAB 0 0 10.0.0.1:22 10.0.0.9:5000", "TIME-WAIT\t0  0   [::1]:40000   [::1]:80",
          "SYN-SENT 0 1 [fe80::1%eth0]:22 10.0.0.7:http", "UNCONN 0 0 10.0.0.1:41000 0.0.0.0:*"] * 3
    assert plain_blocks(ss, fmt.SS, 4) == 3
    assert same_everywhere(ss, fmt.SS) > 0
    win = ["  TCP    10.0.0.5:49700         52.1.1.1:443           ESTABLISHED     4242",
           "  TCP    [::1]:50515            [::1]:50051            TIME_WAIT       0"] * 4
    assert plain_blocks(win, fmt.NETSTAT_WINDOWS, 4) == 2
    assert same_everywhere(win, fmt.NETSTAT_WINDOWS) > 0
    mixed = win[:2] + [w.rsplit(" ", 1)[0] for w in win[2:4]]  # with and without a PID column: not one shape
    assert plain_blocks(mixed, fmt.NETSTAT_WINDOWS, 4) == 0
    linux = ["tcp        0      0 10.0.0.5:49700          52.1.1.1:443            ESTABLISHED",
             "tcp        0      0 10.0.0.5:49702          52.1.1.1:443            TIME_WAIT  ", "tcp 0 0 "
             "10.0.0.5:22 10.0.0.9:5000 ESTABLISHED", "tcp 7 0 [::1]:22 [::1]:5001 CLOSE_WAIT"] * 2
    assert plain_blocks(linux, fmt.NETSTAT_LINUX, 4) == 2
    assert same_everywhere(linux, fmt.NETSTAT_LINUX) > 0
    owners = [row + " 1192/sshd" for row in linux]
    assert plain_blocks(owners, fmt.NETSTAT_LINUX, 4) == 2
    v6 = [row.replace("tcp ", "tcp6", 1) for row in linux]  # family hint 6: row by row
    assert plain_blocks(v6, fmt.NETSTAT_LINUX, 4) == 0
    inside = [*linux[:3], "tcp 0 0 10.0.0.5:22 TIME_WAIT:5000 ESTABLISHED"]  # a state name in an address
    assert plain_blocks(inside, fmt.NETSTAT_LINUX, 4) == 0
    same_everywhere(inside, fmt.NETSTAT_LINUX)


@pytest.mark.parametrize("tail", [[], ["ESTAB 0 0 10.0.0.1:40000 10.0.0.9:80"] * 3])
def test_rows_a_block_check_alone_would_misalign_are_read_by_the_parser(tail: list[str]) -> None:
    """9 tokens then 1: 10 tokens for 2 lines, each led by a state and a blank, so the block's slots put
    `ESTAB` in an address slot; and a peer without ':' (`80`) from a listening port. An address without ':'
    sends the listing to the parser, which refuses those lines."""
    for odd in (["ESTAB 0 0 10.0.0.1:22 10.0.0.2:3 ESTAB 0 0 10.0.0.1:22", "ESTAB "],
                ["ESTAB 0 0 10.0.0.1:22 80", "ESTAB 0 0 10.0.0.1:22 10.0.0.2:5"]):
        lines = ["LISTEN 0 128 *:22 *:*", "ESTAB 0 0 10.0.0.1:22 10.0.0.2:2", *odd, *tail]
        assert plain_blocks(lines, fmt.SS, 2) + plain_blocks(lines, fmt.SS, 3) >= 1
        assert isinstance(outcome(lines, fmt.SS, frozenset({22}), 0), str)  # the parser's error
        same_everywhere(lines, fmt.SS)


def test_syn_sent_from_a_listening_port_is_outbound_in_a_block() -> None:
    lines = ["LISTEN 0 128 *:22 *:*"] + ["SYN-SENT 0 1 10.0.0.1:22 10.0.0.8:80", "ESTAB 0 0 10.0.0.1:22 10.0.0.9:5000",
                                        "UNCONN 0 0 10.0.0.1:22 0.0.0.0:*"] * 4
    assert plain_blocks(lines, fmt.SS, 3) >= 3
    same_everywhere(lines, fmt.SS)
    scan = outcome(lines, fmt.SS, frozenset({22}), 3)
    assert isinstance(scan, dict) and [k for k, _ in scan["dests"]] == [("10.0.0.1", "10.0.0.8", 80)]


@pytest.mark.parametrize("max_runs", [1, 3, 32])
def test_alternating_uniform_blocks_keep_the_order_of_first_rows(monkeypatch: pytest.MonkeyPatch,
                                                                  max_runs: int) -> None:
    """Blocks whose inbound (outbound) rows share one state and endpoint (host) are counted by the peer alone
    (plaincount.Runs): runs of such blocks alternating, a peer met again in a later run, and runs flushed
    early (max_runs) give the keys in the order of their first rows, as the row path does."""
    monkeypatch.setattr(plaincount, "_MAX_RUNS", max_runs)
    groups_in = ((22, "ESTAB"), (443, "ESTAB"), (22, "TIME-WAIT"))
    groups_out = (("10.0.0.1", "TIME-WAIT"), ("10.0.0.2", "TIME-WAIT"), ("10.0.0.1", "ESTAB"))
    lines = ["LISTEN 0 128 *:22 *:*", "LISTEN 0 128 *:443 *:*"]
    for turn in range(5):  # the same groups again: some peers first seen in an earlier run, some new
        port, state = groups_in[turn % 3]
        lines += [f"{state} 0 0 10.0.0.1:{port} 10.9.{turn % 3}.{i + turn}:{40000 + i}" for i in range(6)]
        host, state = groups_out[turn % 3]
        lines += [f"{state} 0 0 {host}:{50000 + i} 10.8.{turn % 2}.{i + turn}:5432" for i in range(6)]
    assert same_everywhere(lines, fmt.SS) > 0
    scan = outcome(lines, fmt.SS, frozenset({22, 443}), 3)
    assert isinstance(scan, dict) and len(scan["sources"]) >= 10 and len(scan["dests"]) >= 10


def test_a_paste_with_a_header_is_halved_into_plain_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A few hundred rows after a header and before a prompt (one part of 1,024 lines at most, not plain as a
    whole) are read as PlainBlocks after halving; a listing with no plain rows is halved only at its start."""
    rows = [f"ESTAB 0 0 10.0.0.1:{40000 + i} 10.0.{i % 3}.9:5432" for i in range(600)]
    paste = ["State Recv-Q Send-Q Local Address:Port Peer Address:Port", *rows, "$ exit"]
    assert plain_blocks(paste, fmt.SS, 1024) >= 3
    assert same_everywhere(paste, fmt.SS) >= 3
    looked: list[int] = []

    def counted(lines: list[str], open_end: bool = True) -> PlainBlock | None:
        looked.append(len(lines))
        return None

    monkeypatch.setitem(rowpass._PLAIN_BLOCK, fmt.SS, counted)
    owners = [row + ' users:(("java",pid=7,fd=9))' for row in rows] * 10  # 6,000 lines, none plain
    assert plain_blocks(owners, fmt.SS, 1024) == 0
    assert sum(looked) <= 2 * len(owners)  # each line looked at about once, not once per halving
