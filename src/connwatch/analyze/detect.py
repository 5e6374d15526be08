"""Name a capture file's format from its first lines (and, inside a directory, its path).

The first line that only one format could have written decides; file names are a hint only for
files whose content alone is ambiguous (single-value /proc/sys files, `date`, `hostname`).
"""

from __future__ import annotations

import re

from connwatch.parsers.conn_rows import NETSTAT_STATES, SS_STATES
from connwatch.parsers.conntrack import CONNTRACK_ROW
from connwatch.parsers.conntrack_list import CONNTRACK_ENTRY, CONNTRACK_SUMMARY
from connwatch.parsers.lsof import LSOF_HEADER, LSOF_ROW
from connwatch.parsers.netstat_stats import sentence_counter
from connwatch.parsers.snmp_tcp import SNMP_LINE
from connwatch.parsers.ss_text import NETIDS
from connwatch.parsers.windows_text import PS_FIELD, PS_HEADER, PS_ROW
from connwatch.parsers.zos_netstat import ZOS_BANNER, ZOS_ROW

SNAPSHOT = "connwatch-snapshot"
SS = "ss"
SS_SUMMARY = "ss-summary"
NETSTAT_LINUX, NETSTAT_WINDOWS, NETSTAT_BSD, NETSTAT_BSD_LISTEN = (
    "netstat-linux", "netstat-windows", "netstat-bsd", "netstat-bsd-listen")
NETSTAT_S_LINUX, NETSTAT_S_WINDOWS, NSTAT = "netstat-s-linux", "netstat-s-windows", "nstat"
PROC_NETSTAT, PROC_SNMP, PROC_SNMP6 = "proc-net-netstat", "proc-net-snmp", "proc-net-snmp6"
PROC_SOCKSTAT, PROC_SOCKSTAT6, PROC_TCP, PROC_TCP6 = (
    "proc-net-sockstat", "proc-net-sockstat6", "proc-net-tcp", "proc-net-tcp6")
UPTIME, SYSCTL_A = "uptime", "sysctl-a"
POWERSHELL_TCP, NETSH_DYNAMICPORT = "powershell-nettcpconnection", "netsh-dynamicport"
POWERSHELL_LIST = "powershell-nettcpconnection-list"
ZOS_CONN, LSOF, SNMP_TCP, CONNTRACK_S = "zos-netstat-conn", "lsof", "snmpwalk-tcp-mib", "conntrack-s"
CONNTRACK_L = "conntrack-l"

PLATFORM = {NETSTAT_WINDOWS: "windows", NETSTAT_S_WINDOWS: "windows", NETSTAT_BSD: "bsd",
            NETSTAT_BSD_LISTEN: "bsd", POWERSHELL_TCP: "windows", NETSH_DYNAMICPORT: "windows",
            POWERSHELL_LIST: "windows", ZOS_CONN: "zos"}

_ADDR_COLON = r"(?:\[[^\]]+\]|[^\s\[\]]*):(?:\d+|\*|[a-z][\w-]*)"
_LINUX_ROW = re.compile(rf"(?:tcp|tcp6|udp|udp6|raw|raw6)\s+\d+\s+\d+\s+{_ADDR_COLON}\s+{_ADDR_COLON}")
_WIN_ROW = re.compile(rf"(?:TCP|UDP)\s+{_ADDR_COLON}\s+(?:{_ADDR_COLON}|\*:\*)")
_BSD_ROW = re.compile(r"(?:tcp|tcp4|tcp6|tcp46|udp|udp4|udp6|udp46)\s+\d+\s+\d+\s+\S+\.(?:\d+|\*|[a-z][\w-]*)"
                      r"\s+\S+\.(?:\d+|\*|[a-z][\w-]*)")
