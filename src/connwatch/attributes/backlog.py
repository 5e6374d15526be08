"""Backlog attributes: BacklogRejectsByPort, AcceptQueueFill, ListenOverflows, SynQueueDrops.

(previous Snapshot, current Snapshot) -> Measurements. Pure.

- BacklogRejectsByPort: delta of SK_MEMINFO_DROPS summed over every listener on the port (IPv4 and
  IPv6, SO_REUSEPORT groups, several addresses). The kernel counts dropped packets: a client whose
  SYN is dropped retries at about 1, 2, 3, 4, 5 s, and each retry counts again.
- AcceptQueueFill: accept-queue length as % of the backlog in force, the fullest listener of the port.
- ListenOverflows / SynQueueDrops: host-wide TcpExt deltas, the backstop for what per-listener
  counters cannot attribute (a listener that closed, a kernel without sock_diag).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING

from connwatch.attributes.backlog_facts import (
    BacklogContext,
    HostFacts,
    ListenerFacts,
    OwnerFacts,
    PortFacts,
    PortRejectFacts,
    Reconciliation,
)
from connwatch.attributes.registry import SINCE_OPEN, AttributeSpec, Need, Subject
from connwatch.explain import backlog as words
from connwatch.findings import Measurement
from connwatch.model import Listener, Snapshot
from connwatch.rules.rule import Rule

if TYPE_CHECKING:
    from connwatch.rules.config import Config

LISTEN_OVERFLOWS, REQ_Q_FULL_DROP = "TcpExt.ListenOverflows", "TcpExt.TCPReqQFullDrop"


def _has_drops(snap: Snapshot) -> bool:
    return any(x.drops is not None for x in snap.listeners)


def _has_backlog(snap: Snapshot) -> bool:
    return any(x.backlog is not None for x in snap.listeners)


def _counter_need(counter: str) -> Need:
    return Need(counter, lambda snap: counter in snap.counters,
                "no TcpExt counters: add `nstat -az`, `netstat -s` or /proc/net/netstat")


SUBJECT_SPECS: tuple[AttributeSpec[PortRejectFacts] | AttributeSpec[PortFacts] | AttributeSpec[HostFacts], ...] = (
    AttributeSpec(
        "BacklogRejectsByPort", "conns", True, words.TEXTS["BacklogRejectsByPort"], PortRejectFacts,
        words.explain_port,
        (Rule("BacklogRejectsByPort", 0, severity=3, alert_class="backlog"),
         Rule("BacklogRejectsByPort", 100, severity=2, alert_class="backlog")),
        (Need("per-listener drop counters", _has_drops, "per-listener drop counters are only in `ss -ltnm` "
              "(skmem d) or a `connwatch snapshot`"),),
        promql="sum by (instance, port) (rate(connwatch_listener_drops_total{sel}[{window}])){per}",
        capture_basis=SINCE_OPEN),
    AttributeSpec(
        "AcceptQueueFill", "%", False, words.TEXTS["AcceptQueueFill"], PortFacts, words.explain_port,
        (Rule("AcceptQueueFill", 80, severity=4, alert_class="backlog"),
         Rule("AcceptQueueFill", 100, severity=2, alert_class="backlog")),
        (Need("listener backlog", _has_backlog, "the capture shows no listen backlog: capture `ss -ltn`"),),
        promql="max by (instance, port) (100 * connwatch_listener_queue_peak{sel} "
               "/ clamp_min(connwatch_listener_backlog{sel}, 1))"),
    AttributeSpec(
        "ListenOverflows", "drops", True, words.TEXTS["ListenOverflows"], HostFacts, words.explain_host,
        (Rule("ListenOverflows", 0, severity=4, alert_class="backlog"),), (_counter_need(LISTEN_OVERFLOWS),),
        promql=f'sum by (instance) (rate(connwatch_kernel_counter_total{{{{counter="{LISTEN_OVERFLOWS}"}}}}'
               '[{window}])){per}', scope="host"),
    AttributeSpec(
        "SynQueueDrops", "drops", True, words.TEXTS["SynQueueDrops"], HostFacts, words.explain_host,
        (Rule("SynQueueDrops", 0, severity=3, alert_class="backlog"),), (_counter_need(REQ_Q_FULL_DROP),),
        promql=f'sum by (instance) (rate(connwatch_kernel_counter_total{{{{counter="{REQ_Q_FULL_DROP}"}}}}'
               '[{window}])){per}', scope="host"),
)


def counter_delta(prev: Snapshot, cur: Snapshot, name: str) -> int | None:
    """Increase of a cumulative counter; None when missing in either sample or reset in between."""
    before, after = prev.counters.get(name), cur.counters.get(name)
    if before is None or after is None or after < before:
        return None
    return after - before


def port_key(port: int) -> str:
    return f"TCP({port})"


def _by_port(listeners: Iterable[Listener]) -> dict[int, list[Listener]]:
    ports: dict[int, list[Listener]] = defaultdict(list)
    for lst in listeners:
        ports[lst.port].append(lst)
    return ports


def drop_deltas(prev: Snapshot, cur: Snapshot) -> dict[tuple[int, int, int, str], int]:
    """Per listener identity: drops since the previous sample (a listener new since then: all its drops)."""
    before = {lst.identity: lst.drops for lst in prev.listeners}
    out = {}
    for lst in cur.listeners:
        if lst.drops is None:
            continue
        old = before.get(lst.identity)
        out[lst.identity] = lst.drops - old if old is not None and old <= lst.drops else lst.drops
    return out


def fill_percent(lst: Listener) -> float | None:
    """Accept-queue fill; the kernel admits one beyond the backlog, so a full queue reads above 100 %."""
    if lst.backlog is None:
        return None
    return round(100.0 * lst.queue / max(lst.backlog, 1), 1)


def _listener_facts(lst: Listener, delta: int | None, now: float) -> ListenerFacts:
    o = lst.owner
    owner = None if o is None else OwnerFacts(
        o.pid, o.command, o.cmdline, o.user, o.started_at,
        None if o.started_at is None else round(now - o.started_at, 1), o.open_fds, o.fd_limit)
    return ListenerFacts(lst.endpoint, lst.family, lst.queue, lst.backlog, fill_percent(lst), lst.drops, delta,
                         lst.inode, owner)


def reconciliation(prev: Snapshot, cur: Snapshot) -> Reconciliation:
    """Host ListenDrops/ListenOverflows deltas against what the per-listener counters explain."""
    deltas = drop_deltas(prev, cur)
    attributed = sum(deltas.values()) if cur.listeners and all(
        x.drops is not None for x in cur.listeners) else None
    host = counter_delta(prev, cur, "TcpExt.ListenDrops")
    unattributed = None if host is None or attributed is None else max(host - attributed, 0)
    return Reconciliation(host, counter_delta(prev, cur, LISTEN_OVERFLOWS), attributed, unattributed)


def reconcile(prev: Snapshot, cur: Snapshot) -> dict[str, int | None]:
    """The reconciliation as the JSON `reconciliation` object."""
    r = reconciliation(prev, cur)
    return {"host_listen_drops": r.host_listen_drops, "host_listen_overflows": r.host_listen_overflows,
            "attributed": r.attributed, "unattributed": r.unattributed}


def measure(prev: Snapshot, cur: Snapshot, config: Config | None = None) -> list[Measurement]:
    interval = max(cur.monotonic - prev.monotonic, 1e-9)
    deltas = drop_deltas(prev, cur)
    ports = _by_port(cur.listeners)
    rejecting = tuple(sorted(p for p, ls in ports.items() if sum(deltas.get(x.identity, 0) for x in ls) > 0))
    context = BacklogContext(
        round(interval, 3), cur.sysctls.somaxconn, rejecting, reconciliation(prev, cur),
        cur.sysctls.tcp_syncookies, cur.sysctls.tcp_abort_on_overflow, cur.host.platform)
    out: list[Measurement] = []
    for port, group in sorted(ports.items()):
        out.extend(_port_measurements(port, group, deltas, context, cur.taken_at, interval))
    out.extend(_host_measurements(prev, cur, interval, context))
    return out


def _port_measurements(port: int, group: list[Listener], deltas: dict[tuple[int, int, int, str], int],
                       ctx: BacklogContext, now: float, interval: float) -> list[Measurement]:
    listeners = tuple(_listener_facts(x, deltas.get(x.identity), now) for x in group)
    common = (ctx.interval_s, ctx.somaxconn, ctx.rejecting_ports, ctx.reconciliation, ctx.tcp_syncookies,
              ctx.tcp_abort_on_overflow, ctx.platform, port, listeners,
              any(x.backlog is not None and x.queue > x.backlog for x in group))
    out = []
    if all(x.drops is not None for x in group):
        rejects = sum(deltas.get(x.identity, 0) for x in group)
        out.append(Measurement("BacklogRejectsByPort", {"port": port}, port_key(port), float(rejects), "conns",
                               "value", PortRejectFacts(*common, round(rejects / interval, 3))))
    fills = [f for f in (fill_percent(x) for x in group) if f is not None]
    if fills:
        out.append(Measurement("AcceptQueueFill", {"port": port}, port_key(port), max(fills), "%", "value",
                               PortFacts(*common)))
    return out


def _host_measurements(prev: Snapshot, cur: Snapshot, interval: float, ctx: BacklogContext) -> list[Measurement]:
    out = []
    for attribute, counter in (("ListenOverflows", LISTEN_OVERFLOWS), ("SynQueueDrops", REQ_Q_FULL_DROP)):
        delta = counter_delta(prev, cur, counter)
        if delta is None:
            continue
        facts = HostFacts(ctx.interval_s, ctx.somaxconn, ctx.rejecting_ports, ctx.reconciliation,
                          ctx.tcp_syncookies, ctx.tcp_abort_on_overflow, ctx.platform, counter,
                          counter_delta(prev, cur, "TcpExt.TCPReqQFullDoCookies"), round(delta / interval, 3))
        out.append(Measurement(attribute, {"port": None}, "TCP(host)", float(delta), "drops", "value", facts))
    return out


SUBJECT = Subject("backlog", SUBJECT_SPECS, measure)
