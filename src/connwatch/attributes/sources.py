"""Per-source attributes: ConnectionsPerSource, HalfOpenPerSource, PortsPerSource. Pure.

Input: Snapshot.sockets.sources, a model.SourceTable: per listening port, one packed int of counts per
TCP state for each remote address, built by parsers/sock_diag.py (or /proc/net/tcp) while decoding.

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
  the union of the two samples. `check`'s first sample leaves TIME_WAIT out (the second's holds the
  connections closed in the 60 s before it: collect_filtered._inbound_sockets). Probes of ports with
  no listener leave no socket: not seen here.

Bounded cost: per port one C-level sum of the packed ints (a port with no held or half-open
connection, TIME_WAIT only, costs nothing more), else one pass over its ints; objects (SourceRow,
strings) only for the top N sources (heapq.nlargest), which become measurements, so at most N
alerts per port (`max_alerts_per_port`); the others are summarised by a histogram (value ->
number of sources; at most a few hundred distinct values) that the explanation uses to say how many
more sources are above the limit.
"""

from __future__ import annotations

import _socket  # (not socket: its import was ~1.5 ms of `check`; see sources/netlink.py)
import heapq
import ipaddress
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping

from connwatch.attributes.ephemeral_facts import ProcessFacts
from connwatch.attributes.registry import AttributeSpec, Need, Subject
from connwatch.attributes.sources_facts import PortListener, PortsFacts, PrefixFacts, SourcePortFacts, SourcesContext
from connwatch.explain import sources as words
from connwatch.findings import Explanation, Finding, Measurement, facts_dict
from connwatch.model import Snapshot, SourceTable, address_text, half_open, held, state_counts
from connwatch.record import Record, record
from connwatch.rules.rule import Rule
from connwatch.rules.sources import CONNECTIONS, HALF_OPEN, PORTS, SourceSettings
from connwatch.rules.sources import DEFAULT as DEFAULT_SETTINGS

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import Any, TypeVar

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




@record
class SourceRow(Record):
    """One source (or prefix) on one port, with its counts."""

    source: str
    port: int
    states: Mapping[str, int]
    connections: int  # ESTABLISHED + CLOSE_WAIT (HELD_STATES), computed once
    half_open: int  # SYN_RECV (HALF_OPEN_STATES)
    members: tuple[str, ...] = ()  # addresses merged into an aggregated prefix (a sample)
    member_count: int = 1


@record
class PortTally(Record):
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
    fam, bits = (_socket.AF_INET6, 128) if version == 6 else (_socket.AF_INET, 32)
    raw = int.from_bytes(_socket.inet_pton(fam, address), "big")
    mask = ((1 << plen) - 1) << (bits - plen)
    return f"{_socket.inet_ntop(fam, (raw & mask).to_bytes(bits // 8, 'big'))}/{plen}"


Rows = Mapping[bytes, int]  # address (or prefix) key -> packed state counts (model.state_counts), one port


def _prefix_key(key: bytes, plen: int) -> bytes:
    bits = 8 * len(key)
    mask = ((1 << plen) - 1) << (bits - plen)
    return (int.from_bytes(key, "big") & mask).to_bytes(len(key), "big")


def source_text(key: bytes, settings: SourceSettings) -> str:
    """A table key as prefix_of would name it: the address, or the network/plen when aggregating."""
    plen = settings.prefix_for(4 if len(key) == 4 else 6)
    return address_text(key) if plen is None else f"{address_text(key)}/{plen}"


def _grouped(table: SourceTable, settings: SourceSettings
             ) -> tuple[Mapping[int, Rows], dict[tuple[bytes, int], list[bytes]]]:
    """Per port, the packed counts per source; merged per prefix when aggregating (packed counts add:
    no field can overflow), with the merged addresses of each prefix."""
    if not settings.aggregate:
        return table.by_port, {}
    plens = {4: settings.prefix_for(4) or 32, 16: settings.prefix_for(6) or 128}
    by_port: dict[int, Rows] = {}
    members: dict[tuple[bytes, int], list[bytes]] = defaultdict(list)
    for port, addrs in table.by_port.items():
        merged: dict[bytes, int] = {}
        for key, packed in addrs.items():
            pkey = _prefix_key(key, plens[len(key)])
            merged[pkey] = merged.get(pkey, 0) + packed
            members[(pkey, port)].append(key)
        by_port[port] = merged
    return by_port, members


def _histogram(values: Iterable[int]) -> tuple[tuple[int, int], ...]:
    counts = Counter(values)
    counts.pop(0, None)
    return tuple(heapq.nlargest(HISTOGRAM_MAX, counts.items()))


