"""Ephemeral ports, TIME_WAIT and orphans, per destination: usage now and a forecast. Pure.

A connect() without bind() needs a local port whose 4-tuple (local address, local port, remote
address, remote port) is unique, so the ports run out per (local address, destination ip:port), not
host-wide: with ip_local_port_range 40000-40099 the 101st connection to 127.0.0.1:8080 fails with
EADDRNOTAVAIL while the same 100 ports still work toward :8081 (measured). No counter records those
failures, so the only signal is the count of sockets holding a port toward the destination.

- EphemeralPortUsage: sockets toward one destination in any state (SYN_SENT .. TIME_WAIT) that block
  a port, as % of the usable ports (ip_local_port_range minus ip_local_reserved_ports minus
  listening ports in the range, which __inet_hash_connect() skips). TIME_WAIT sockets the kernel will
  reuse (tcp_tw_reuse 1, or 2 on loopback, once older than tcp_tw_reuse_delay) are not counted.
- EphemeralPortUsageWithoutReuse: the same with every TIME_WAIT counted; emitted only where reuse
  applies, so a destination that is safe only thanks to tcp_tw_reuse is reported as such.
- EphemeralPortExhaustion: the steady state by Little's law, as % of the usable ports: sockets
  held = (non-TIME_WAIT sockets now) + (TIME_WAIT entry rate x how long each one blocks: 60 s, or
  tcp_tw_reuse_delay where reuse applies). Above 100 % the destination runs out; the detail says when.
- TimeWaitSockets: host-wide TIME_WAIT count against tcp_max_tw_buckets (+ TCPTimeWaitOverflow).
- OrphanSockets: orphaned sockets against tcp_max_orphans.

Rates come from two samples: Tcp ActiveOpens, TcpExt TW (on current kernels counted when a socket
enters TIME_WAIT, see __inet_twsk_schedule()), Tcp AttemptFails.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping

from connwatch.attributes.backlog import counter_delta
from connwatch.attributes.ephemeral_facts import (
    DestinationFacts,
    DestinationRecord,
    EphemeralContext,
    Forecast,
    HostRates,
    OrphanFacts,
    ProcessFacts,
    TimeWaitFacts,
    TopDestination,
)
from connwatch.attributes.registry import AttributeSpec, Need, Subject
from connwatch.explain import ephemeral as words
from connwatch.findings import Explanation, Finding, Measurement, facts_dict
from connwatch.model import DestinationUsage, Snapshot
from connwatch.parsers.sock_diag import TIME_WAIT_LEN_MS
from connwatch.parsers.sysctl import usable_ports
from connwatch.record import Record, record, values
from connwatch.rules.rule import Rule

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import Any, TypeVar

    from connwatch.rules.config import Config

    F = TypeVar("F")

# Why these limits:
# - EphemeralPortUsage: a pooled client needs tens to hundreds of ports per destination; half of a
#   default range (14,000 sockets) toward one destination is already abnormal churn (Medium). Above
#   80 % one burst of the kind that filled it fails connect() (High). Above 99.9 % (the value reaches
#   100 only when every usable port blocks) connect() is failing now with EADDRNOTAVAIL (Critical).
# - EphemeralPortUsageWithoutReuse: works today, but only through tcp_tw_reuse (and TCP timestamps on
#   the peer); a sysctl change or a peer without timestamps would fail it: Low, above 80 %.
# - EphemeralPortExhaustion: the steady state at the current rate. Above 100 % it will run out (High);
#   above 80 % it settles close to the edge where any burst fails (Medium).
# - TimeWaitSockets: at tcp_max_tw_buckets the kernel drops TIME_WAIT state (TCPTimeWaitOverflow):
#   connections still work but lose protection against old duplicates; Low above 80 %, Medium at 99 %.
# - OrphanSockets: beyond tcp_max_orphans the kernel resets connections ("too many orphaned
#   sockets"): Medium above 50 %, High above 80 %.
DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("EphemeralPortUsage", 50, severity=3, alert_class="ephemeral"),
    Rule("EphemeralPortUsage", 80, severity=2, alert_class="ephemeral"),
    Rule("EphemeralPortUsage", 99.9, severity=1, alert_class="ephemeral"),
    Rule("EphemeralPortUsageWithoutReuse", 80, severity=4, alert_class="ephemeral"),
    Rule("EphemeralPortExhaustion", 80, severity=3, alert_class="ephemeral"),
    Rule("EphemeralPortExhaustion", 100, severity=2, alert_class="ephemeral"),
    Rule("TimeWaitSockets", 80, severity=4, alert_class="ephemeral"),
    Rule("TimeWaitSockets", 99, severity=3, alert_class="ephemeral"),
    Rule("OrphanSockets", 50, severity=3, alert_class="ephemeral"),
    Rule("OrphanSockets", 80, severity=2, alert_class="ephemeral"),
)

TIME_WAIT_S = TIME_WAIT_LEN_MS / 1000  # TCP_TIMEWAIT_LEN: fixed, not a sysctl
# TIME_WAIT length of other platforms seen in captures: Windows TcpTimedWaitDelay (default 240 s,
# seed 002; not in a netstat capture), BSD 2 x net.inet.tcp.msl (30 s by default).
TIME_WAIT_BY_PLATFORM = {"windows": 240.0, "bsd": 60.0}
DEFAULT_REUSE_DELAY_MS = 1000  # kernels without tcp_tw_reuse_delay reuse after about 1 s
SIGNIFICANT_PERCENT = 1.0  # destinations measured: every one at or above this share of the range ...
TOP_DESTINATIONS = 20  # ... plus the busiest few, so a small range or a custom rule still sees them
YOUNG_SHARE_MIN = 10  # young TIME_WAIT needed before they (not the 60 s counts) apportion the TW rate


@record
class PortBudget(Record):
    """The ports connect() may choose from, toward any one destination."""

    usable: int | None  # None when ip_local_port_range could not be read
    port_range: tuple[int, int] | None
    reserved: int
    listening_in_range: int


@record
class DestinationLoad(Record):
    usage: DestinationUsage
    time_wait: int
    reusable: int  # TIME_WAIT the kernel will hand out again (old enough, reuse applies)
    blocking: int  # sockets whose port connect() cannot take: held minus reusable
    reuse_applies: bool
    reuse_reason: str
    percent: float | None
    percent_without_reuse: float | None

    @property
    def safe_only_by_reuse(self) -> bool:
        """Without reuse every port would be taken; with it, connect() still finds one."""
        return (self.reusable > 0 and self.percent_without_reuse is not None and self.percent is not None
                and self.percent_without_reuse >= 100 > self.percent)


def port_budget(snap: Snapshot) -> PortBudget:
    s = snap.sysctls
    if s.ip_local_port_range is None:
        return PortBudget(None, None, 0, 0)
    low, high = s.ip_local_port_range
    reserved = s.ip_local_reserved_ports or ()
    free = usable_ports((low, high), reserved)
    listening = {x.port for x in snap.listeners if low <= x.port <= high
                 and not any(r_low <= x.port <= r_high for r_low, r_high in reserved)}
    return PortBudget(max(free - len(listening), 0), (low, high), high - low + 1 - free, len(listening))


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def reuse_for(tw_reuse: int | None, local: str, remote: str) -> tuple[bool, str]:
    """Whether connect() may reuse this destination's TIME_WAIT ports (tcp_twsk_unique()), and why."""
    if tw_reuse is None:
        return False, "tcp_tw_reuse could not be read: every TIME_WAIT socket is counted as blocking"
    if tw_reuse == 0:
        return False, "tcp_tw_reuse=0: TIME_WAIT sockets are never reused"
    if tw_reuse == 1:
        return True, "tcp_tw_reuse=1: TIME_WAIT sockets are reused by new outbound connections"
    if tw_reuse == 2:
        if is_loopback(local) or is_loopback(remote):
            return True, "tcp_tw_reuse=2 reuses TIME_WAIT sockets on loopback, as here"
        return False, (f"tcp_tw_reuse=2 reuses TIME_WAIT sockets on loopback only; {remote} is not "
                       "loopback, so its TIME_WAIT sockets block ports for the full 60 s")
    return False, f"tcp_tw_reuse={tw_reuse} is not a value the kernel documents: TIME_WAIT counted as blocking"


