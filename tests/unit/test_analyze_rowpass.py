"""The one-pass row counting (analyze/rowpass.py) gives what the parsers' ConnRows fed to the live
aggregator give (parsers/sock_diag.SocketAggregator, as analyze did in its second pass), for the real
captures and for the rows the fast path must hand back to the parser."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connwatch.analyze import detect as fmt
from connwatch.analyze.rowpass import FAST_KINDS, combine, conn_rows, scan_fast, scan_rows, try_fast, young_limit
from connwatch.analyze.segment import segment
from connwatch.model import SocketSummary, TcpState
from connwatch.parsers.conn_rows import raw_address
from connwatch.parsers.sock_diag import SocketAggregator

CAP = Path(__file__).resolve().parents[1] / "fixtures" / "captures"
HEADER = "State Recv-Q Send-Q Local Address:Port Peer Address:Port"


def reference(lines: list[str], kind: str, ports: frozenset[int]) -> SocketSummary:
    """The former second pass: every ConnRow fed to SocketAggregator (analyze/build.py before one pass)."""
    agg = SocketAggregator(ports, None)
    for row in conn_rows(lines, "x", kind, []):
        if row.state == int(TcpState.LISTEN):
            continue
        if not row.resolved or row.remote is None:
            agg.total += 1
            agg.by_state[row.state & 15] += 1
            continue
        fam, src = raw_address(row.local, row.family)
        rfam, dst = raw_address(row.remote, row.family)
        if rfam != fam:
            fam = socket.AF_INET6
            src = src if ":" in row.local else b"\0" * 10 + b"\xff\xff" + src[:4]
            dst = dst if ":" in row.remote else b"\0" * 10 + b"\xff\xff" + dst[:4]
        agg.add(fam, row.state, 0, 0, socket.htons(row.local_port), socket.htons(row.remote_port), src, dst,
                0, 0, 0, row.expires_ms, 0, 0, 0, 0)
    return agg.summary()


def one_pass(lines: list[str], kind: str) -> tuple[SocketSummary, frozenset[int]]:
    scan = scan_rows(lambda: [lines], "x", kind, (), young_limit(None))
    ports = frozenset(x.port for x in scan.listeners)
    if not scan.valid_for(ports, young_limit(None)):
        scan = scan_rows(lambda: [lines], "x", kind, ports, young_limit(None))
    return combine([scan])[0], ports


def same(a: SocketSummary, b: SocketSummary) -> None:
    assert (a.total, a.by_state) == (b.total, b.by_state)
    assert [(d.local_address, d.remote_address, d.remote_port, d.states, d.time_wait_young)
            for d in a.destinations] == [(d.local_address, d.remote_address, d.remote_port, d.states,
                                          d.time_wait_young) for d in b.destinations]
    assert [(s.source, s.port, s.states) for s in a.sources] == [(s.source, s.port, s.states) for s in b.sources]


CAPTURES = sorted(p for d in ("ss", "netstat") for p in (CAP / d).glob("*.txt"))


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_one_pass_counts_real_captures_as_the_aggregator_did(path: Path) -> None:
    lines = path.read_text(errors="replace").split("\n")
    kind = fmt.detect("\n".join(lines[:200]))
    if kind is None or kind == fmt.SS_SUMMARY:
        pytest.skip(f"{path.name}: not a connection listing")
    try:
        summary, ports = one_pass(lines, kind)
    except Exception as exc:  # the parser refuses it as a whole: then so does the reference
        with pytest.raises(type(exc)):
            reference(lines, kind, frozenset())
        return
    same(summary, reference(lines, kind, ports))


def test_the_fast_path_is_taken_for_plain_ss_and_windows_rows() -> None:
    ss = [HEADER, "LISTEN 0 128 0.0.0.0:80 0.0.0.0:*", "ESTAB 0 0 10.0.0.1:80 10.0.0.2:5000",
          "TIME-WAIT 0 0 10.0.0.1:40000 10.9.9.9:5432"]
    scan = scan_fast([ss], "x", fmt.SS, (), young_limit(None))
    assert scan.rows == 3 and [x.port for x in scan.listeners] == [80]
    win = ["  Proto  Local Address          Foreign Address        State           PID",
           "  TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       1192",
           "  TCP    10.0.0.5:49700         52.1.1.1:443           ESTABLISHED     4242",
           "  TCP    [::1]:50515            [::1]:50051            TIME_WAIT       0"]
    assert fmt.NETSTAT_WINDOWS in FAST_KINDS
    scan = scan_fast([win], "x", fmt.NETSTAT_WINDOWS, (), young_limit(None))
    summary = combine([scan])[0]
    assert [(d.remote_address, d.remote_port, d.states) for d in summary.destinations] == [
        ("52.1.1.1", 443, {"ESTABLISHED": 1}), ("::1", 50051, {"TIME_WAIT": 1})]


EDGE_ROWS = [
    "LISTEN 0 128 *:22 *:*",
    "ESTAB 0 0 [::ffff:10.0.0.1]:22 [::ffff:10.0.0.9]:5000",  # mapped IPv4 merges with plain IPv4
    "ESTAB 0 0 10.0.0.1:22 10.0.0.9:5001",
    "ESTAB 0 0 [fe80::1%eth0]:22 10.0.0.7:5002",  # zone-scoped IPv6 next to an IPv4 peer
    "ESTAB 0 0 myhost:40000 otherhost:https",  # host names (no -n): by state only
    "SYN-SENT 0 1 10.0.0.1:22 10.0.0.8:80",  # SYN-SENT from a listening port is outbound
    "UNCONN 0 0 10.0.0.1:41000 0.0.0.0:*",  # bound, no peer port: no destination
    "CLOSE-WAIT 1 0 10.0.0.1:41001 10.0.0.8:0",
    "ESTAB 0 0 10.0.0.1:41002 10.0.0.8:http",
    "TIME-WAIT 0 0 10.0.0.1:41003 10.0.0.8:80 timer:(timewait,59sec,0)",
    "ESTAB 0 0 10.0.0.1:41004 10.0.0.8:80",
    "\tskmem:(r0,rb131072,t0,tb2626560,f0,w0,o0,bl0,d3)",  # continues the row above (slow path)
    "LISTEN 0 128 0.0.0.0:41004 0.0.0.0:*",  # a listener printed after its connection: read again
]


def test_rows_the_fast_path_hands_back_count_as_the_parser_reads_them() -> None:
    lines = [HEADER, *EDGE_ROWS]
    summary, ports = one_pass(lines, fmt.SS)
    assert ports == {22, 41004}
    same(summary, reference(lines, fmt.SS, ports))
    assert summary.by_state["ESTABLISHED"] == 6 and summary.total == len(EDGE_ROWS) - 3


def test_a_wrong_guess_of_the_listening_ports_is_found() -> None:
    lines = [HEADER, "ESTAB 0 0 10.0.0.1:80 10.0.0.2:5000", "LISTEN 0 128 0.0.0.0:80 0.0.0.0:*"]
    scan = scan_rows(lambda: [lines], "x", fmt.SS, (), young_limit(None))
    assert not scan.valid_for(frozenset({80}), young_limit(None))  # the ESTAB row was taken as outbound
    guessed = scan_rows(lambda: [lines], "x", fmt.SS, {443}, young_limit(None))
    assert not guessed.valid_for(frozenset({80}), young_limit(None))  # 443 is not a listener of the capture
    right = scan_rows(lambda: [lines], "x", fmt.SS, {80}, young_limit(None))
    assert right.valid_for(frozenset({80}), young_limit(None))


def test_an_address_the_parser_refuses_is_its_error_for_its_line() -> None:
    lines = [HEADER, "ESTAB 0 0 10.0.0.1:80 10.0.0.2:5000", "ESTAB 0 0 10.0.0.1:80 10.0.0.2:99999"]
    assert try_fast([lines], "x", fmt.SS, (), young_limit(None)) is None
    with pytest.raises(Exception, match="port 99999 above 65535") as exc:
        scan_rows(lambda: [lines], "x", fmt.SS, (), young_limit(None))
    assert getattr(exc.value, "line", None) == 3


def test_segments_of_a_listing_are_those_of_its_lines() -> None:
    lines = [HEADER, *EDGE_ROWS[:4]]
    segs = segment(lines)
    assert segs.whole and segs.parts[0].kind == fmt.SS and segs.parts[0].end == len(lines)


def test_block_reading_gives_the_lines_and_part_marks_of_line_by_line_reading(tmp_path: Path) -> None:
    import io

    from connwatch.analyze import inputs
    from connwatch.analyze.inputs import InputFile, iter_lines

    cr = "\r"  # 20,000 rows: several blocks
    rows = "".join(f"ESTAB 0 0 10.0.0.1:{1024 + i} 10.0.0.{i % 7}:80{cr * (i % 3)}\n" for i in range(20000))
    data = b"\xef\xbb\xbf" + (HEADER + "\r\n" + rows + "last\r").encode()
    f = InputFile("t", "", lambda: io.BytesIO(data))
    marks: list[tuple[int, int]] = []
    got = list(iter_lines(f, "utf-8-sig", marks))
    assert got == [x.decode().rstrip("\r\n") for x in io.BytesIO(data[3:]).readlines()]
    expect: list[tuple[int, int]] = []
    raw = io.BytesIO(data)
    raw.read(3)
    list(inputs._byte_lines(raw, "utf-8", "t", 1, 3, expect))  # the per-line reader slices seek with
    assert marks == expect and len(marks) == 20001 // 256 + 1


@pytest.mark.parametrize(("ends", "encoding"), [("\n", "utf-8"), ("\r\n", "utf-8"), ("\r\n", "cp1252"),
                                                 ("\n", "cp1252"), ("\r\r\n", "utf-8"), ("\n", "utf-8-sig")])
def test_part_marks_from_decoded_lines_are_those_of_the_bytes(tmp_path: Path, ends: str, encoding: str) -> None:
    """Marks made from the decoded lines' lengths (LF files, files with CRLF on every line, one byte per
    character) are the byte offsets the per-line reader finds; other files (a CR left inside, non-ASCII UTF-8)
    take the bytes path, also the same."""
    import io

    from connwatch.analyze import inputs
    from connwatch.analyze.inputs import InputFile, iter_lines

    odd = "é" if encoding != "utf-8" else ""
    rows = "".join(f"ESTAB 0 0 10.0.0.1:{1024 + i} 10.0.0.{i % 7}:80{odd if i == 9000 else ''}{ends}"
                   for i in range(30000))
    bom = b"\xef\xbb\xbf" if encoding == "utf-8-sig" else b""
    data = bom + (HEADER + ends + rows).encode(encoding if encoding != "utf-8-sig" else "utf-8")
    f = InputFile("t", "", lambda: io.BytesIO(data))
    marks: list[tuple[int, int]] = []
    got = list(iter_lines(f, encoding, marks))
    assert len(got) == 30001
    expect: list[tuple[int, int]] = []
    raw = io.BytesIO(data)
    raw.read(len(bom))
    list(inputs._byte_lines(raw, "utf-8" if encoding == "utf-8-sig" else encoding, "t", 1, len(bom), expect))
    assert marks == expect and len(marks) == 30001 // 256 + 1


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="a\r\n", max_size=40).filter(lambda t: "\r" in t))
def test_crlf_lines_are_what_replacing_and_stripping_leave(text: str) -> None:
    """inputs._crlf_lines splits CRLF text at once when every line ends in one CR; any text gives the lines
    the replace-and-strip reading gives, and the line-end size it claims (2) holds for every line."""
    from connwatch.analyze.inputs import _crlf_lines

    old = text
    while "\r\n" in old:
        old = old.replace("\r\n", "\n")
    lines, ends = _crlf_lines(text)
    assert lines == old.rstrip("\r").split("\n")
    if ends:
        assert ends == 2 and sum(len(x) + 2 for x in lines) - 1 == len(text)
        assert text.split("\n") == [x + "\r" for x in lines]
