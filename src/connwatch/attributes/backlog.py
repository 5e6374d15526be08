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

from connwatch.attributes.accept_facts import AcceptFacts
from connwatch.attributes.accept_model import shared_activity
from connwatch.attributes.backlog_facts import (
    BacklogContext,
    CookieFacts,
    HostFacts,
    ListenerFacts,
    NotRejections,
    OwnerFacts,
    PortFacts,
    PortRejectFacts,
    Reconciliation,
    RejectFacts,
)
from connwatch.attributes.registry import SINCE_OPEN, AttributeSpec, Need, Pair, Subject
from connwatch.attributes.rejects import (
    COOKIES,
    LISTEN_DROPS,
    REJECT_COUNTERS,
    Deltas,
    PortEvidence,
    PortRejects,
    account,
    deltas_of,
    unattributed,
)
from connwatch.explain import backlog as words
from connwatch.explain.rejects import COOKIES_TEXT, explain_cookies
from connwatch.findings import Measurement
from connwatch.model import Listener, Snapshot, half_open
from connwatch.model import fill_percent as fill_percent  # re-exported: its former home
from connwatch.record import replace
from connwatch.rules.rule import Rule

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import Any

    from connwatch.rules.config import Config

LISTEN_OVERFLOWS, REQ_Q_FULL_DROP = "TcpExt.ListenOverflows", "TcpExt.TCPReqQFullDrop"


def _has_drops(snap: Snapshot) -> bool:
    return any(x.drops is not None for x in snap.listeners)


def _has_backlog(snap: Snapshot) -> bool:
    return any(x.backlog is not None for x in snap.listeners)


def _explained(facts: HostFacts) -> bool:
    """Every rejection the namespace counted belongs to a live listener: the per-port alerts say it all."""
    rec = facts.reconciliation
    return rec.attributed is not None and rec.unattributed == 0 and bool(facts.rejecting_ports)


def _counter_need(counter: str) -> Need:
    return Need(counter, lambda snap: counter in snap.counters,
                "no TcpExt counters: add `nstat -az`, `netstat -s` or /proc/net/netstat")


