"""Host facts a capture may carry besides sockets: sysctls, uptime, hostname; platform defaults.

Sample inputs: `sysctl -a` text (`net.core.somaxconn = 4096`), single-value /proc/sys files
(`sys/net/core/somaxconn` -> `4096`), /proc/uptime (`350735.47 234388.90`), `uptime` output
(` 10:20:11 up 35 days,  2:03,  1 user,  load average: 0.00, 0.01, 0.05`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from datetime import UTC

from connwatch.errors import ParseError
from connwatch.model import Sysctls
from connwatch.parsers.hostlimits import parse_int_triple
from connwatch.parsers.numbers import num, real
from connwatch.parsers.sysctl import parse_int, parse_port_range

# sysctl name -> Sysctls field. BSD names map to the same meaning.
SYSCTL_FIELDS = {
    "net.core.somaxconn": "somaxconn", "kern.ipc.somaxconn": "somaxconn",
    "kern.ipc.soacceptqueue": "somaxconn", "net.ipv4.tcp_max_syn_backlog": "tcp_max_syn_backlog",
    "net.ipv4.tcp_syncookies": "tcp_syncookies", "net.ipv4.tcp_abort_on_overflow": "tcp_abort_on_overflow",
    "net.ipv4.tcp_tw_reuse": "tcp_tw_reuse", "net.ipv4.tcp_tw_reuse_delay": "tcp_tw_reuse_delay",
    "net.ipv4.tcp_max_tw_buckets": "tcp_max_tw_buckets", "net.ipv4.tcp_max_orphans": "tcp_max_orphans",
    "net.ipv4.tcp_fin_timeout": "tcp_fin_timeout", "net.ipv4.tcp_syn_retries": "tcp_syn_retries",
    "net.ipv4.tcp_syn_linear_timeouts": "tcp_syn_linear_timeouts",
    "net.netfilter.nf_conntrack_max": "nf_conntrack_max", "fs.file-max": "file_max",
}
# Values of `sysctl -a` that are not settings: the namespace's conntrack count, the host's file handles.
CONNTRACK_COUNT, FILE_NR, TCP_MEM = "net.netfilter.nf_conntrack_count", "fs.file-nr", "net.ipv4.tcp_mem"
PORT_RANGE = "net.ipv4.ip_local_port_range"
BSD_FIRST, BSD_LAST = "net.inet.ip.portrange.first", "net.inet.ip.portrange.last"
_SYS_FILE = re.compile(r"(?:^|/)sys/(net/(?:core|ipv4)/[a-z_]+)$")
_UPTIME_CMD = re.compile(r"\bup\s+(?:(\d+)\s+days?,\s*)?(?:(\d+):(\d+)|(\d+)\s+min)")

# z/OS: TCPCONFIG EPHEMERALPORTS in the TCP/IP PROFILE, 1024-65535 unless set.
DEFAULT_RANGES = {"windows": (49152, 65535), "bsd": (49152, 65535), "linux": (32768, 60999), "zos": (1024, 65535)}
ADVICE = {
    "windows": [
        "Windows: outgoing connections use the dynamic port range, 49152–65535 by default (16,384 ports "
        "per destination); see `netsh int ipv4 show dynamicport tcp`, widen it with `netsh int ipv4 set "
        "dynamicport tcp start=10000 num=55535`.",
        "Windows keeps a closed connection in TIME_WAIT for TcpTimedWaitDelay seconds (240 by default; "
        "HKLM\\SYSTEM\\CurrentControlSet\\Services\\Tcpip\\Parameters, 30–60 is common, reboot needed); "
        "reuse connections (keep-alive, pooling) rather than open one per request.",
        "Windows netstat shows no accept queues and keeps no listen-overflow counter: backlog checks "
        "cannot be made from it.",
    ],
    "bsd": [
        "macOS/FreeBSD: the listen backlog is capped by kern.ipc.somaxconn (kern.ipc.soacceptqueue on "
        "FreeBSD; 128 by default): `sysctl kern.ipc.somaxconn=1024`, then restart the service.",
        "macOS/FreeBSD: ephemeral ports come from net.inet.ip.portrange.first–last (49152–65535 by "
        "default); TIME_WAIT lasts 2×MSL (net.inet.tcp.msl, 15 s on macOS, 30 s on FreeBSD).",
    ],
    "zos": [
        "z/OS: a listener's backlog is min(the application's listen() backlog, SOMAXCONN in the TCP/IP "
        "PROFILE); raise SOMAXCONN (then VARY TCPIP,,OBEYFILE) and the application's backlog. CICS sockets: "
        "the TCPIPSERVICE BACKLOG attribute (0 means SOMAXCONN on CICS TS 5.1 and later).",
        "z/OS: the COnn report shows no queue figures; `NETSTAT ALL` (TSO) or `netstat -A` (z/OS UNIX) shows "
        "each listener's maximum backlog allowed, current backlog and connections dropped (connwatch does not "
        "read that report yet).",
    ],
    "linux": [
        "Linux: the listen backlog is min(listen() argument, net.core.somaxconn); ephemeral ports come "
        "from net.ipv4.ip_local_port_range (32768–60999 by default) per destination; TIME_WAIT lasts 60 s.",
    ],
}


def sysctl_file(rel: str) -> str | None:
    """`proc/sys/net/core/somaxconn` -> `net.core.somaxconn`, for the files connwatch uses."""
    m = _SYS_FILE.search(rel)
    if not m:
        return None
    name = m.group(1).replace("/", ".")
    return name if name in SYSCTL_FIELDS or name == PORT_RANGE else None


def parse_sysctl_lines(lines: Iterable[str], source: str) -> dict[str, str]:
    """`name = value` lines (sysctl -a); only the names connwatch uses are kept."""
    out: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            name, sep, value = line.partition(":")  # BSD `sysctl kern.ipc.somaxconn` prints "name: value"
        if not sep:
            raise ParseError(source, "expected 'name = value'", number)
        name = name.strip()
        if name in SYSCTL_FIELDS or name in (PORT_RANGE, BSD_FIRST, BSD_LAST, CONNTRACK_COUNT, FILE_NR, TCP_MEM):
            out[name] = value.strip()
    return out


def sysctls_from(values: dict[str, str], source: str) -> Sysctls:
    fields: dict[str, object] = {}
    for name, value in values.items():
        field = SYSCTL_FIELDS.get(name)
        if field is not None:
            fields[field] = parse_int(value, f"{source} ({name})")
    if PORT_RANGE in values:
        fields["ip_local_port_range"] = parse_port_range(values[PORT_RANGE], f"{source} ({PORT_RANGE})")
    elif BSD_FIRST in values and BSD_LAST in values:
        fields["ip_local_port_range"] = parse_port_range(f"{values[BSD_FIRST]} {values[BSD_LAST]}", source)
    if TCP_MEM in values:
        fields["tcp_mem"] = parse_int_triple(values[TCP_MEM], f"{source} ({TCP_MEM})")
    if FILE_NR in values and "file_max" not in fields:
        fields["file_max"] = parse_int_triple(values[FILE_NR], f"{source} ({FILE_NR})")[2]
    return Sysctls(**fields)  # type: ignore[arg-type]


def host_counts(values: dict[str, str], source: str) -> tuple[int | None, int | None]:
    """(the namespace's nf_conntrack_count, the host's allocated file handles) from `sysctl -a` values."""
    count = parse_int(values[CONNTRACK_COUNT], f"{source} ({CONNTRACK_COUNT})") if CONNTRACK_COUNT in values else None
    files = parse_int_triple(values[FILE_NR], f"{source} ({FILE_NR})")[0] if FILE_NR in values else None
    return count, files


def merge_sysctls(base: Sysctls, more: Sysctls) -> Sysctls:
    changes = {f.name: getattr(more, f.name) for f in dataclasses.fields(more) if getattr(more, f.name) is not None}
    return dataclasses.replace(base, **changes)


def parse_date(text: str) -> float | None:
    """Epoch seconds from `date` output (sosreport `date`, `date -u`, `date -Is`); None when not parseable.

    Only zones that name their offset are trusted: UTC/GMT/Z or a numeric offset.
    """
    from datetime import datetime

    line = text.strip().splitlines()[0] if text.strip() else ""
    for pattern in ("%a %b %d %H:%M:%S UTC %Y", "%a %b %d %H:%M:%S GMT %Y", "%a %d %b %Y %H:%M:%S UTC"):
        try:
            return datetime.strptime(" ".join(line.split()), pattern).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(line.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None


def parse_uptime(line: str, source: str, number: int = 1) -> float:
    """Seconds since boot from /proc/uptime or `uptime` output (`line`, line `number` of `source`)."""
    tokens = line.split()
    if len(tokens) == 2 and "up" not in tokens:
        try:
            return real(tokens[0])
        except ValueError:
            raise ParseError(source, "expected '<uptime> <idle>' seconds", number) from None
    m = _UPTIME_CMD.search(line)
    if not m:
        raise ParseError(source, "no 'up ...' in uptime output", number)
    try:
        days, hours, mins, only_mins = (num(x) if x else 0 for x in m.groups())
    except ValueError as exc:
        raise ParseError(source, f"uptime: {exc}", number) from None
    return float(days * 86400 + hours * 3600 + (mins or only_mins) * 60)
