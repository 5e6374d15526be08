"""Parsers and readers for /proc counters, sockstat, sysctls and host facts, over real fixture trees.

Fixture provenance: tests/fixtures/proc/README.md.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connwatch.errors import ParseError, SourceUnavailable
from connwatch.model import HostInfo, Sysctls
from connwatch.parsers.netstat_snmp import parse_netstat_snmp, parse_snmp6
from connwatch.parsers.sockstat import parse_sockstat
from connwatch.parsers.sysctl import parse_int, parse_port_range, parse_reserved_ports, usable_ports
from connwatch.sources.procfs import (
    ProcFS,
    parse_btime,
    read_counters,
    read_host,
    read_sockstat,
    read_sysctls,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "proc"
TextParser = Callable[[str, str], Any]

FILE_PARSERS: dict[str, TextParser] = {
    "net/netstat": parse_netstat_snmp,
    "net/snmp": parse_netstat_snmp,
    "net/snmp6": parse_snmp6,
    "net/sockstat": parse_sockstat,
    "net/sockstat6": parse_sockstat,
}
# Kept malformed on purpose (a ttar "Mode: 644" line at the end; see the fixtures README).
KNOWN_BAD = {("procfs_4x", "net/snmp6"): 92}

ALL_FIXTURE_FILES = sorted(
    (tree.name, rel)
    for tree in FIXTURES.iterdir()
    if tree.is_dir()
    for rel in FILE_PARSERS
    if (tree / rel).is_file()
)


def proc(label: str) -> ProcFS:
    return ProcFS(FIXTURES / label)


def copy_tree(label: str, tmp_path: Path) -> Path:
    target = tmp_path / label
    shutil.copytree(FIXTURES / label, target)
    return target


# --- every fixture file parses -------------------------------------------------------------------


def test_fixture_inventory() -> None:
    trees = {tree for tree, _ in ALL_FIXTURE_FILES}
    assert len(trees) >= 10
    assert len(ALL_FIXTURE_FILES) >= 25


@pytest.mark.parametrize(("tree", "rel"), ALL_FIXTURE_FILES)
def test_every_fixture_file_parses(tree: str, rel: str) -> None:
    path = FIXTURES / tree / rel
    parser = FILE_PARSERS[rel]
    if (tree, rel) in KNOWN_BAD:
        with pytest.raises(ParseError) as info:
            parser(path.read_text(), str(path))
        assert info.value.line == KNOWN_BAD[(tree, rel)]
        return
    values = parser(path.read_text(), str(path))
    assert values
    assert all(isinstance(value, int) for value in values.values())


# --- known values from the real files ------------------------------------------------------------

KNOWN_COUNTERS = [
    ("metrix_3x", "TcpExt.TW", 4208),
    ("metrix_3x", "TcpExt.TCPBacklogDrop", 10),
    ("cockroach_6x", "TcpExt.ListenDrops", 2),
    ("cockroach_6x", "TcpExt.ListenOverflows", 0),
    ("cockroach_6x", "TcpExt.TCPTimeouts", 870),
    ("datadog_5x", "TcpExt.TW", 3959869),
    ("datadog_5x", "IpExt.InOctets", 117375621699),
    ("pcp_2632", "Tcp.EstabResets", 456),
    ("pcp_2632", "Tcp.ActiveOpens", 718),
    ("pcp_2632", "Tcp.MaxConn", -1),
    ("pcp_2632", "IcmpMsg.InType3", 3114),
    ("pcp_2632", "snmp6.Ip6InReceives", 20912),
    ("procfs_4x", "TcpExt.TCPTimeWaitOverflow", 3),
    ("procfs_4x", "Tcp.InErrs", 98),
    ("node_exporter", "Tcp.OutRsts", 1003),
    ("node_exporter", "snmp6.Ip6OutNoRoutes", 3003),
    ("sysstat_root1", "Tcp.OutRsts", 943),
    ("d2000_2616", "Udp.OutDatagrams", 13602),
    ("local_6x", "Tcp.MaxConn", -1),
    ("local_6x", "Tcp.RtoMax", 120000),
    ("local_6x", "TcpExt.TW", 8),
    ("local_6x", "IpExt.InOctets", 45353361),
    ("local_6x", "snmp6.Ip6InReceives", 1),
]

KNOWN_SOCKSTAT = [
    ("procfs_4x", "TCP.inuse", 35),
    ("procfs_4x", "TCP.tw", 4),
    ("procfs_4x", "TCP.alloc", 59),
    ("procfs_4x", "sockets.used", 1602),
    ("insights_rhel", "TCP.tw", 2030),
    ("insights_rhel", "FRAG.memory", 10),
    ("netdata_743", "TCP.orphan", 6),
    ("sysstat_root1", "TCP.tw", 1),
    ("rhel5_2618", "TCP6.inuse", 4),
    ("node_exporter", "TCP6.inuse", 17),
    ("pcp_bigsys_3x", "FRAG6.memory", 0),
    ("local_6x", "TCP.mem", 259),
    ("local_6x", "sockets.used", 10),
]


@pytest.mark.parametrize(("tree", "key", "expected"), KNOWN_COUNTERS)
def test_known_counter(tree: str, key: str, expected: int) -> None:
    counters, _ = read_counters(proc(tree))
    assert counters[key] == expected


@pytest.mark.parametrize(("tree", "key", "expected"), KNOWN_SOCKSTAT)
def test_known_sockstat(tree: str, key: str, expected: int) -> None:
    counts, _ = read_sockstat(proc(tree))
    assert counts[key] == expected


@pytest.mark.parametrize(
    ("tree", "prefix", "columns"),
    [("cockroach_6x", "MPTcpExt.", 57), ("datadog_5x", "MPTcpExt.", 22), ("pcp_bigsys_3x", "TcpExt.", 81)],
)
def test_column_counts(tree: str, prefix: str, columns: int) -> None:
    counters, _ = read_counters(proc(tree))
    assert sum(key.startswith(prefix) for key in counters) == columns


def test_old_kernels_lack_newer_rows() -> None:
    assert "UDPLITE6.inuse" not in read_sockstat(proc("rhel5_2618"))[0]
    d2000 = read_counters(proc("d2000_2616"))[0]
    assert not any(key.startswith(("IcmpMsg.", "UdpLite.")) for key in d2000)


# --- malformed input: ParseError naming source and line ------------------------------------------

SRC = "/proc/net/test"
MALFORMED: list[tuple[str, TextParser, str, int | None, str]] = [
    ("count mismatch", parse_netstat_snmp, "TcpExt: A B C\nTcpExt: 1 2\n", 2, "3 names but 2 values"),
    ("non-integer", parse_netstat_snmp, "Tcp: RtoMin MaxConn\nTcp: 200 x1\n", 2, "non-integer"),
    ("float value", parse_netstat_snmp, "Tcp: RtoMin\nTcp: 2.5\n", 2, "non-integer"),
    ("value without header", parse_netstat_snmp, "TcpExt: 1 2\n", 1, "without a header"),
    ("late value w/o header", parse_netstat_snmp, "Tcp: A\nTcp: 1\n\nIpExt: 3 4\n", 4, "without a header"),
    ("prefix mismatch", parse_netstat_snmp, "TcpExt: A B\nIpExt: 1 2\n", 2, "prefix mismatch"),
    ("header, no values", parse_netstat_snmp, "Tcp: A\nTcp: 1\nTcpExt: A B\n", 3, "no value line"),
    ("no prefix", parse_netstat_snmp, "TcpExt A B\nTcpExt 1 2\n", 1, "Prefix:"),
    ("header without names", parse_netstat_snmp, "TcpExt:\nTcpExt:\n", 1, "names no counters"),
    ("duplicate", parse_netstat_snmp, "Tcp: A\nTcp: 1\nTcp: A\nTcp: 2\n", 4, "appears twice"),
    ("empty netstat", parse_netstat_snmp, "", None, "empty file"),
    ("blank netstat", parse_netstat_snmp, "\n  \n\t\n", None, "empty file"),
    ("snmp6 three fields", parse_snmp6, "Ip6InReceives\t7\nIp6InHdrErrors 0 1\n", 2, "got 3 fields"),
    ("snmp6 non-integer", parse_snmp6, "Ip6InReceives\tseven\n", 1, "non-integer"),
    ("snmp6 ttar line", parse_snmp6, "Ip6InReceives\t7\nMode: 644\n", 2, "invalid counter name"),
    ("snmp6 empty", parse_snmp6, "", None, "empty file"),
    ("sockstat odd tokens", parse_sockstat, "sockets: used 3\nTCP: inuse 35 orphan\n", 2, "3 tokens"),
    ("sockstat non-integer", parse_sockstat, "TCP: inuse many\n", 1, "non-integer"),
    ("sockstat no colon", parse_sockstat, "sockets: used 1\nTCP inuse 3\n", 2, "PROTO:"),
    ("sockstat bare prefix", parse_sockstat, "TCP:\n", 1, "0 tokens"),
    ("sockstat empty", parse_sockstat, "", None, "empty file"),
    ("port range backwards", parse_port_range, "5 3\n", 1, "low port 5 above high port 3"),
    ("port range one value", parse_port_range, "32768\n", 1, "got 1 fields"),
    ("port range zero", parse_port_range, "0\t100\n", 1, "outside 1..65535"),
    ("port range too high", parse_port_range, "1024\t70000\n", 1, "outside 1..65535"),
    ("reserved bad range", parse_reserved_ports, "8080,80-x\n", 1, "invalid port or range '80-x'"),
    ("reserved backwards", parse_reserved_ports, "90-80\n", 1, "runs backwards"),
    ("reserved empty item", parse_reserved_ports, "80,,90\n", 1, "invalid port or range ''"),
    ("reserved too high", parse_reserved_ports, "70000\n", 1, "above 65535"),
    ("int word", parse_int, "abc\n", 1, "non-integer"),
    ("int empty", parse_int, "", 1, "got 0 fields"),
    ("int two values", parse_int, "4096 1\n", 1, "got 2 fields"),
    ("btime missing", parse_btime, "cpu  1 2 3\nctxt 5\n", None, "no btime"),
    ("btime non-integer", parse_btime, "ctxt 5\nbtime soon\n", 2, "non-integer"),
]


@pytest.mark.parametrize(
    ("parser", "text", "line", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in MALFORMED],
)
def test_malformed_input(parser: TextParser, text: str, line: int | None, fragment: str) -> None:
    with pytest.raises(ParseError) as info:
        parser(text, SRC)
    error = info.value
    assert error.source == SRC
    assert error.line == line
    assert fragment in error.message
    where = f"{SRC}:{line}:" if line is not None else f"{SRC}:"
    assert str(error).startswith(where)


# --- good input edge cases -------------------------------------------------------------------------


def test_netstat_tolerates_trailing_space_blank_lines_and_crlf() -> None:
    text = "Tcp: RtoMin MaxConn \r\nTcp: 200 -1  \r\n\n\nIcmpMsg: InType3\nIcmpMsg: 7\n\n"
    assert parse_netstat_snmp(text, SRC) == {"Tcp.RtoMin": 200, "Tcp.MaxConn": -1, "IcmpMsg.InType3": 7}


def test_netstat_repeated_prefix_with_new_names() -> None:
    # icmpmsg_put() splits IcmpMsg into several header/value pairs.
    text = "IcmpMsg: InType0 InType3\nIcmpMsg: 1 2\nIcmpMsg: OutType3\nIcmpMsg: 3\n"
    assert parse_netstat_snmp(text, SRC) == {
        "IcmpMsg.InType0": 1,
        "IcmpMsg.InType3": 2,
        "IcmpMsg.OutType3": 3,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("\n", ()),
        ("8080\n", ((8080, 8080),)),
        ("8080,9000-9010\n", ((8080, 8080), (9000, 9010))),
        ("0-1023,65535", ((0, 1023), (65535, 65535))),
    ],
)
def test_reserved_ports(text: str, expected: tuple[tuple[int, int], ...]) -> None:
    assert parse_reserved_ports(text, SRC) == expected


@pytest.mark.parametrize(
    ("port_range", "reserved", "expected"),
    [
        ((32768, 60999), ((40000, 40009),), 28222),
        ((32768, 60999), (), 28232),
        ((32768, 60999), ((1, 1023), (70, 32770)), 28229),  # overlaps, sticks out below
        ((32768, 60999), ((40000, 40009), (40005, 40020), (40010, 40010)), 28211),
        ((32768, 60999), ((60990, 65535),), 28222),
        ((1000, 1000), ((1000, 1000),), 0),
        ((1024, 2048), ((0, 65535),), 0),
    ],
)
def test_usable_ports(
    port_range: tuple[int, int], reserved: tuple[tuple[int, int], ...], expected: int
) -> None:
    assert usable_ports(port_range, reserved) == expected


# --- readers: missing and malformed files --------------------------------------------------------


def test_read_text_missing_file_names_full_path(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable) as info:
        ProcFS(tmp_path).read_text("net/netstat")
    assert info.value.source == str(tmp_path / "net" / "netstat")
    assert str(tmp_path / "net" / "netstat") in str(info.value)
    assert "no such file" in str(info.value)


def test_read_text_unreadable_path_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "net" / "netstat").mkdir(parents=True)  # a directory: IsADirectoryError
    with pytest.raises(SourceUnavailable):
        ProcFS(tmp_path).read_text("net/netstat")


def test_missing_files_are_absent_not_zero() -> None:
    counters, statuses = read_counters(proc("cockroach_6x"))
    by_file = {Path(status.name).name: status for status in statuses}
    assert by_file["netstat"].ok
    for missing in ("snmp", "snmp6"):
        assert not by_file[missing].ok
        assert by_file[missing].detail.startswith("unavailable:")
    assert by_file["snmp"].name == str(FIXTURES / "cockroach_6x" / "net" / "snmp")
    assert not any(key.startswith(("Tcp.", "snmp6.")) for key in counters)
    assert counters["TcpExt.ListenDrops"] == 2


def test_empty_tree_gives_no_counters(tmp_path: Path) -> None:
    counters, statuses = read_counters(ProcFS(tmp_path))
    sockstat, sock_statuses = read_sockstat(ProcFS(tmp_path))
    assert counters == {} and sockstat == {}
    assert [status.ok for status in statuses + sock_statuses] == [False] * 5


def test_malformed_file_does_not_stop_the_others() -> None:
    counters, statuses = read_counters(proc("procfs_4x"))
    by_file = {Path(status.name).name: status for status in statuses}
    assert by_file["netstat"].ok and by_file["snmp"].ok
    assert not by_file["snmp6"].ok
    assert by_file["snmp6"].detail.endswith("net/snmp6:92: invalid counter name 'Mode:'")
    assert "\n" not in by_file["snmp6"].detail
    assert not any(key.startswith("snmp6.") for key in counters)
    assert counters["Tcp.InErrs"] == 98


def test_malformed_sockstat_in_tree(tmp_path: Path) -> None:
    root = copy_tree("local_6x", tmp_path)
    (root / "net" / "sockstat").write_text("sockets: used 10\nTCP: inuse 1 orphan\n")
    counts, statuses = read_sockstat(ProcFS(root))
    assert [status.ok for status in statuses] == [False, True]
    assert ":2: " in statuses[0].detail
    assert "TCP.inuse" not in counts and counts["TCP6.inuse"] == 0


# --- sysctls ----------------------------------------------------------------------------------------

LOCAL_SYSCTLS = Sysctls(
    somaxconn=4096,
    tcp_max_syn_backlog=2048,
    tcp_syncookies=1,
    tcp_abort_on_overflow=0,
    ip_local_port_range=(32768, 60999),
    ip_local_reserved_ports=(),
    tcp_tw_reuse=2,
    tcp_tw_reuse_delay=1000,
    tcp_max_tw_buckets=131072,
    tcp_max_orphans=131072,
    tcp_fin_timeout=60,
    tcp_syn_retries=6,
    tcp_syn_linear_timeouts=4,
)


def test_read_sysctls_local() -> None:
    sysctls, statuses = read_sysctls(proc("local_6x"))
    assert sysctls == LOCAL_SYSCTLS
    assert len(statuses) == 1 and statuses[0].name == "sysctl"
    assert statuses[0].ok and statuses[0].detail == ""


def test_read_sysctls_without_tw_reuse_delay(tmp_path: Path) -> None:
    root = copy_tree("local_6x", tmp_path)
    (root / "sys/net/ipv4/tcp_tw_reuse_delay").unlink()
    sysctls, [status] = read_sysctls(ProcFS(root))
    assert sysctls.tcp_tw_reuse_delay is None
    assert sysctls.tcp_tw_reuse == 2 and sysctls.somaxconn == 4096
    assert status.ok
    assert status.detail == "tcp_tw_reuse_delay: absent (optional)"


@pytest.mark.parametrize(
    ("rel", "content", "field", "detail"),
    [
        (None, None, "somaxconn", "somaxconn: unavailable: no such file"),
        ("sys/net/ipv4/ip_local_port_range", "5\t3\n", "ip_local_port_range", "low port 5 above high"),
        ("sys/net/ipv4/ip_local_reserved_ports", "80-x\n", "ip_local_reserved_ports", "(line 1)"),
        ("sys/net/ipv4/tcp_syncookies", "on\n", "tcp_syncookies", "tcp_syncookies: non-integer"),
    ],
)
def test_read_sysctls_bad_value(
    tmp_path: Path, rel: str | None, content: str | None, field: str, detail: str
) -> None:
    root = copy_tree("local_6x", tmp_path)
    if rel is None:
        (root / "sys/net/core/somaxconn").unlink()
    else:
        (root / rel).write_text(content or "")
    sysctls, [status] = read_sysctls(ProcFS(root))
    assert getattr(sysctls, field) is None
    assert not status.ok
    assert detail in status.detail
    assert sysctls.tcp_fin_timeout == 60  # the others still read


def test_read_sysctls_tree_without_sys() -> None:
    sysctls, [status] = read_sysctls(proc("metrix_3x"))
    assert sysctls == Sysctls()
    assert not status.ok
    assert status.detail.count("unavailable") == 10
    assert "tcp_tw_reuse_delay: absent (optional)" in status.detail


# --- host ---------------------------------------------------------------------------------------------


def test_read_host_local() -> None:
    assert read_host(proc("local_6x")) == HostInfo(
        hostname="vm", kernel="6.18.44-fc-v769", boot_time=1795382281.0
    )


def test_read_host_copied_tree_never_borrows_this_hostname() -> None:
    assert read_host(proc("metrix_3x")) == HostInfo(hostname="", kernel="", boot_time=None)


def test_read_host_bad_stat(tmp_path: Path) -> None:
    root = copy_tree("local_6x", tmp_path)
    (root / "stat").write_text("cpu 1 2 3\nbtime later\n")
    assert read_host(ProcFS(root)).boot_time is None


def test_read_host_live_proc_has_hostname() -> None:
    assert read_host(ProcFS()).hostname


# --- property tests: arbitrary text raises nothing but ParseError ---------------------------------

TEXT_PARSERS: list[TextParser] = [
    parse_netstat_snmp,
    parse_snmp6,
    parse_sockstat,
    parse_int,
    parse_port_range,
    parse_reserved_ports,
    parse_btime,
]
NEAR_MISS = st.text(alphabet="TcpExt:IpsockeTCPbtime -,\t\r\n0123456789x", max_size=200)
ANY_TEXT = st.one_of(st.text(), NEAR_MISS)


@pytest.mark.parametrize("parser", TEXT_PARSERS, ids=lambda parser: parser.__name__)
@given(text=ANY_TEXT)
def test_arbitrary_text_raises_only_parse_error(parser: TextParser, text: str) -> None:
    try:
        parser(text, SRC)
    except ParseError as error:
        assert error.source == SRC
        assert "\n" not in str(error)


NAMES = st.from_regex(r"[A-Z][A-Za-z0-9]{0,12}", fullmatch=True)
SECTIONS = st.dictionaries(
    st.sampled_from(["TcpExt", "IpExt", "MPTcpExt", "Tcp", "Udp"]),
    st.dictionaries(NAMES, st.integers(min_value=-(2**63), max_value=2**64), min_size=1, max_size=8),
    min_size=1,
)


@given(sections=SECTIONS)
def test_netstat_round_trip(sections: dict[str, dict[str, int]]) -> None:
    lines = []
    for prefix, counters in sections.items():
        lines.append(f"{prefix}: " + " ".join(counters))
        lines.append(f"{prefix}: " + " ".join(str(value) for value in counters.values()))
    expected = {f"{p}.{n}": v for p, counters in sections.items() for n, v in counters.items()}
    assert parse_netstat_snmp("\n".join(lines) + "\n", SRC) == expected


PORT = st.integers(min_value=1, max_value=3000)  # small, for the brute-force count


@given(
    bounds=st.tuples(PORT, PORT).map(sorted),
    reserved=st.lists(st.tuples(PORT, PORT).map(sorted), max_size=5),
)
def test_usable_ports_matches_brute_force(bounds: list[int], reserved: list[list[int]]) -> None:
    low, high = bounds
    ranges = tuple((a, b) for a, b in reserved)
    taken = {port for a, b in ranges for port in range(a, b + 1)}
    expected = sum(1 for port in range(low, high + 1) if port not in taken)
    assert usable_ports((low, high), ranges) == expected
