"""Per-source attributes: ConnectionsPerSource, HalfOpenPerSource, PortsPerSource. Pure.

Input: Snapshot.sockets.sources, one SourceUsage per (remote address, local listening port) with a
count per TCP state, built by parsers/sock_diag.py (or /proc/net/tcp) while decoding.

Which states count:
- ConnectionsPerSource counts ESTABLISHED + CLOSE_WAIT. Both are connections the source opened
  that are accepted or waiting in the accept queue (a queued connection is ESTABLISHED, or
  CLOSE_WAIT once the client gave up), so both hold a slot in an application's per-source limit
  (Exchange MaxInboundConnectionPerSource, nginx limit_conn, HAProxy conn_cur) and a conntrack
  entry that nftables `ct count` counts. SYN_RECV is not a connection yet (HalfOpenPerSource).
  FIN_WAIT1/2, CLOSING, LAST_ACK and TIME_WAIT were closed by this host: no application holds them.
- HalfOpenPerSource counts SYN_RECV: request sockets whose handshake has not completed (sock_diag
  and /proc/net/tcp both report the kernel's NEW_SYN_RECV request sockets as SYN_RECV).
- PortsPerSource counts the distinct listening ports a source holds or attempts in any state, in
  the union of the two samples. Probes of ports with no listener leave no socket: not seen here.

Bounded cost: one pass over the aggregates; per port only the top N sources (heapq.nlargest) become
measurements, so at most N alerts per port (`max_alerts_per_port`); the others are summarised by a
histogram (value -> number of sources; at most a few hundred distinct values) that the explanation
uses to say how many more sources are above the limit.
"""

from __future__ import annotations

import heapq
import ipaddress
import socket
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from connwatch.attributes.ephemeral_facts import ProcessFacts
from connwatch.attributes.registry import AttributeSpec, Need, Subject
from connwatch.attributes.sources_facts import PortListener, PortsFacts, PrefixFacts, SourcePortFacts, SourcesContext
from connwatch.explain import sources as words
from connwatch.findings import Explanation, Finding, Measurement, facts_dict
from connwatch.model import Snapshot, SourceUsage
from connwatch.perf import gc_paused
from connwatch.rules.rule import Rule
from connwatch.rules.sources import CONNECTIONS, HALF_OPEN, PORTS, SourceSettings
from connwatch.rules.sources import DEFAULT as DEFAULT_SETTINGS

if TYPE_CHECKING:
    from connwatch.rules.config import Config

F = TypeVar("F")

DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(CONNECTIONS, 100, severity=3, alert_class="sources"),
    Rule(HALF_OPEN, 50, severity=3, alert_class="sources"),
    Rule(PORTS, 10, severity=4, alert_class="sources"),
)

HELD_STATES = ("ESTABLISHED", "CLOSE_WAIT")
HALF_OPEN_STATES = ("SYN_RECV",)
HISTOGRAM_MAX = 200  # distinct values kept per port; n sockets give at most sqrt(2n) distinct counts
MEMBER_SAMPLE = 5  # addresses named per aggregated prefix




@dataclass(frozen=True, slots=True)
class SourceRow:
    """One source (or prefix) on one port, with its counts."""

    source: str
    port: int
    states: Mapping[str, int]
    connections: int  # ESTABLISHED + CLOSE_WAIT (HELD_STATES), computed once
    half_open: int  # SYN_RECV (HALF_OPEN_STATES)
    members: tuple[str, ...] = ()  # addresses merged into an aggregated prefix (a sample)
    member_count: int = 1


@dataclass(frozen=True, slots=True)
class PortTally:
    """Totals and the heaviest sources of one listening port."""

    port: int
    sources: int  # distinct sources (or prefixes) with any socket on the port
    connections: int
    half_open: int
    histogram: tuple[tuple[int, int], ...]  # (connections, number of sources), highest first
    half_open_histogram: tuple[tuple[int, int], ...]
    top_connections: tuple[SourceRow, ...]
    top_half_open: tuple[SourceRow, ...]


def prefix_of(address: str, settings: SourceSettings) -> str:
    """The address, or its network (e.g. 10.1.2.0/24) when sources are aggregated by prefix."""
    version = 6 if ":" in address else 4
    plen = settings.prefix_for(version)
    if plen is None:
        return address
    fam, bits = (socket.AF_INET6, 128) if version == 6 else (socket.AF_INET, 32)
    raw = int.from_bytes(socket.inet_pton(fam, address), "big")
    mask = ((1 << plen) - 1) << (bits - plen)
    return f"{socket.inet_ntop(fam, (raw & mask).to_bytes(bits // 8, 'big'))}/{plen}"


Counts = tuple[int, int, SourceUsage]  # (connections, half-open, usage): one small tuple per source, transient