def percent(count: float, usable: int | None) -> float | None:
    """count as % of usable; 100 or more only when nothing is left (else at most 99.9)."""
    if not usable:
        return None
    value = round(100.0 * count / usable, 2)
    return value if count >= usable else min(value, 99.9)


def load_of(d: DestinationUsage, budget: PortBudget, snap: Snapshot) -> DestinationLoad:
    tw = d.states.get("TIME_WAIT", 0)
    applies, reason = reuse_for(snap.sysctls.tcp_tw_reuse, d.local_address, d.remote_address)
    if snap.host.platform != "linux" and snap.sysctls.tcp_tw_reuse is None:
        reason = f"{snap.host.platform} host: TIME_WAIT sockets are counted as blocking for their whole lifetime"
    reusable = max(tw - d.time_wait_young, 0) if applies else 0
    blocking = d.total - reusable
    return DestinationLoad(d, tw, reusable, blocking, applies, reason, percent(blocking, budget.usable),
                           percent(d.total, budget.usable))


def loads(snap: Snapshot) -> list[DestinationLoad]:
    """Every destination's load, busiest (most blocking sockets) first."""
    if snap.sockets is None:
        return []
    budget = port_budget(snap)
    out = [load_of(d, budget, snap) for d in snap.sockets.destinations]
    out.sort(key=lambda x: (-x.blocking, -x.usage.total, x.usage.destination, x.usage.local_address))
    return out


