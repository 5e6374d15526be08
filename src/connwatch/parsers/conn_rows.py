"""The row every text connection-list parser yields (ss, netstat on Linux, Windows and BSD).

Pure helpers: address/port splitting for the `ip:port`, `[ip]:port` and BSD `ip.port` forms, and
state-name tables for each tool. Parsers raise connwatch.errors.ParseError; these helpers raise
ValueError, which the parsers turn into a ParseError naming the file and line.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator
from functools import lru_cache
from itertools import islice
from typing import NamedTuple

from connwatch.model import TcpState
from connwatch.parsers.numbers import num

_V4MAPPED = b"\0" * 10 + b"\xff\xff"

# Service names as non-numeric tools print them (`ss` without -n, BSD `*.https`). A small fixed
# table, not /etc/services: the result must not depend on the machine that analyses the capture.
SERVICES = {
    "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53, "http": 80, "www": 80, "pop3": 110,
    "sunrpc": 111, "netbios-ssn": 139, "imap": 143, "https": 443, "microsoft-ds": 445, "submission": 587,
    "imaps": 993, "pop3s": 995, "mysql": 3306, "postgresql": 5432, "http-alt": 8080, "webcache": 8080,
    "epmap": 135, "ipp": 631, "rsync": 873, "ldap": 389, "ldaps": 636, "ms-wbt-server": 3389,
    "redis": 6379, "x11": 6000, "kerberos": 88, "afpovertcp": 548, "nfs": 2049,
}

_S = TcpState
# iproute2 misc/ss.c sstate_name[]
SS_STATES = {
    "ESTAB": _S.ESTABLISHED, "SYN-SENT": _S.SYN_SENT, "SYN-RECV": _S.SYN_RECV, "FIN-WAIT-1": _S.FIN_WAIT1,
    "FIN-WAIT-2": _S.FIN_WAIT2, "TIME-WAIT": _S.TIME_WAIT, "UNCONN": _S.CLOSE, "CLOSE-WAIT": _S.CLOSE_WAIT,
    "LAST-ACK": _S.LAST_ACK, "LISTEN": _S.LISTEN, "CLOSING": _S.CLOSING, "NEW-SYN-RECV": _S.NEW_SYN_RECV,
}
# net-tools netstat.c tcp_state[] (Linux); BSD tcpstates[] (netinet/tcp_fsm.h); Windows MIB_TCP_STATE
NETSTAT_STATES = {
    "ESTABLISHED": _S.ESTABLISHED, "SYN_SENT": _S.SYN_SENT, "SYN_RECV": _S.SYN_RECV, "SYN_RCVD": _S.SYN_RECV,
    "SYN_RECEIVED": _S.SYN_RECV, "FIN_WAIT1": _S.FIN_WAIT1, "FIN_WAIT_1": _S.FIN_WAIT1,
    "FIN_WAIT2": _S.FIN_WAIT2, "FIN_WAIT_2": _S.FIN_WAIT2, "TIME_WAIT": _S.TIME_WAIT, "CLOSE": _S.CLOSE,
    "CLOSED": _S.CLOSE, "CLOSE_WAIT": _S.CLOSE_WAIT, "LAST_ACK": _S.LAST_ACK, "LISTEN": _S.LISTEN,
    "LISTENING": _S.LISTEN, "CLOSING": _S.CLOSING, "BOUND": _S.CLOSE, "DELETE_TCB": _S.CLOSE,
    # Localized Windows builds (German shown; French and most others keep the English words).
    "ABHÖREN": _S.LISTEN, "HERGESTELLT": _S.ESTABLISHED, "WARTEND": _S.TIME_WAIT,
    "SCHLIESSEN_WARTEN": _S.CLOSE_WAIT, "SYN_GESENDET": _S.SYN_SENT, "SYN_EMPFANGEN": _S.SYN_RECV,
    "SCHLIESSEND": _S.CLOSING, "LETZTE_BESTÄTIGUNG": _S.LAST_ACK, "FIN_WARTEN_1": _S.FIN_WAIT1,
    "FIN_WARTEN_2": _S.FIN_WAIT2, "GESCHLOSSEN": _S.CLOSE,
}


class ConnRow(NamedTuple):
    """One TCP socket as a text tool printed it. `remote` is None for a listener's `*:*`."""

    family: int  # 4 or 6
    state: int  # TcpState number
    local: str  # address text; "" when the tool printed a name we cannot turn into an address
    local_port: int
    remote: str | None
    remote_port: int
    recv_q: int | None = None
    send_q: int | None = None
    backlog: int | None = None  # LISTEN rows whose tool shows the backlog in force (ss, BSD -L)
    drops: int | None = None  # ss -m skmem d<N>
    expires_ms: int = 0  # ss -o timer / netstat -o timer, when shown
    pid: int | None = None
    command: str | None = None
    line: int = 0

    @property
    def resolved(self) -> bool:
        return bool(self.local) and (self.remote is None or bool(self.remote))


