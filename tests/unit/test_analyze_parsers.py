"""Text parsers for analyze: exact values from real captures, and arbitrary input never crashes them."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connwatch.analyze.detect import detect
from connwatch.analyze.hostfacts import parse_sysctl_lines, parse_uptime, sysctls_from
from connwatch.errors import ParseError
from connwatch.model import TcpState
from connwatch.parsers.netstat_stats import parse_linux_netstat_s, parse_nstat, parse_windows_netstat_s
from connwatch.parsers.netstat_text import BSD, BSD_LISTEN, LINUX, WINDOWS, iter_netstat
from connwatch.parsers.ss_text import iter_ss, parse_ss_summary

CAP = Path(__file__).resolve().parents[1] / "fixtures" / "captures"


def lines(rel: str) -> list[str]:
    return (CAP / rel).read_text(encoding="utf-8").splitlines()


def test_ss_listen_rows_carry_queue_backlog_and_owner() -> None:
    rows = list(iter_ss(lines("ss/ss_ltnp_full_nginx_gnuser.txt"), "x"))
    assert [(r.local, r.local_port, r.recv_q, r.backlog, r.pid, r.command) for r in rows] == [
        ("0.0.0.0", 80, 10, 10, 10491, "nginx"), ("0.0.0.0", 9000, 7, 10, 11084, "php-fpm")]
    assert all(r.state == TcpState.LISTEN and r.remote is None for r in rows)


def test_ss_netid_layout_ipv4_mapped_and_timewait() -> None:
    rows = list(iter_ss(lines("ss/ss_antup_timewait_one_peer.txt"), "x"))
    tw = [r for r in rows if r.state == TcpState.TIME_WAIT]
    assert len(tw) == 19 and {r.remote for r in tw} == {"172.16.164.118"}
    assert {r.local_port for r in rows if r.state == TcpState.LISTEN} == {80, 8081}


def test_ss_skips_udp_and_reads_skmem_drops_and_timer() -> None:
    text = ["udp UNCONN 0 0 0.0.0.0:68 0.0.0.0:*",
            "tcp LISTEN 129 128 0.0.0.0:8080 0.0.0.0:*",
            "\t skmem:(r0,rb131072,t0,tb16384,f0,w0,o0,bl0,d42)",
            "tcp TIME-WAIT 0 0 10.0.0.1:40000 10.0.0.2:80 timer:(timewait,59sec,0)"]
    listen, tw = list(iter_ss(text, "x"))
    assert (listen.recv_q, listen.backlog, listen.drops) == (129, 128, 42)
    assert tw.expires_ms == 59_000 and tw.remote == "10.0.0.2"


def test_ss_summary_counts() -> None:
    got = parse_ss_summary(lines("ss/ss_s_timewait954.txt"), "x")
    assert got["TCP.tw"] == 954 and got["TCP.orphan"] == 8 and got["TCP.inuse"] == 1859


def test_windows_french_headers_and_b_lines() -> None:
    rows = list(iter_netstat(lines("netstat/windows_anb_french_excerpt.txt"), "x", WINDOWS))
    assert len(rows) == 34
    assert sum(r.state == TcpState.LISTEN for r in rows) == 19
    assert sum(r.state == TcpState.TIME_WAIT for r in rows) == 8
    assert [r.command for r in rows[:3]] == ["svchost.exe", None, "vmware-authd.exe"]  # -b owner lines


def test_windows_ano_pids_and_ipv6() -> None:
    rows = list(iter_netstat(lines("netstat/windows_ano.txt"), "x", WINDOWS))
    first = rows[0]
    assert (first.local, first.local_port, first.pid, first.state) == ("0.0.0.0", 135, 1192, TcpState.LISTEN)
    assert any(r.family == 6 for r in rows)


def test_bsd_listen_queues() -> None:
    rows = list(iter_netstat(lines("netstat/macos_Lan_overloaded.txt"), "x", BSD_LISTEN))
    assert [(r.local_port, r.recv_q, r.backlog) for r in rows] == [(12345, 0, 128), (80, 192, 128), (8080, 0, 128)]
    freebsd = list(iter_netstat(lines("netstat/freebsd_aL_httpd.txt"), "x", BSD_LISTEN))
    assert [(r.local_port, r.family) for r in freebsd] == [(443, 4), (443, 6), (80, 4), (80, 6)]


def test_bsd_an_rows() -> None:
    text = ["Active Internet connections (including servers)",
            "Proto Recv-Q Send-Q  Local Address          Foreign Address        (state)",
            "tcp4       0      0  192.168.1.10.52345     17.57.144.20.5223      ESTABLISHED",
            "tcp46      0      0  *.8080                 *.*                    LISTEN"]
    est, lst = list(iter_netstat(text, "x", BSD))
    assert (est.local, est.local_port, est.remote, est.remote_port) == ("192.168.1.10", 52345, "17.57.144.20", 5223)
    assert lst.state == TcpState.LISTEN and lst.local_port == 8080 and lst.backlog is None


def test_linux_netstat_timer_program_with_space_and_unix_section() -> None:
    rows = list(iter_netstat(lines("netstat/linux_neopa.txt"), "x", LINUX))
    assert len(rows) == 6
    passenger = next(r for r in rows if r.local_port == 53644)
    assert (passenger.pid, passenger.command) == (12387, "Passenger Rac")
    assert rows[-1].state == TcpState.SYN_RECV


def test_linux_netstat_s_sentences_old_and_new() -> None:
    old = parse_linux_netstat_s(lines("netstat_s/linux_tcpext_hiboma.txt"), "x")
    assert old["TcpExt.ListenOverflows"] == 6350 and old["TcpExt.ListenDrops"] == 6350
    assert old["TcpExt.SyncookiesSent"] == 11394
    new = parse_linux_netstat_s(lines("lls_k8s_node/netstat_st.txt"), "x")
    assert new["TcpExt.ListenOverflows"] == 7203095 and new["Tcp.ActiveOpens"] == 924259
    assert new["Tcp.InCsumErrors"] == 4


def test_windows_netstat_s_sums_families() -> None:
    got = parse_windows_netstat_s(lines("netstat_s/windows_netstat_s_tcp.txt"), "x")
    assert got["Tcp.AttemptFails"] == 5800 + 5927 and got["Tcp.ActiveOpens"] == 64644 + 2103


def test_nstat_keys_match_proc_names() -> None:
    got = parse_nstat(lines("nstat/nstat_listen_overflows.txt"), "x")
    assert got == {"Ip.InReceives": 4, "Ip.InDelivers": 4, "Tcp.InSegs": 4, "TcpExt.ListenOverflows": 4,
                   "TcpExt.ListenDrops": 4, "IpExt.InOctets": 240, "IpExt.InNoECTPkts": 4}


def test_host_facts() -> None:
    assert parse_uptime(" 10:20:11 up 35 days,  2:03,  1 user,  load average: 0.00", "u") == 35 * 86400 + 2 * 3600 + 180
    assert parse_uptime("350735.47 234388.90", "u") == 350735.47
    values = parse_sysctl_lines(["net.core.somaxconn = 4096", "net.ipv4.ip_local_port_range = 32768\t60999",
                                 "kernel.x = 1"], "s")
    s = sysctls_from(values, "s")
    assert s.somaxconn == 4096 and s.ip_local_port_range == (32768, 60999)


@pytest.mark.parametrize("rel", sorted(str(p.relative_to(CAP)) for p in CAP.rglob("*.txt") if "pastes" not in p.parts))
def test_every_fixture_is_recognised(rel: str) -> None:
    assert detect((CAP / rel).read_text(encoding="utf-8"), rel) is not None


def test_truncated_row_names_the_line() -> None:
    with pytest.raises(ParseError) as err:
        list(iter_ss(["State Recv-Q Send-Q Local Address:Port Peer Address:Port", "LISTEN 0 128 0.0.0.0:80"], "f"))
    assert str(err.value) == "f:2: truncated socket row (4 fields)"


# Property-based: arbitrary text never raises anything but ParseError.
TEXT = st.lists(st.text(max_size=80), max_size=20)
ROWISH = st.lists(st.one_of(
    st.text(max_size=40),
    st.builds(lambda a, b, c: f"tcp {a} {b} 1.2.3.4:{c} 5.6.7.8:* LISTEN", st.text(max_size=5), st.integers(),
              st.text(max_size=6)),
    st.builds(lambda a, q: f"  TCP    {a}    0.0.0.0:0    {q}", st.text(max_size=20), st.text(max_size=12)),
    st.builds(lambda q, a: f"{q}   {a}", st.text(max_size=12), st.text(max_size=20)),
    st.builds(lambda n, v: f"{n} {v} 0.0", st.text(max_size=20), st.text(max_size=10)),
), max_size=20)


def _never_crash(call: object) -> None:
    try:
        result = call()  # type: ignore[operator]
        if hasattr(result, "__next__"):
            list(result)
    except ParseError:
        pass


@settings(max_examples=150, deadline=None)
@given(ROWISH)
def test_connection_parsers_raise_only_parse_error(text: list[str]) -> None:
    _never_crash(lambda: iter_ss(text, "f"))
    for dialect in (LINUX, WINDOWS, BSD, BSD_LISTEN):
        _never_crash(lambda d=dialect: iter_netstat(text, "f", d))


@settings(max_examples=150, deadline=None)
@given(TEXT)
def test_stats_parsers_raise_only_parse_error(text: list[str]) -> None:
    for parser in (parse_linux_netstat_s, parse_windows_netstat_s, parse_nstat, parse_ss_summary):
        _never_crash(lambda p=parser: p(text, "f"))
    _never_crash(lambda: parse_uptime(text[0] if text else "", "f"))
    _never_crash(lambda: sysctls_from(parse_sysctl_lines(text, "f"), "f"))


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=400))
def test_detect_never_raises(text: str) -> None:
    detect(text, "x")