def _grouped(usages: Iterable[SourceUsage], settings: SourceSettings
             ) -> tuple[dict[int, list[Counts]], dict[tuple[str, int], list[str]]]:
    """Per port, (connections, half-open, usage) per source; usages merged per prefix when aggregating."""
    by_port: dict[int, list[Counts]] = defaultdict(list)
    members: dict[tuple[str, int], list[str]] = defaultdict(list)
    if settings.aggregate:
        merged: dict[tuple[str, int], Counter[str]] = {}
        for u in usages:
            key = (prefix_of(u.source, settings), u.port)
            merged.setdefault(key, Counter()).update(u.states)
            members[key].append(u.source)
        usages = [SourceUsage(prefix, port, dict(states)) for (prefix, port), states in merged.items()]
    for u in usages:  # HELD_STATES / HALF_OPEN_STATES inlined: this loop runs once per source
        st = u.states
        by_port[u.port].append((st.get("ESTABLISHED", 0) + st.get("CLOSE_WAIT", 0), st.get("SYN_RECV", 0), u))
    return by_port, members


def _histogram(values: Iterable[int]) -> tuple[tuple[int, int], ...]:
    counts = Counter(v for v in values if v > 0)
    return tuple(heapq.nlargest(HISTOGRAM_MAX, counts.items()))


def _top(rows: list[Counts], n: int, index: int, members: dict[tuple[str, int], list[str]]
         ) -> tuple[SourceRow, ...]:
    """The n heaviest by rows[i][index] (ties: the other count), as SourceRows; zeros left out."""
    other = 1 - index
    best = heapq.nlargest(n, rows, key=lambda r: (r[index], r[other]))
    out = []
    for c in best:
        if not c[index]:
            break
        names = members.get((c[2].source, c[2].port), [])
        out.append(SourceRow(c[2].source, c[2].port, c[2].states, c[0], c[1], tuple(sorted(names)[:MEMBER_SAMPLE]),
                             max(len(names), 1)))
    return tuple(out)


@gc_paused
def tally(snap: Snapshot, settings: SourceSettings, top: int | None = None) -> dict[int, PortTally]:
    """Per listening port: totals, histograms and the `top` heaviest sources (default: the alert cap)."""
    if snap.sockets is None:
        return {}
    n = top if top is not None else settings.max_alerts_per_port
    by_port, members = _grouped(snap.sockets.sources, settings)
    out = {}
    for port, rows in sorted(by_port.items()):
        out[port] = PortTally(
            port=port, sources=len(rows), connections=sum(r[0] for r in rows), half_open=sum(r[1] for r in rows),
            histogram=_histogram(r[0] for r in rows), half_open_histogram=_histogram(r[1] for r in rows),
            top_connections=_top(rows, n, 0, members), top_half_open=_top(rows, n, 1, members),
        )
    return out


@gc_paused
def ports_per_source(prev: Snapshot | None, cur: Snapshot, settings: SourceSettings) -> dict[str, set[int]]:
    """Distinct listening ports per source (or prefix) in either sample; sets only where more than one.

    Most sources use one port, so one int per source is kept and a set only for the others.
    """
    first: dict[str, int] = {}
    multi: dict[str, set[int]] = {}
    names: dict[str, str] = {}  # address -> prefix, each computed once
    for snap in (prev, cur):
        if snap is None or snap.sockets is None:
            continue
        for u in snap.sockets.sources:
            key = u.source
            if settings.aggregate:
                key = names.get(u.source) or names.setdefault(u.source, prefix_of(u.source, settings))
            have = first.setdefault(key, u.port)
            if have != u.port:
                multi.setdefault(key, {have}).add(u.port)
    for key, port in first.items():
        multi.setdefault(key, {port})
    return multi


def local_addresses(snap: Snapshot) -> frozenset[str]:
    """Addresses this host is seen using: specific listener addresses and local ends of its sockets."""
    found = {x.address for x in snap.listeners if x.address not in ("0.0.0.0", "::")}
    if snap.sockets is not None:
        found.update(d.local_address for d in snap.sockets.destinations)
    return frozenset(found)


def is_local(source: str, local: frozenset[str]) -> bool:
    """True when the source (address or prefix) is loopback or an address this host uses."""
    try:
        net = ipaddress.ip_network(source, strict=False)
    except ValueError:
        return False
    if net.network_address.is_loopback or source in local:
        return True
    return net.prefixlen < net.max_prefixlen and any(_in(a, net) for a in local)