def parse_port(text: str) -> int:
    if text.isdecimal():
        port = num(text)  # ASCII digits only, at most 20 (ValueError otherwise)
        if port > 65535:
            raise ValueError(f"port {port} above 65535")
        return port
    if text == "*":
        return 0
    known = SERVICES.get(text.lower())
    if known is None:
        raise ValueError(f"unknown service name {text[:30]!r}")
    return known


@lru_cache(maxsize=65536)
def canonical_ip(host: str) -> tuple[str, int] | None:
    """('10.0.0.1', 4), ('::1', 6); IPv4-mapped IPv6 as plain IPv4, as sock_diag.format_address shows it.

    inet_pton is strict (no `1.2.3`, no leading zeros); cached because captures repeat addresses.
    """
    try:
        return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, host)), 4
    except OSError:
        pass
    try:
        raw = socket.inet_pton(socket.AF_INET6, host)
    except OSError:
        return None
    if raw[:12] == _V4MAPPED:
        return socket.inet_ntop(socket.AF_INET, raw[12:]), 4
    return socket.inet_ntop(socket.AF_INET6, raw), 6


def normalize_host(host: str, family_hint: int | None = None) -> tuple[str, int]:
    """Address text -> (canonical address or "" when it is a host name, family)."""
    host = host.strip("[]")
    if "%" in host:
        host = host.split("%", 1)[0]
    if host in ("*", ""):
        return ("::" if family_hint == 6 else "0.0.0.0", family_hint or 4)
    if host == "localhost":
        return ("::1" if family_hint == 6 else "127.0.0.1", family_hint or 4)
    found = canonical_ip(host)
    if found is not None:
        return found
    if any(c.isspace() for c in host) or len(host) > 255 or "\0" in host:
        raise ValueError(f"not an address {host[:40]!r}")
    return ("", family_hint or 4)  # a host name (tool run without -n)


def split_colon(endpoint: str, family_hint: int | None = None) -> tuple[str, int, int]:
    """`10.0.0.1:80`, `[::1]:80`, `:::80`, `*:*`, `0.0.0.0%virbr0:67` -> (address, port, family)."""
    if endpoint.startswith("[") and "]:" in endpoint:
        host, port = endpoint[1:].split("]:", 1)
    else:
        host, sep, port = endpoint.rpartition(":")
        if not sep:
            raise ValueError(f"no port in {endpoint[:40]!r}")
    address, family = normalize_host(host, family_hint)
    return address, parse_port(port), family


def split_dot(endpoint: str, family_hint: int | None = None) -> tuple[str, int, int]:
    """BSD form: `192.168.1.2.443`, `*.80`, `fe80::1%lo0.631`, `*.*`."""
    host, sep, port = endpoint.rpartition(".")
    if not sep:
        raise ValueError(f"no port in {endpoint[:40]!r}")
    address, family = normalize_host(host, family_hint)
    return address, parse_port(port), family


def raw_address(address: str, family: int) -> tuple[int, bytes]:
    """(socket family, 16 raw bytes) as parsers/sock_diag.SocketAggregator.add expects them.

    The address text decides, not the row's family: one row can pair an IPv6 local address
    (`fe80::1%eth0`, zone already cut by normalize_host) with an IPv4 peer.
    """
    if ":" in address:
        return socket.AF_INET6, socket.inet_pton(socket.AF_INET6, address)
    return socket.AF_INET, socket.inet_pton(socket.AF_INET, address).ljust(16, b"\0")


class PlainBlock(NamedTuple):
    """A block of lines that are all plain connection rows of one shape (parsers/ss_text.plain_ss_block,
    parsers/netstat_text.plain_windows_block), as columns: row i is (states[i], locals[i], peers[i]), family
    hint 4. `shapes`: each distinct (first token, number of tokens, second token starts with a digit, "=" in
    the last token) of its lines (what analyze/segment.py classifies a table row by)."""

    lines: list[str]
    states: list[str]
    locals: list[str]
    peers: list[str]
    shapes: frozenset[tuple[str, int, bool, bool]]
    open_end: bool = False  # the line after the block may continue its last row (ss): that row is read as a line


BLOCK_LINES = 1024  # lines looked at as one PlainBlock (a non-plain line makes its block go line by line)


def in_blocks(lines: Iterable[str], size: int = BLOCK_LINES) -> Iterator[list[str]]:
    """Lines in lists of at most `size` (the block parsers take blocks)."""
    it = iter(lines)
    while block := list(islice(it, size)):
        yield block