def rate_facts(prev: Snapshot, cur: Snapshot) -> HostRates:
    """Per-second host rates between the samples; a rate is None when its counter is missing or reset."""
    interval = cur.monotonic - prev.monotonic

    def rate(counter: str) -> float | None:
        delta = counter_delta(prev, cur, counter)
        return None if delta is None or interval <= 0 else round(delta / interval, 3)

    return HostRates(round(interval, 3), rate("Tcp.ActiveOpens"), rate("TcpExt.TW"), rate("Tcp.AttemptFails"),
                     rate("TcpExt.TCPTimeWaitOverflow"))


def host_rates(prev: Snapshot, cur: Snapshot) -> dict[str, Any]:
    """rate_facts as JSON-ready data (`connwatch destinations`)."""
    return facts_dict(rate_facts(prev, cur))


def destination_rates(cur: Snapshot, tw_rate: float | None) -> tuple[dict[tuple[str, str, int], float], str]:
    """Apportion the host TIME_WAIT entry rate to destinations.

    Outbound share = TIME_WAIT held toward destinations / all TIME_WAIT (inbound ones sit on
    listening ports). Among destinations, by their TIME_WAIT younger than tcp_tw_reuse_delay (entered
    in the last second, the current rate) when there are enough of them, else by TIME_WAIT held.
    """
    if tw_rate is None or cur.sockets is None:
        return {}, "no rate: TcpExt TW missing in a sample"
    dests = cur.sockets.destinations
    held = {key(d): d.states.get("TIME_WAIT", 0) for d in dests}
    young = {key(d): d.time_wait_young for d in dests}
    all_tw = cur.sockets.by_state.get("TIME_WAIT", 0)
    outbound = sum(held.values())
    share = outbound / all_tw if all_tw else 1.0
    weights, basis = (young, "TIME_WAIT younger than tcp_tw_reuse_delay") \
        if sum(young.values()) >= YOUNG_SHARE_MIN else (held, "TIME_WAIT held")
    total = sum(weights.values())
    if not total:
        return {}, "no TIME_WAIT toward any destination"
    rates = {k: tw_rate * share * w / total for k, w in weights.items() if w}
    return rates, (f"host TcpExt TW rate {tw_rate:g}/s x outbound share {share:.2f}, apportioned by {basis}")


def key(d: DestinationUsage) -> tuple[str, str, int]:
    return (d.local_address, d.remote_address, d.remote_port)


def time_wait_seconds(platform: str) -> float:
    return TIME_WAIT_BY_PLATFORM.get(platform, TIME_WAIT_S)


SATURATED = ("saturated: every usable port is held, so new connect() calls fail with EADDRNOTAVAIL before "
             "they are counted; the demand cannot be measured until ports free up")


def forecast(load: DestinationLoad, rate: float, basis: str, budget: PortBudget,
             reuse_delay_ms: int | None, time_wait_s: float = TIME_WAIT_S) -> Forecast | None:
    """Little's law: ports held at steady state = non-TIME_WAIT now + rate x time each TIME_WAIT blocks."""
    if not budget.usable:
        return None
    delay = (reuse_delay_ms if reuse_delay_ms is not None else DEFAULT_REUSE_DELAY_MS) / 1000
    hold = min(delay, time_wait_s) if load.reuse_applies else time_wait_s
    steady = (load.usage.total - load.time_wait) + rate * hold
    to_full: float | None = None
    if load.blocking >= budget.usable:
        # Saturated: connect() fails with EADDRNOTAVAIL before anything is counted (ActiveOpens stops, no
        # counter records the failures), so the measured rate says nothing about the demand. The forecast
        # stays at "full" for as long as the ports are, instead of reading a falling rate as recovery.
        return Forecast(round(rate, 3), SATURATED, hold, max(round(steady, 1), float(budget.usable)),
                        max(round(100.0 * steady / budget.usable, 1), 100.0), 0.0)
    if steady >= budget.usable:
        to_full = round((budget.usable - load.blocking) / rate, 1)
    return Forecast(round(rate, 3), basis, hold, round(steady, 1), round(100.0 * steady / budget.usable, 1),
                    to_full)