SUBJECT_SPECS: tuple[AttributeSpec[Any], ...] = (
    AttributeSpec(
        "BacklogRejectsByPort", "requests", True, words.TEXTS["BacklogRejectsByPort"], PortRejectFacts,
        words.explain_port,
        (Rule("BacklogRejectsByPort", 0, severity=3, alert_class="backlog"),
         Rule("BacklogRejectsByPort", 100, severity=2, alert_class="backlog")),
        (Need("per-listener drop counters", _has_drops, "per-listener drop counters are only in `ss -ltnm` "
              "(skmem d) or a `connwatch snapshot`"),
         Need(LISTEN_OVERFLOWS, lambda snap: LISTEN_OVERFLOWS in snap.counters,
              "a listener's drop counter also counts drops that are not rejections: add the TcpExt counters "
              "(`nstat -az`, `netstat -s` or /proc/net/netstat) to tell them apart")),
        promql="sum by (instance, port) (rate(connwatch_listener_drops_total{sel}[{window}])){per}",
        capture_basis=SINCE_OPEN, inputs=REJECT_COUNTERS),
    AttributeSpec(
        "AcceptQueueFill", "%", False, words.TEXTS["AcceptQueueFill"], PortFacts, words.explain_port,
        (Rule("AcceptQueueFill", 80, severity=4, alert_class="backlog"),
         Rule("AcceptQueueFill", 100, severity=2, alert_class="backlog")),
        (Need("listener backlog", _has_backlog, "the capture shows no listen backlog: capture `ss -ltn`"),),
        promql="max by (instance, port) (100 * connwatch_listener_queue_peak{sel} "
               "/ clamp_min(connwatch_listener_backlog{sel}, 1))",
        folds_into=("BacklogRejectsByPort", "AcceptActivity")),
    AttributeSpec(
        "ListenOverflows", "drops", True, words.TEXTS["ListenOverflows"], HostFacts, words.explain_host,
        (Rule("ListenOverflows", 0, severity=4, alert_class="backlog"),), (_counter_need(LISTEN_OVERFLOWS),),
        promql="sum by (instance) (rate(connwatch_netstat_tcpext_listen_overflows_total[{window}])){per}",
        scope="host", explained=_explained, inputs=(LISTEN_OVERFLOWS, LISTEN_DROPS)),
    AttributeSpec(
        "SynQueueDrops", "drops", True, words.TEXTS["SynQueueDrops"], HostFacts, words.explain_host,
        (Rule("SynQueueDrops", 0, severity=3, alert_class="backlog"),), (_counter_need(REQ_Q_FULL_DROP),),
        promql="sum by (instance) (rate(connwatch_netstat_tcpext_tcp_req_q_full_drop_total[{window}])){per}",
        scope="host", explained=_explained, inputs=(REQ_Q_FULL_DROP,)),
    AttributeSpec(
        "SynCookiesSent", "SYNs", True, COOKIES_TEXT, CookieFacts, explain_cookies,
        (Rule("SynCookiesSent", 0, severity=4, alert_class="backlog"),),
        (Need(COOKIES, lambda snap: COOKIES in snap.counters,
              "no TCPReqQFullDoCookies counter: add `nstat -az` or /proc/net/netstat"),), inputs=(COOKIES,)),
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


def _listener_facts(lst: Listener, delta: int | None, now: float,
                    owners: dict[int, OwnerFacts] | None = None) -> ListenerFacts:
    """`owners`: the OwnerFacts made so far, by id of the Process (one per owner, not per listener)."""
    o = lst.owner
    owner = None if o is None else owners.get(id(o)) if owners is not None else None
    if o is not None and owner is None:
        owner = OwnerFacts(o.pid, o.command, o.cmdline, o.user, o.started_at,
                           None if o.started_at is None else round(now - o.started_at, 1), o.open_fds, o.fd_limit)
        if owners is not None:
            owners[id(o)] = owner
    return ListenerFacts(lst.endpoint, lst.family, lst.queue, lst.backlog, fill_percent(lst), lst.drops, delta,
                         lst.inode, owner)


def _drops_known(snap: Snapshot) -> bool:
    """Per-listener drop counters were read (sock_diag worked), even when no listener is left."""
    if snap.listeners:
        return all(x.drops is not None for x in snap.listeners)
    return any(st.ok and st.name.startswith("netlink sock_diag") for st in snap.statuses)


def _half_open(snap: Snapshot) -> dict[int, int]:
    """SYN_RECV (request) sockets per local listening port."""
    out: dict[int, int] = defaultdict(int)
    for port, addrs in snap.sockets.sources.by_port.items() if snap.sockets is not None else ():
        n = half_open(sum(addrs.values()))  # packed counts add up field by field
        if n:
            out[port] += n
    return out


def _evidence(prev: Snapshot, cur: Snapshot, deltas: dict[tuple[int, int, int, str], int]) -> dict[int, PortEvidence]:
    before, after = _half_open(prev), _half_open(cur)
    full_before = {x.port for x in prev.listeners if x.backlog is not None and x.queue > x.backlog}
    out = {}
    for port, group in _by_port(cur.listeners).items():
        backlogs = [x.backlog for x in group if x.backlog is not None]
        out[port] = PortEvidence(
            drops=sum(deltas.get(x.identity, 0) for x in group),
            queue_full=port in full_before or any(x.backlog is not None and x.queue > x.backlog for x in group),
            half_open=max(before.get(port, 0), after.get(port, 0)),
            syn_backlog=max(backlogs) if backlogs else 1 << 30)
    return out


def accounting(prev: Snapshot, cur: Snapshot) -> tuple[dict[int, PortRejects], Reconciliation, Deltas]:
    """Each port's rejections and the namespace's reconciliation (attributes/rejects.py)."""
    return shared_accounting(Pair(prev, cur))


def shared_accounting(pair: Pair) -> tuple[dict[int, PortRejects], Reconciliation, Deltas]:
    """accounting() of a pair, computed once for every subject that reads it."""
    return pair.once(_accounting)


def _deltas(pair: Pair) -> dict[tuple[int, int, int, str], int]:
    return drop_deltas(pair.prev, pair.cur)


def _port_evidence(pair: Pair) -> dict[int, PortEvidence]:
    return _evidence(pair.prev, pair.cur, pair.once(_deltas))


def _accounting(pair: Pair) -> tuple[dict[int, PortRejects], Reconciliation, Deltas]:
    prev, cur = pair.prev, pair.cur
    deltas = pair.once(_deltas)
    d = deltas_of(prev.counters, cur.counters)
    if cur.sysctls.tcp_abort_on_overflow != 1:  # EmbryonicRsts then counts other resets, not overflows
        d = replace(d, embryonic_rsts=0 if d.embryonic_rsts is not None else None)
    known = _drops_known(cur)
    per_port = account(pair.once(_port_evidence), d) if known else {}
    listener_drops = sum(deltas.values()) if known else None
    attributed = sum(r.total for r in per_port.values()) if known else None
    rec = Reconciliation(d.listen_drops, d.overflows, attributed,
                         unattributed(d, per_port) if known else None, d.syn_queue_drops, d.deferred_accept,
                         listener_drops)
    return per_port, rec, d


def reconciliation(prev: Snapshot, cur: Snapshot) -> Reconciliation:
    return accounting(prev, cur)[1]


def reconcile(prev: Snapshot, cur: Snapshot, pair: Pair | None = None) -> dict[str, int | None]:
    """The reconciliation as the JSON `reconciliation` object (`pair`: Pair(prev, cur), already measured)."""
    r = shared_accounting(pair if pair is not None else Pair(prev, cur))[1]
    return {"host_listen_drops": r.host_listen_drops, "host_listen_overflows": r.host_listen_overflows,
            "attributed": r.attributed, "unattributed": r.unattributed,
            "host_syn_queue_drops": r.host_syn_queue_drops,
            "host_deferred_accept_drops": r.host_deferred_accept_drops, "listener_drops": r.listener_drops}


def syn_retry_times(retries: int | None, linear: int | None) -> tuple[tuple[float, ...], float]:
    """When a Linux client re-sends an unanswered SYN, and when connect() gives up (seconds after it).

    tcp_syn_retries bounds the TIME, not the count (net/ipv4/tcp_timer.c retransmits_timed_out(): the
    limit is what `retries` doubling timeouts from 1 s would take, 2^(n+1) - 1 s); the first
    tcp_syn_linear_timeouts + 1 timeouts are 1 s (newer kernels), then each doubles. The client gives up
    at the first timeout at or past the limit. Measured (6.18, linear 4): n=2 re-sends at 1-5 s and
    ETIMEDOUT at 7.1 s; n=3 re-sends up to 11 s, ETIMEDOUT at 19.6 s; n=6: 11 SYNs, ETIMEDOUT at ~131 s."""
    n = retries if retries is not None else 6
    limit = float(2 ** (n + 1) - 1)
    out: list[float] = []
    at, timeout = 0.0, 1.0
    for i in range(64):
        at += timeout
        if at >= limit:
            break
        out.append(at)
        if i >= (linear or 0):
            timeout *= 2
    return tuple(out), at


def measure(prev: Snapshot, cur: Snapshot, config: Config | None = None) -> list[Measurement]:
    return measure_pair(Pair(prev, cur), config)


def measure_pair(pair: Pair, config: Config | None = None) -> list[Measurement]:
    prev, cur = pair.prev, pair.cur
    interval = max(cur.monotonic - prev.monotonic, 1e-9)
    deltas = pair.once(_deltas)
    per_port, rec, d = shared_accounting(pair)
    ports = _by_port(cur.listeners)
    rejecting = tuple(sorted(p for p, r in per_port.items() if r.total > 0))
    stuck = tuple(sorted({x.port for x in cur.listeners if x.backlog is not None and x.queue > x.backlog}))
    context = BacklogContext(
        round(interval, 3), cur.sysctls.somaxconn, rejecting, rec,
        cur.sysctls.tcp_syncookies, cur.sysctls.tcp_abort_on_overflow, cur.host.platform, stuck)
    retry, give_up = syn_retry_times(cur.sysctls.tcp_syn_retries, cur.sysctls.tcp_syn_linear_timeouts)
    half_open = _half_open(cur)
    out: list[Measurement] = []
    owners: dict[int, OwnerFacts] = {}
    for port, group in sorted(ports.items()):
        rejects = per_port.get(port) if d.overflows is not None else None
        accept = shared_activity(pair, port, rejects.total) if rejects is not None else None
        out.extend(_port_measurements(port, group, deltas, context, cur.taken_at, interval,
                                      (rejects, half_open.get(port, 0), retry, give_up), accept, owners))
    out.extend(_host_measurements(prev, cur, interval, context))
    out.extend(_cookie_measurements(per_port, d, pair.once(_port_evidence), context, interval))
    return out


def _port_measurements(port: int, group: list[Listener], deltas: dict[tuple[int, int, int, str], int],
                       ctx: BacklogContext, now: float, interval: float,
                       found: tuple[PortRejects | None, int, tuple[float, ...], float],
                       accept: AcceptFacts | None = None, owners: dict[int, OwnerFacts] | None = None
                       ) -> list[Measurement]:
    listeners = tuple(_listener_facts(x, deltas.get(x.identity), now, owners) for x in group)
    common = (ctx.interval_s, ctx.somaxconn, ctx.rejecting_ports, ctx.reconciliation, ctx.tcp_syncookies,
              ctx.tcp_abort_on_overflow, ctx.platform, ctx.stuck_ports, port, listeners,
              any(x.backlog is not None and x.queue > x.backlog for x in group))
    out = []
    r, half_open, retry, give_up = found
    if r is not None and all(x.drops is not None for x in group):
        facts = PortRejectFacts(
            *common, round(r.total / interval, 3),
            RejectFacts(r.accept_queue_overflows, r.syn_queue_drops, r.syn_time, r.ack_time),
            NotRejections(r.deferred_accept, r.double_counted, r.other),
            sum(deltas.get(x.identity, 0) for x in group), half_open, r.cookies, r.resets, retry, give_up, accept)
        out.append(Measurement("BacklogRejectsByPort", {"port": port}, port_key(port), float(r.total), "requests",
                               "value", facts))
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
                          ctx.tcp_syncookies, ctx.tcp_abort_on_overflow, ctx.platform, ctx.stuck_ports, counter,
                          counter_delta(prev, cur, "TcpExt.TCPReqQFullDoCookies"), round(delta / interval, 3))
        out.append(Measurement(attribute, {"port": None}, "TCP(host)", float(delta), "drops", "value", facts))
    return out