_BSD_LISTEN_ROW = re.compile(r"(?:(?:0x)?[0-9a-f]{8,16}\s+)?(?:tcp\d*\s+)?\d+/\d+/\d+\s+\S+\.(?:\d+|[a-z][\w-]*)")
_PROC_HEADER = re.compile(r"([A-Za-z][A-Za-z0-9]*): [A-Za-z]")
_PROC_TCP = re.compile(r"\d+: ([0-9A-Fa-f]{8}|[0-9A-Fa-f]{32}):[0-9A-Fa-f]{4} ")
_SNMP6 = re.compile(r"(?:Ip6|Icmp6|Udp6|UdpLite6)[A-Za-z0-9]+\s+\d+")
_NSTAT = re.compile(r"[A-Z][A-Za-z0-9]+\s+\d+\s+[0-9.]+")
_UPTIME = re.compile(r"\d+(?:\.\d+)?\s+\d+(?:\.\d+)?|.*\bup\s+.*load average.*")
_SYSCTL = re.compile(r"[a-z][\w-]*\.[\w.-]+\s*=\s*.*")  # the first dot split off: linear (`[\w.-]*\.` was quadratic)
_SYSCTL_LINE = re.compile(r"(?:net|kern|vm|fs|kernel|security|hw)\.[\w.-]+\s*(?:=|:)\s*\S.*")
_SS_SUMMARY_TCP = re.compile(r"TCP:\s+\d+ \(estab \d+")
_LINUX_STAT_SECTIONS = ("Ip:", "Icmp:", "IcmpMsg:", "Tcp:", "Udp:", "UdpLite:", "TcpExt:", "IpExt:",
                        "MPTcpExt:")


def _ss_row(tokens: list[str]) -> bool:
    rest = tokens[1:] if tokens[0] in NETIDS else tokens
    if rest and rest[0] in SS_STATES:
        rest = rest[1:]
    return (len(rest) >= 4 and rest[0].isdecimal() and rest[1].isdecimal() and ":" in rest[2]
            and (tokens[0] in NETIDS or tokens[0] in SS_STATES))


def line_kind(line: str, following: list[str]) -> str | None:
    """The format a single line belongs to, when only one format writes such a line (else None).

    `following` is the next few non-blank lines (some formats are told by a header and its rows).
    """
    text = line.strip()
    tokens = text.split()
    if text.startswith("{") and not text.startswith("{master"):
        return SNAPSHOT
    if sentence_counter(text) is not None:
        return NETSTAT_S_LINUX  # `netstat -s | grep listen`: net-tools' own sentences, no section header
    if _SYSCTL_LINE.fullmatch(text):
        return SYSCTL_A
    if _SS_SUMMARY_TCP.match(text) or (text.startswith("Total:") and any(
            _SS_SUMMARY_TCP.match(x.strip()) for x in following[:3])):
        return SS_SUMMARY
    if "load average" in text and re.search(r"\bup\s", text):
        return UPTIME
    if ZOS_BANNER.fullmatch(text) or ZOS_ROW.fullmatch(text):
        return ZOS_CONN
    if LSOF_HEADER.fullmatch(text) or LSOF_ROW.fullmatch(text):
        return LSOF
    if SNMP_LINE.fullmatch(text):
        return SNMP_TCP
    if CONNTRACK_ROW.fullmatch(text):
        return CONNTRACK_S
    if ("src=" in text and CONNTRACK_ENTRY.fullmatch(text)) or CONNTRACK_SUMMARY.fullmatch(text):
        return CONNTRACK_L
    if PS_HEADER.fullmatch(text) or PS_ROW.fullmatch(text):
        return POWERSHELL_TCP
    if PS_FIELD.fullmatch(text):
        return POWERSHELL_LIST
    if text.startswith("Protocol tcp Dynamic Port Range") or re.fullmatch(r"(?:Start Port|Number of Ports)\s*:\s*\d+",
                                                                         text):
        return NETSH_DYNAMICPORT
    if text == "#kernel" or (_NSTAT.fullmatch(text) and tokens[0].startswith(("Tcp", "Ip", "Udp", "Icmp"))
                             and not _SNMP6.fullmatch(text)):
        return NSTAT
    if text.startswith("Current listen queue sizes") or _BSD_LISTEN_ROW.fullmatch(text) or (
            tokens[:1] == ["unix"] and len(tokens) == 3 and re.fullmatch(r"\d+/\d+/\d+", tokens[1])):
        return NETSTAT_BSD_LISTEN
    if text.startswith("Total:") and "(kernel" in text:
        return SS_SUMMARY
    if text in _LINUX_STAT_SECTIONS and not line[:1].isspace():
        return NETSTAT_S_LINUX
    if " Statistics" in text or _label_equals_number(text):
        return NETSTAT_S_WINDOWS if " = " in " ".join(following[:12]) or "=" in text else None
    m = _PROC_HEADER.match(text)
    if m and following and following[0].split()[:1] == [m.group(1) + ":"]:
        return PROC_NETSTAT if any(x.startswith(("TcpExt:", "IpExt:")) for x in [text, *following]) \
            else PROC_SNMP
    if text.startswith("sockets: used") or text.startswith("TCP: inuse"):
        return PROC_SOCKSTAT
    if text.startswith("TCP6: inuse"):
        return PROC_SOCKSTAT6
    if _SNMP6.fullmatch(text):
        return PROC_SNMP6
    if text.startswith("sl ") and "local_address" in text:
        return _proc_tcp_kind(following)
    if _PROC_TCP.match(text):
        return PROC_TCP6 if len(_PROC_TCP.match(text).group(1)) == 32 else PROC_TCP  # type: ignore[union-attr]
    return _table_kind(text, tokens)


