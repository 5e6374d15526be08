r"""Parse `conntrack -L` (conntrack-tools: the netfilter connection tracking table, one line per entry)
as people paste it, into facts: how many entries, TCP entries by state, who holds them.

Each line is an entry as libnetfilter_conntrack prints it (`-o extended` adds the layer-3 prefix);
the original direction's tuple comes first, then the reply tuple; entries offloaded to a flowtable
print neither timeout nor state; the summary goes to stderr, so it survives `| grep`::

    # conntrack -L
    tcp      6 431981 ESTABLISHED src=172.20.36.14 dst=172.31.2.45 sport=59930 dport=17652 src=172.31.2.45 \
        dst=172.20.36.14 sport=17652 dport=59930 [ASSURED] mark=0 use=1
    udp      17 src=100.64.0.5 dst=8.8.8.8 sport=41510 dport=53 src=8.8.8.8 dst=192.168.122.222 sport=53 \
        dport=12100 [OFFLOAD] mark=0 use=2
    conntrack v1.4.6 (conntrack-tools): 6 flow entries have been shown.

(one line each, wrapped here; vishvananda/netlink issue 876 and svinota/pyroute2 issue 1198).
`-o extended` puts the layer-3 name and number first (`ipv4     2 tcp      6 ...`).

What this counts: entries of the conntrack table (net/netfilter/nf_conntrack_core.c), not sockets of
this host — forwarded and NATed flows have entries too, and a TIME_WAIT entry is the tracker's own
timer. So the entries are reported as facts (notes), never as the host's sockets or listeners. The
summary's count is what -L listed with its options (family, filters): a lower bound of
nf_conntrack_count, not a reading of it; it is not used as the table's fill.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from connwatch.errors import ParseError
from connwatch.parsers.conn_rows import canonical_ip
from connwatch.parsers.numbers import num, port

CONNTRACK_ENTRY = re.compile(r"(?:ipv[46]\s+\d+\s+)?[a-z][a-z0-9-]*\s+\d+\s+(?:\d+\s+)?(?:[A-Z][A-Z_0-9]*\s+)?"
                             r"src=\S+\s+dst=\S+(?:\s.*)?")
CONNTRACK_SUMMARY = re.compile(r"conntrack v[\d.]+ \(conntrack-tools\): (\d+) flow entries have been shown\.")
_HEAD = re.compile(r"(?:(ipv[46])\s+\d+\s+)?([a-z][a-z0-9-]*)\s+(\d+)\s+(?:(\d+)\s+)?(?:([A-Z][A-Z_0-9]*)\s+)?(src=.*)")
TOP = 3


@dataclass
class ConntrackList:
    """Facts of one `conntrack -L` listing."""

    entries: int = 0
    shown: int | None = None  # the tool's own summary line (entries it listed before any `| grep`)
    protocols: Counter[str] = field(default_factory=Counter)
    tcp_states: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)  # original direction's source address
    dports: Counter[int] = field(default_factory=Counter)  # original direction's destination port
    unreplied: int = 0
    offloaded: int = 0


def _entry(text: str, out: ConntrackList) -> None:
    m = _HEAD.fullmatch(text)
    if m is None:
        raise ValueError("not a conntrack entry")
    proto, state = m.group(2), m.group(5)
    num(m.group(3))  # the protocol number: bounded like every number read
    pairs = m.group(6).split()
    orig = dict(p.split("=", 1) for p in _first_tuple(pairs))
    src = orig.get("src", "")
    if canonical_ip(src) is None or canonical_ip(orig.get("dst", "")) is None:
        raise ValueError(f"not an IP address in the original tuple: {src[:40]!r}")
    out.entries += 1
    out.protocols[proto] += 1
    if proto == "tcp":
        out.tcp_states[state or "(no state: offloaded)"] += 1
    out.sources[src] += 1
    if "dport" in orig:
        out.dports[port(orig["dport"])] += 1
    out.unreplied += "[UNREPLIED]" in pairs
    out.offloaded += "[OFFLOAD]" in pairs


def _first_tuple(pairs: list[str]) -> list[str]:
    """The key=value fields of the original direction: up to the second `src=`."""
    first: list[str] = []
    for p in pairs:
        if p.startswith("src=") and first:
            break
        if "=" in p and not p.startswith("["):
            first.append(p)
    return first


def parse_conntrack_list(lines: Iterable[str], source: str) -> ConntrackList:
    """Entries and summary lines of `conntrack -L`; any other non-blank line is a ParseError naming it."""
    out = ConntrackList()
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        summary = CONNTRACK_SUMMARY.fullmatch(text)
        try:
            if summary:
                out.shown = (out.shown or 0) + num(summary.group(1))
            else:
                _entry(text, out)
        except ValueError as exc:
            raise ParseError(source, f"not a conntrack -L line ({exc}): {text[:60]!r}", number) from None
    if not out.entries and out.shown is None:
        raise ParseError(source, "no conntrack -L entries or summary line")
    return out


def _top(counts: Counter[str] | Counter[int]) -> str:
    return ", ".join(f"{k} ({n})" for k, n in counts.most_common(TOP))


def conntrack_list_note(c: ConntrackList, where: str) -> str:
    """One line of facts for the report."""
    parts = [f"{where}: conntrack -L, {c.entries} entr{'y' if c.entries == 1 else 'ies'} of the connection tracking "
             "table in the paste (flows through or to the host, not its sockets)"]
    if c.shown is not None:
        parts.append(f"the tool's summary says it listed {c.shown} (before any `| grep`; a lower bound of "
                     "nf_conntrack_count, to compare with net.netfilter.nf_conntrack_max)")
    if c.tcp_states:
        parts.append("TCP by state: " + ", ".join(f"{k} {n}" for k, n in c.tcp_states.most_common()))
    if c.entries:
        parts.append(f"most entries from {_top(c.sources)}; to port {_top(c.dports)}")
    if c.unreplied:
        parts.append(f"{c.unreplied} never answered ([UNREPLIED])")
    if c.offloaded:
        parts.append(f"{c.offloaded} offloaded to a flowtable")
    return "; ".join(parts)