def record_of(load: DestinationLoad, budget: PortBudget, fc: Forecast | None) -> DestinationRecord:
    """Facts about one destination (alert detail and `connwatch destinations --format json`)."""
    d = load.usage
    return DestinationRecord(
        destination=d.destination, local_address=d.local_address, remote_address=d.remote_address,
        remote_port=d.remote_port, addresses=(d.remote_address, d.local_address),
        states=dict(sorted(d.states.items(), key=lambda kv: -kv[1])), held=d.total,
        time_wait=load.time_wait, time_wait_reusable=load.reusable,
        time_wait_young=d.time_wait_young, blocking=load.blocking, percent=load.percent,
        percent_without_reuse=load.percent_without_reuse, usable_ports=budget.usable,
        port_range=budget.port_range or None,
        reserved_ports=budget.reserved, listening_ports_in_range=budget.listening_in_range,
        reuse_applies=load.reuse_applies, reuse_reason=load.reuse_reason,
        safe_only_by_reuse=load.safe_only_by_reuse,
        owners=tuple(ProcessFacts(p.pid, p.command, p.cmdline, p.user) for p in d.owners),
        owners_inferred=True, forecast=fc,
    )


def destination_record(load: DestinationLoad, budget: PortBudget, fc: Forecast | None) -> dict[str, Any]:
    """One destination's facts, JSON-ready (a row of `connwatch destinations --format json`)."""
    return facts_dict(record_of(load, budget, fc))


ContextValues = tuple[float | None, HostRates, str, int | None, int | None, str, int | None, float, int | None]


def _context(c: EphemeralContext) -> ContextValues:
    """The context's fields in order, to start a facts subclass's arguments."""
    return (c.interval_s, c.rates, c.platform, c.tcp_tw_reuse, c.tcp_tw_reuse_delay_ms, c.rate_method,
            c.host_time_wait, c.time_wait_s, c.tcp_max_tw_buckets)


def destination_facts(context: EphemeralContext, record: DestinationRecord) -> DestinationFacts:
    """The context's fields, then the record's: DestinationFacts declares both, in this order (a test
    checks that its fields are EphemeralContext's and DestinationRecord's)."""
    return DestinationFacts(*_context(context), *values(record))


def _chosen(all_loads: list[DestinationLoad], rates: Mapping[tuple[str, str, int], float],
            budget: PortBudget) -> list[DestinationLoad]:
    """Destinations worth a measurement: the busiest, any holding >= 1 %, any churning >= 1 % per 60 s."""
    floor = (budget.usable or 0) * SIGNIFICANT_PERCENT / 100
    return [x for i, x in enumerate(all_loads)
            if i < TOP_DESTINATIONS or x.usage.total >= floor or rates.get(key(x.usage), 0) * TIME_WAIT_S >= floor]


def resource_key(d: DestinationUsage) -> str:
    """The alert identity of a destination: `TCP(10.0.0.5->10.0.0.9:5432)`."""
    return f"TCP({d.local_address}->{d.destination})"


def measure(prev: Snapshot, cur: Snapshot, config: Config | None = None) -> list[Measurement]:
    budget = port_budget(cur)
    rates = rate_facts(prev, cur)
    dest_rates, basis = destination_rates(cur, rates.time_wait_entered_per_s)
    context = EphemeralContext(
        interval_s=rates.interval_s, rates=rates, platform=cur.host.platform, tcp_tw_reuse=cur.sysctls.tcp_tw_reuse,
        tcp_tw_reuse_delay_ms=cur.sysctls.tcp_tw_reuse_delay, rate_method=basis,
        host_time_wait=cur.sockstat.get("TCP.tw"), time_wait_s=time_wait_seconds(cur.host.platform),
        tcp_max_tw_buckets=cur.sysctls.tcp_max_tw_buckets)
    out: list[Measurement] = []
    all_loads = loads(cur)
    if budget.usable:
        for load in _chosen(all_loads, dest_rates, budget):
            out.extend(_destination_measurements(load, budget, dest_rates, basis, cur, context))
    out.extend(_host_measurements(prev, cur, all_loads, context))
    return out