def _cookie_measurements(per_port: dict[int, PortRejects], d: Deltas, evidence: dict[int, PortEvidence],
                         ctx: BacklogContext, interval: float) -> list[Measurement]:
    """SYN cookies sent: per port where the SYN queue was seen full, the rest host-wide."""
    if d.cookies is None:
        return []
    base = (ctx.interval_s, ctx.somaxconn, ctx.rejecting_ports, ctx.reconciliation, ctx.tcp_syncookies,
            ctx.tcp_abort_on_overflow, ctx.platform, ctx.stuck_ports)
    out = []
    for port, r in sorted(per_port.items()):
        if r.cookies:
            e = evidence[port]
            facts = CookieFacts(*base, port, r.cookies, e.half_open, e.syn_backlog if e.syn_backlog < 1 << 30 else None,
                                round(r.cookies / interval, 3))
            out.append(Measurement("SynCookiesSent", {"port": port}, port_key(port), float(r.cookies), "SYNs",
                                   "value", facts))
    rest = d.cookies - sum(r.cookies for r in per_port.values())
    if rest > 0 or not out:
        facts = CookieFacts(*base, None, rest, 0, None, round(rest / interval, 3))
        out.append(Measurement("SynCookiesSent", {"port": None}, "TCP(host)", float(rest), "SYNs", "value", facts))
    return out


SUBJECT = Subject("backlog", SUBJECT_SPECS, measure, measure_pair=measure_pair)
