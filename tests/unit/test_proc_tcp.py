"""The /proc/net/tcp fallback, on real captured files."""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connwatch.clock import FakeClock
from connwatch.collect import CollectOptions, collect
from connwatch.errors import ParseError
from connwatch.model import Listener
from connwatch.parsers.proc_tcp import parse_proc_tcp
from connwatch.parsers.sock_diag import SocketAggregator

PROC = Path(__file__).parents[1] / "fixtures" / "proc"


def _rows(path: Path, state: str) -> int:
    return sum(1 for line in path.read_text().splitlines()[1:] if line.split()[3] == state)


@pytest.mark.parametrize("tree", ["pcp_bigsys_3x", "htb_container", "local_6x"])
def test_listeners_and_aggregates(tree: str) -> None:
    path = PROC / tree / "net" / "tcp"
    found: list[Listener] = []
    parse_proc_tcp(path.read_text().splitlines(), str(path), 4, found, None)
    agg = SocketAggregator(frozenset(x.port for x in found))
    parse_proc_tcp(path.read_text().splitlines(), str(path), 4, [], agg)
    assert len(found) == _rows(path, "0A")
    assert all(x.backlog is None and x.drops is None for x in found)
    assert agg.summary().total == sum(1 for ln in path.read_text().splitlines()[1:] if ln.strip()) - len(found)


def test_htb_capture_decodes_addresses_and_queues() -> None:
    path = PROC / "htb_container" / "net" / "tcp"
    found: list[Listener] = []
    agg = SocketAggregator(frozenset({8080, 43276}))
    parse_proc_tcp(path.read_text().splitlines(), str(path), 4, found, agg)
    by_port = {x.port: x for x in found}
    assert by_port[8080].address == "0.0.0.0" and by_port[8080].queue == 1
    assert by_port[43276].address == "127.0.0.11"
    summary = agg.summary()
    assert summary.by_state == {"ESTABLISHED": 1, "CLOSE_WAIT": 2}
    sources = {(s.source, s.port): dict(s.states) for s in summary.sources}
    assert sources[("172.23.0.1", 8080)] == {"CLOSE_WAIT": 2}
    [dest] = summary.destinations
    assert (dest.local_address, dest.destination) == ("172.23.0.11", "10.10.14.10:443")


def test_malformed_row_names_file_and_line() -> None:
    lines = ["  sl  local_address rem_address   st", "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000",
             "   1: ZZZ:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1 1"]
    with pytest.raises(ParseError) as err:
        parse_proc_tcp(lines, "/proc/net/tcp", 4, [], None)
    assert err.value.line == 2 and str(err.value).startswith("/proc/net/tcp:2: malformed socket row")


def test_ipv6_rows() -> None:
    path = PROC / "pcp_bigsys_3x" / "net" / "tcp6"
    found: list[Listener] = []
    parse_proc_tcp(path.read_text().splitlines(), str(path), 6, found, None)
    assert found and all(x.family == 6 for x in found)
    assert all(ipaddress.ip_address(x.address) for x in found)
    assert len(found) == _rows(path, "0A")


def test_collect_without_netlink_names_lost_capabilities() -> None:
    snap = collect(FakeClock(), CollectOptions(proc_root=str(PROC / "local_6x"), use_netlink=False, owners=False))
    assert snap.listeners and all(x.backlog is None for x in snap.listeners)
    assert any("no listen backlog and no per-listener drop counter" in note for note in snap.limitations)
    assert snap.counters.get("TcpExt.ListenOverflows") is not None
    assert snap.sysctls.somaxconn is not None


def test_collect_with_missing_tcp_file_reports_unavailable() -> None:
    snap = collect(FakeClock(), CollectOptions(proc_root=str(PROC / "metrix_3x"), use_netlink=False, owners=False))
    failed = {s.name: s.detail for s in snap.statuses if not s.ok}
    assert any("tcp" in name for name in failed) and snap.listeners == ()
    assert "TcpExt.TW" in snap.counters and "Tcp.ActiveOpens" not in snap.counters


@given(st.lists(st.text(max_size=120), max_size=5))
def test_arbitrary_lines_raise_only_parse_error(lines: list[str]) -> None:
    with contextlib.suppress(ParseError):
        parse_proc_tcp(lines, "x", 4, [], SocketAggregator(frozenset({80})))