def _destination_measurements(load: DestinationLoad, budget: PortBudget,
                              dest_rates: Mapping[tuple[str, str, int], float], basis: str, cur: Snapshot,
                              context: EphemeralContext) -> list[Measurement]:
    d = load.usage
    fc = None if context.rates.time_wait_entered_per_s is None else forecast(
        load, dest_rates.get(key(d), 0.0), basis, budget, cur.sysctls.tcp_tw_reuse_delay, context.time_wait_s)
    facts = destination_facts(context, record_of(load, budget, fc))
    resource = {"destination": d.destination, "local_address": d.local_address}
    rkey = resource_key(d)
    out = [Measurement("EphemeralPortUsage", resource, rkey, load.percent or 0.0, "%", "value", facts)]
    if load.reusable:
        out.append(Measurement("EphemeralPortUsageWithoutReuse", resource, rkey,
                               load.percent_without_reuse or 0.0, "%", "value", facts))
    if fc is not None:
        out.append(Measurement("EphemeralPortExhaustion", resource, rkey, fc.steady_percent, "%", "value", facts))
    return out


def _top(all_loads: list[DestinationLoad], n: int = 5) -> tuple[TopDestination, ...]:
    ranked = sorted(all_loads, key=lambda x: -x.time_wait)[:n]
    return tuple(TopDestination(x.usage.destination, x.usage.local_address, x.time_wait, x.percent)
                 for x in ranked if x.time_wait)


def _host_measurements(prev: Snapshot, cur: Snapshot, all_loads: list[DestinationLoad],
                       context: EphemeralContext) -> list[Measurement]:
    out = []
    by_state = cur.sockets.by_state if cur.sockets is not None else {}
    tw = cur.sockstat.get("TCP.tw", by_state.get("TIME_WAIT"))
    buckets = cur.sysctls.tcp_max_tw_buckets
    if tw is not None and buckets:
        tw_facts = TimeWaitFacts(
            *_context(context), time_wait=tw, overflow_delta=counter_delta(prev, cur, "TcpExt.TCPTimeWaitOverflow"),
            top_destinations=_top(all_loads), outbound_time_wait=sum(x.time_wait for x in all_loads))
        out.append(Measurement("TimeWaitSockets", {"port": None}, "TCP(host)",
                               round(100.0 * tw / buckets, 2), "%", "value", tw_facts))
    orphans, limit = cur.sockstat.get("TCP.orphan"), cur.sysctls.tcp_max_orphans
    if orphans is not None and limit:
        orphan_facts = OrphanFacts(
            *_context(context), orphans=orphans, tcp_max_orphans=limit,
            fin_wait={k: v for k, v in by_state.items() if k in ("FIN_WAIT1", "FIN_WAIT2", "LAST_ACK", "CLOSING")},
            tcp_fin_timeout=cur.sysctls.tcp_fin_timeout)
        out.append(Measurement("OrphanSockets", {"port": None}, "TCP(host)",
                               round(100.0 * orphans / limit, 2), "%", "value", orphan_facts))
    return out


def _rules(name: str) -> tuple[Rule, ...]:
    return tuple(r for r in DEFAULT_RULES if r.attribute == name)


NO_CONNECTIONS = ("the capture lists no connections, only listeners or counters (add `ss -tan` or "
                  "`netstat -an` output)")
SOCKETS = Need("connections", lambda snap: snap.sockets is not None, NO_CONNECTIONS)
TIME_WAIT_COUNT = Need("TIME_WAIT count", lambda snap: snap.sockets is not None or "TCP.tw" in snap.sockstat,
                       NO_CONNECTIONS)


def _spec(name: str, facts: type[F], explainer: Callable[[Finding, F], Explanation], needs: tuple[Need, ...] = (),
          scope: str = "destination", folds_into: tuple[str, ...] = (), inputs: tuple[str, ...] = ()
          ) -> AttributeSpec[F]:
    return AttributeSpec(name, "%", False, words.TEXTS[name], facts, explainer, _rules(name), needs, scope=scope,
                         folds_into=folds_into, inputs=inputs)


SPECS: tuple[AttributeSpec[DestinationFacts] | AttributeSpec[TimeWaitFacts] | AttributeSpec[OrphanFacts], ...] = (
    _spec("EphemeralPortUsage", DestinationFacts, words.explain_destination, (SOCKETS,)),
    _spec("EphemeralPortUsageWithoutReuse", DestinationFacts, words.explain_destination,
          folds_into=("EphemeralPortUsage", "EphemeralPortExhaustion")),
    _spec("EphemeralPortExhaustion", DestinationFacts, words.explain_destination, folds_into=("EphemeralPortUsage",)),
    _spec("TimeWaitSockets", TimeWaitFacts, words.explain_time_wait, (TIME_WAIT_COUNT,), scope="host",
          inputs=("TCP.tw", "TcpExt.TCPTimeWaitOverflow")),
    _spec("OrphanSockets", OrphanFacts, words.explain_orphans, scope="host", inputs=("TCP.orphan",)),
)
SUBJECT = Subject("ephemeral", SPECS, measure)
