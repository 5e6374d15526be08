"""Parsers for single-value sysctl files under /proc/sys, and ephemeral-port arithmetic.

Pure functions over text: no I/O here (see connwatch.sources.procfs for the reader).
Sysctl files are one line, so every ParseError here names line 1.
"""

from __future__ import annotations

from connwatch.errors import ParseError
from connwatch.parsers.netstat_snmp import shown, to_int

_MAX_PORT = 65535


def parse_int(text: str, source: str) -> int:
    """Parse a one-integer sysctl such as net.core.somaxconn or net.ipv4.tcp_syncookies.

    Sample input (/proc/sys/net/core/somaxconn)::

        4096

    Kernel source: kernel/sysctl.c proc_dointvec() / proc_dointvec_minmax(), which print
    "%d\\n"; the tables are net/core/sysctl_net_core.c (somaxconn) and
    net/ipv4/sysctl_net_ipv4.c (tcp_max_syn_backlog, tcp_syncookies, tcp_tw_reuse, ...).
    """
    tokens = text.split()
    if len(tokens) != 1:
        raise ParseError(source, f"expected one integer, got {len(tokens)} fields", 1)
    return to_int(tokens[0], source, 1)


def parse_port_range(text: str, source: str) -> tuple[int, int]:
    """Parse net.ipv4.ip_local_port_range into (low, high), both inclusive.

    Sample input (/proc/sys/net/ipv4/ip_local_port_range)::

        32768\t60999

    Kernel source: net/ipv4/sysctl_net_ipv4.c ipv4_local_port_range(), a two-int
    proc_dointvec_minmax() table (values TAB-separated) bounded by ip_local_port_range_min
    {1, 1} and ip_local_port_range_max {65535, 65535}; it refuses low > high.
    """
    tokens = text.split()
    if len(tokens) != 2:
        raise ParseError(source, f"expected 'low high', got {len(tokens)} fields", 1)
    low = to_int(tokens[0], source, 1, "low port")
    high = to_int(tokens[1], source, 1, "high port")
    for port in (low, high):
        if not 1 <= port <= _MAX_PORT:
            raise ParseError(source, f"port {port} outside 1..{_MAX_PORT}", 1)
    if low > high:
        raise ParseError(source, f"low port {low} above high port {high}", 1)
    return (low, high)


def _port_item(item: str, source: str) -> tuple[int, int]:
    first, dash, last = item.partition("-")  # ([0-9]+)(?:-([0-9]+))? without re (see parsers/numbers.py)
    if not all(x.isascii() and x.isdigit() for x in ((first, last) if dash else (first,))):
        raise ParseError(source, f"invalid port or range {shown(item)}", 1)
    low = to_int(first, source, 1, "port")
    high = to_int(last, source, 1, "port") if dash else low
    if high > _MAX_PORT:
        raise ParseError(source, f"port {high} above {_MAX_PORT}", 1)
    if low > high:
        raise ParseError(source, f"range {shown(item)} runs backwards", 1)
    return (low, high)


def parse_reserved_ports(text: str, source: str) -> tuple[tuple[int, int], ...]:
    """Parse net.ipv4.ip_local_reserved_ports into inclusive (low, high) ranges, in file order.

    Sample input (/proc/sys/net/ipv4/ip_local_reserved_ports; an empty line when none)::

        8080,9000-9010

    Kernel source: kernel/sysctl.c proc_do_large_bitmap(), which prints a 65536-bit
    bitmap (net/ipv4/sysctl_net_ipv4.c, sysctl_local_reserved_ports) as comma-separated
    ports and "low-high" runs. A single port N is returned as (N, N).
    """
    body = text.strip()
    if not body:
        return ()
    return tuple(_port_item(item.strip(), source) for item in body.split(","))


def usable_ports(port_range: tuple[int, int], reserved: tuple[tuple[int, int], ...]) -> int:
    """How many ports of the inclusive `port_range` are not covered by any `reserved` range.

    Reserved ranges may overlap each other or stick out of the range. This is the count of
    candidate ports; note __inet_hash_connect() (net/ipv4/inet_hashtables.c) rounds an odd
    range size down to even, so connect() may try one port fewer.
    """
    low, high = port_range
    if low > high:
        return 0
    covered = 0
    last = low - 1  # highest port already counted as reserved
    for r_low, r_high in sorted(reserved):
        start, end = max(r_low, last + 1), min(r_high, high)
        if start <= end:
            covered += end - start + 1
            last = end
    return high - low + 1 - covered