def _in(address: str, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_address(address) in net
    except ValueError:
        return False


def port_listeners(snap: Snapshot, port: int) -> tuple[PortListener, ...]:
    """The listeners of a port and their owner processes, as facts for the explanation."""
    return tuple(PortListener(x.endpoint, None if x.owner is None else ProcessFacts(
        x.owner.pid, x.owner.command, x.owner.cmdline, x.owner.user)) for x in snap.listeners_on(port))


def owners(snap: Snapshot, port: int) -> list[dict[str, Any]]:
    """port_listeners as JSON-ready data (`connwatch sources`)."""
    return [facts_dict(x) for x in port_listeners(snap, port)]


ContextValues = tuple[float | None, bool, PrefixFacts | None, int, int | None, int | None]


def _context(c: SourcesContext) -> ContextValues:
    """The context's fields in order, to start a facts subclass's arguments."""
    return (c.interval_s, c.aggregate, c.prefix, c.max_alerts_per_port, c.tcp_syncookies, c.tcp_max_syn_backlog)


@dataclass(frozen=True, slots=True)
class _PortTotals:
    """What every source's facts on one port share (SourcePortFacts fields after the context)."""

    port: int
    owners: tuple[PortListener, ...]
    sources: int
    connections: int
    half_open: int


def measure(prev: Snapshot, cur: Snapshot, config: Config | None = None) -> list[Measurement]:
    s = config.sources if config is not None else DEFAULT_SETTINGS
    interval = round(max(cur.monotonic - prev.monotonic, 0.0), 3)
    local = local_addresses(cur)
    context = SourcesContext(
        interval_s=interval, aggregate=s.aggregate,
        prefix=PrefixFacts(s.ipv4_prefix, s.ipv6_prefix) if s.aggregate else None,
        max_alerts_per_port=s.max_alerts_per_port, tcp_syncookies=cur.sysctls.tcp_syncookies,
        tcp_max_syn_backlog=cur.sysctls.tcp_max_syn_backlog)
    out: list[Measurement] = []
    for port, t in tally(cur, s).items():
        base = _PortTotals(port, port_listeners(cur, port), t.sources, t.connections, t.half_open)
        out.extend(_per_port(CONNECTIONS, t.top_connections, context, base, t.histogram, local))
        out.extend(_per_port(HALF_OPEN, t.top_half_open, context, base, t.half_open_histogram, local))
    out.extend(_ports_measurements(prev, cur, s, context, local))
    return out


def resource_key(port: int | None, source: str) -> str:
    return f"TCP({'*' if port is None else port}) {source}"


def _per_port(attribute: str, rows: tuple[SourceRow, ...], context: SourcesContext, base: _PortTotals,
              histogram: tuple[tuple[int, int], ...], local: frozenset[str]) -> list[Measurement]:
    out = []
    for rank, row in enumerate(rows, 1):
        value = row.connections if attribute == CONNECTIONS else row.half_open
        if value < 2:  # no limit (>= 1) can be exceeded by one connection
            break
        facts = SourcePortFacts(
            *_context(context), port=base.port, owners=base.owners, port_sources=base.sources,
            port_connections=base.connections, port_half_open=base.half_open, histogram=histogram,
            source=row.source, states=dict(row.states), connections=row.connections, half_open=row.half_open,
            rank=rank, members=row.members, member_count=row.member_count, local=is_local(row.source, local),
            counted_states=HELD_STATES if attribute == CONNECTIONS else HALF_OPEN_STATES)
        out.append(Measurement(attribute, {"source": row.source, "port": row.port},
                               resource_key(row.port, row.source), float(value), "conns", "value", facts))
    return out


def _ports_measurements(prev: Snapshot, cur: Snapshot, s: SourceSettings, context: SourcesContext,
                        local: frozenset[str]) -> list[Measurement]:
    per_source = ports_per_source(prev, cur, s)
    hist = _histogram(len(p) for p in per_source.values())
    top = heapq.nlargest(s.max_alerts_per_port, per_source.items(), key=lambda kv: len(kv[1]))
    out = []
    for rank, (source, ports) in enumerate(top, 1):
        if len(ports) < 2:
            break
        facts = PortsFacts(*_context(context), source=source, ports=tuple(sorted(ports)[:100]), rank=rank,
                           sources_total=len(per_source), histogram=hist, local=is_local(source, local))
        out.append(Measurement(PORTS, {"source": source, "port": None}, resource_key(None, source),
                               float(len(ports)), "ports", "value", facts))
    return out


SOCKETS = Need("connections", lambda snap: snap.sockets is not None,
               "the capture lists no connections, only listeners or counters (add `ss -tan` or `netstat -an` output)")


def _spec(name: str, unit: str, facts: type[F], explainer: Callable[[Finding, F], Explanation],
          needs: tuple[Need, ...] = ()) -> AttributeSpec[F]:
    rules = tuple(r for r in DEFAULT_RULES if r.attribute == name)
    return AttributeSpec(name, unit, False, words.TEXTS[name], facts, explainer, rules, needs, scope="source")


SPECS: tuple[AttributeSpec[SourcePortFacts] | AttributeSpec[PortsFacts], ...] = (
    _spec(CONNECTIONS, "conns", SourcePortFacts, words.explain_connections, (SOCKETS,)),
    _spec(HALF_OPEN, "conns", SourcePortFacts, words.explain_half_open),
    _spec(PORTS, "ports", PortsFacts, words.explain_ports),
)
SUBJECT = Subject("sources", SPECS, measure)
