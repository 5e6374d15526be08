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
from typing import Any

from connwatch.findings import Measurement
from connwatch.model import Listener, Snapshot
from connwatch.rules.spec import Rule

ATTRIBUTES: dict[str, tuple[str, bool]] = {
    "BacklogRejectsByPort": ("conns", True),
    "AcceptQueueFill": ("%", False),
    "ListenOverflows": ("drops", True),
    "SynQueueDrops": ("drops", True),
}

DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("BacklogRejectsByPort", 0, severity=3, alert_class="backlog"),
    Rule("BacklogRejectsByPort", 100, severity=2, alert_class="backlog"),
    Rule("AcceptQueueFill", 80, severity=4, alert_class="backlog"),
    Rule("AcceptQueueFill", 100, severity=2, alert_class="backlog"),
    Rule("ListenOverflows", 0, severity=4, alert_class="backlog"),
    Rule("SynQueueDrops", 0, severity=3, alert_class="backlog"),
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


def _listener_detail(lst: Listener, delta: int | None, now: float) -> dict[str, Any]:
    owner = lst.owner
    return {
        "endpoint": lst.endpoint, "family": lst.family, "queue": lst.queue, "backlog": lst.backlog,
        "fill": fill_percent(lst), "drops_total": lst.drops, "drops_delta": delta, "inode": lst.inode,
        "owner": None if owner is None else {
            "pid": owner.pid, "command": owner.command, "cmdline": owner.cmdline, "user": owner.user,
            "started_at": owner.started_at,
            "age_s": None if owner.started_at is None else round(now - owner.started_at, 1),
            "open_fds": owner.open_fds, "fd_limit": owner.fd_limit,
        },
    }


def reconcile(prev: Snapshot, cur: Snapshot) -> dict[str, int | None]:
    """Host ListenDrops/ListenOverflows deltas against what the per-listener counters explain."""
    deltas = drop_deltas(prev, cur)
    attributed = sum(deltas.values()) if cur.listeners and all(
        x.drops is not None for x in cur.listeners) else None
    host = counter_delta(prev, cur, "TcpExt.ListenDrops")
    unattributed = None if host is None or attributed is None else max(host - attributed, 0)
    return {
        "host_listen_drops": host,
        "host_listen_overflows": counter_delta(prev, cur, "TcpExt.ListenOverflows"),
        "attributed": attributed, "unattributed": unattributed,
    }


def measure(prev: Snapshot, cur: Snapshot) -> list[Measurement]:
    interval = max(cur.monotonic - prev.monotonic, 1e-9)
    deltas = drop_deltas(prev, cur)
    ports = _by_port(cur.listeners)
    rejecting = sorted(p for p, ls in ports.items() if sum(deltas.get(x.identity, 0) for x in ls) > 0)
    context = {
        "interval_s": round(interval, 3), "somaxconn": cur.sysctls.somaxconn,
        "rejecting_ports": rejecting, "reconciliation": reconcile(prev, cur),
        "tcp_syncookies": cur.sysctls.tcp_syncookies, "tcp_abort_on_overflow": cur.sysctls.tcp_abort_on_overflow,
        "platform": cur.host.platform,
    }
    out: list[Measurement] = []
    for port, group in sorted(ports.items()):
        out.extend(_port_measurements(port, group, deltas, context, cur.taken_at, interval))
    out.extend(_host_measurements(prev, cur, interval, context))
    return out


def _port_measurements(port: int, group: list[Listener], deltas: dict[tuple[int, int, int, str], int],
                       context: dict[str, Any], now: float, interval: float) -> list[Measurement]:
    listeners = [_listener_detail(x, deltas.get(x.identity), now) for x in group]
    detail = {**context, "port": port, "listeners": listeners,
              "queue_full_now": any(x.backlog is not None and x.queue > x.backlog for x in group)}
    out = []
    if all(x.drops is not None for x in group):
        rejects = sum(deltas.get(x.identity, 0) for x in group)
        out.append(Measurement("BacklogRejectsByPort", {"port": port}, port_key(port), float(rejects),
                               "conns", "value", {**detail, "rate_per_s": round(rejects / interval, 3)}))
    fills = [f for f in (fill_percent(x) for x in group) if f is not None]
    if fills:
        out.append(Measurement("AcceptQueueFill", {"port": port}, port_key(port), max(fills), "%",
                               "value", detail))
    return out


def _host_measurements(prev: Snapshot, cur: Snapshot, interval: float,
                       context: dict[str, Any]) -> list[Measurement]:
    out = []
    for attribute, counter in (("ListenOverflows", "TcpExt.ListenOverflows"),
                               ("SynQueueDrops", "TcpExt.TCPReqQFullDrop")):
        delta = counter_delta(prev, cur, counter)
        if delta is None:
            continue
        detail = {**context, "counter": counter,
                  "cookies_sent": counter_delta(prev, cur, "TcpExt.TCPReqQFullDoCookies"),
                  "rate_per_s": round(delta / interval, 3)}
        out.append(Measurement(attribute, {"port": None}, "TCP(host)", float(delta), "drops", "value", detail))
    return out