def _top(keys: list[bytes], firsts: list[int], seconds: list[int], n: int, rows: Rows, port: int,
         members: dict[tuple[bytes, int], list[bytes]], settings: SourceSettings) -> tuple[SourceRow, ...]:
    """The n heaviest by `firsts` (ties: `seconds`, then first seen), as SourceRows; zeros left out.
    An empty `seconds` list means all zeros."""
    candidates = [i for i, v in enumerate(firsts) if v]
    best = heapq.nlargest(n, candidates, key=(lambda i: (firsts[i], seconds[i])) if seconds else firsts.__getitem__)
    out = []
    for i in best:
        key = keys[i]
        packed = rows[key]
        names = sorted(map(address_text, members.get((key, port), ())))
        out.append(SourceRow(source_text(key, settings), port, state_counts(packed), held(packed), half_open(packed),
                             tuple(names[:MEMBER_SAMPLE]), max(len(names), 1)))
    return tuple(out)


def _port_tally(port: int, rows: Rows, n: int, members: dict[tuple[bytes, int], list[bytes]],
                settings: SourceSettings) -> PortTally:
    total = sum(rows.values())  # the port's packed counts: sums of the fields
    conns_total, half_total = held(total), half_open(total)
    keys = list(rows) if conns_total or half_total else []
    conns = list(map(held, rows.values())) if conns_total else []
    halfs = list(map(half_open, rows.values())) if half_total else []
    return PortTally(
        port=port, sources=len(rows), connections=conns_total, half_open=half_total,
        histogram=_histogram(conns), half_open_histogram=_histogram(halfs),
        top_connections=_top(keys, conns, halfs, n, rows, port, members, settings),
        top_half_open=_top(keys, halfs, conns, n, rows, port, members, settings))


def tally(snap: Snapshot, settings: SourceSettings, top: int | None = None) -> dict[int, PortTally]:
    """Per listening port: totals, histograms and the `top` heaviest sources (default: the alert cap).
    A port without held or half-open connections (TIME_WAIT only, say) costs one sum."""
    if snap.sockets is None:
        return {}
    n = top if top is not None else settings.max_alerts_per_port
    by_port, members = _grouped(snap.sockets.sources, settings)
    return {port: _port_tally(port, by_port[port], n, members, settings) for port in sorted(by_port)}


@record
class PortSpread(Record):
    """Distinct listening ports per source (or prefix) over one or two samples."""

    multi: dict[str, frozenset[int]]  # the sources seen on more than one port, with those ports
    sources: int  # distinct sources on any port

    def histogram(self) -> tuple[tuple[int, int], ...]:
        """(ports, number of sources), highest first."""
        counts = Counter(map(len, self.multi.values()))
        if self.sources > len(self.multi):
            counts[1] = self.sources - len(self.multi)
        return tuple(heapq.nlargest(HISTOGRAM_MAX, counts.items()))


def ports_per_source(prev: Snapshot | None, cur: Snapshot, settings: SourceSettings) -> PortSpread:
    """Distinct listening ports per source (or prefix) in either sample. Set operations on the address
    keys (no loop per source in Python); text and port sets only for sources on more than one port."""
    keysets: dict[int, Any] = {}
    for snap in (prev, cur):
        if snap is None or snap.sockets is None:
            continue
        for port, rows in _grouped(snap.sockets.sources, settings)[0].items():
            have = keysets.get(port)
            keysets[port] = rows.keys() if have is None else have | rows.keys()
    if len(keysets) < 2:
        return PortSpread({}, sum(len(k) for k in keysets.values()))
    big, *rest = sorted(keysets.values(), key=len, reverse=True)  # the largest is read, never copied
    others: set[bytes] = set()
    multi: set[bytes] = set()
    for keys in rest:
        multi.update(keys & others)
        others.update(keys)
    multi.update(k for k in others if k in big)
    total = len(big) + sum(1 for k in others if k not in big)
    return PortSpread({source_text(k, settings): frozenset(p for p, keys in keysets.items() if k in keys)
                       for k in sorted(multi)}, total)


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


@record
class _PortTotals(Record):
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
    spread = ports_per_source(prev, cur, s)
    hist = spread.histogram()
    top = heapq.nlargest(s.max_alerts_per_port, spread.multi.items(), key=lambda kv: len(kv[1]))
    out = []
    for rank, (source, ports) in enumerate(top, 1):
        facts = PortsFacts(*_context(context), source=source, ports=tuple(sorted(ports)[:100]), rank=rank,
                           sources_total=spread.sources, histogram=hist, local=is_local(source, local))
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