def _table_kind(text: str, tokens: list[str]) -> str | None:
    """Connection tables: netstat (Linux, Windows, BSD) or ss, from one row or header."""
    if _LINUX_ROW.match(text) and (tokens[0].startswith("udp") or (
            len(tokens) >= 6 and (tokens[5] in NETSTAT_STATES or not any(c in tokens[5] for c in ":(")))):
        return NETSTAT_LINUX
    if _WIN_ROW.match(text):
        return NETSTAT_WINDOWS
    if _BSD_ROW.match(text):
        return NETSTAT_BSD
    if tokens and _ss_row(tokens):
        return SS
    if tokens[:1] in (["State"], ["Netid"]) and "Local" in text and "Address:Port" in text:
        return SS
    return None


def _proc_tcp_kind(following: list[str]) -> str:
    for line in following:
        m = _PROC_TCP.match(line.strip())
        if m:
            return PROC_TCP6 if len(m.group(1)) == 32 else PROC_TCP
    return PROC_TCP


def _label_equals_number(text: str) -> bool:
    """`Active Opens  = 12` (as the regex `.+?\\s+=\\s+\\d+`, which is quadratic on a long line of spaces)."""
    label, sep, value = text.rpartition("=")
    return bool(sep) and label[:1].strip() != "" and label[-1:].isspace() and value[:1].isspace() \
        and value.lstrip().isdecimal()


def detect(head: str, rel: str = "") -> str | None:
    """The format of a file whose first bytes decode to `head`; None when unrecognised."""
    lines = [x for x in head.splitlines()[:200] if x.strip()]
    if len(lines) == 1 and _UPTIME.fullmatch(lines[0].strip()) and _is_uptime(rel, lines[0]):
        return UPTIME
    if lines and all(_SYSCTL.fullmatch(x.strip()) for x in lines[:20]) and len(lines) >= 3:
        return SYSCTL_A
    for index, line in enumerate(lines[:60]):
        kind = line_kind(line, lines[index + 1:index + 13])
        if kind == PROC_TCP and rel.endswith("tcp6"):
            return PROC_TCP6  # a header-only tcp6 file has no 32-digit address to tell it by
        if kind is not None:
            return kind
    return None


def _is_uptime(rel: str, line: str) -> bool:
    return "load average" in line or rel.rsplit("/", 1)[-1] == "uptime"
