"""Another namespace that stands still is not judged again: its last judgement is what a new one gives.

With `--netns all` on a host with 100 idle container namespaces of 50 listeners each, judging is most
of the agent's CPU (~30 ms per namespace and sample: ~150 measurements, rules, alert lifecycle), while
nothing in those namespaces changes. A judgement is a function of its two snapshots, the rules and the
namespace's alerts. So a namespace other than the agent's own is not judged when:

- its last judgement had two samples of equal content (below) as inputs and changed no alert of it (none
  raised, updated, still active or cleared: nothing pending, no clean-sample count running), and
- its previous sample and this one have that same content;

then this judgement's inputs equal the last one's, and so do its measurements and its (empty) alert
step: they are reused (on /metrics too). Any difference, a new rule set (SIGHUP) or an alert of the
namespace judges as before.

Content: everything a judgement reads but the sample's time: counters, sockstat, sysctls, listeners
(queues as judged: the interval's peak; owners), the socket summary, conntrack, names and which sources
worked. Not the snapshot's limitations (notes for the log, which no attribute, rule or explanation reads;
the owner scan's notes come and go with the scan). Not compared either: sockstat's host-wide fields (TCP
orphan, alloc, mem and the other protocols' mem) and the host's allocated file handles, which move with
every other namespace; their attributes (OrphanSockets, TcpMemoryUsage, FileHandles) need tcp_max_orphans,
tcp_mem (which exist only in the host's namespace) or the own namespace, so a namespace is only skipped
when it has neither sysctl.
Nor `sockets: used` (every socket of the namespace, netlink ones too: the agent's own sampling sockets
count there), which no attribute reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connwatch.engine import CheckResult
from connwatch.model import Snapshot

HOST_WIDE_SUFFIXES = (".orphan", ".alloc", ".mem", ".memory")


def content(snap: Snapshot) -> tuple[Any, ...] | None:
    """What a judgement reads of a snapshot but its time; None when the namespace may not be skipped."""
    n = snap.netns
    if n is None or n.own or snap.sysctls.tcp_mem is not None or snap.sysctls.tcp_max_orphans is not None:
        return None
    sockstat = {k: v for k, v in snap.sockstat.items() if not k.endswith(HOST_WIDE_SUFFIXES) and k != "sockets.used"}
    sources = {s.name: s.ok for s in snap.statuses}
    return (snap.host, dict(snap.counters), sockstat, snap.sysctls, snap.listeners, snap.sockets, sources,
            n, snap.conntrack_count, snap.conntrack_stats)


@dataclass(frozen=True, slots=True)
class Steady:
    """A namespace's last judgement whose inputs had equal content and which changed no alert."""

    content: tuple[Any, ...]
    result: CheckResult


def reusable(steady: Steady | None, prev: Snapshot, cur: Snapshot) -> CheckResult | None:
    """The last judgement, when it is what judging (prev, cur) would give (see the module docstring)."""
    if steady is None:
        return None
    now = content(cur)
    return steady.result if now is not None and now == steady.content and content(prev) == now else None


def steady_after(prev: Snapshot, cur: Snapshot, result: CheckResult) -> Steady | None:
    """The Steady to keep after judging (prev, cur), or None."""
    now = content(cur)
    step = result.step
    if now is None or content(prev) != now or step.raised or step.updated or step.still_active_clean or step.cleared:
        return None
    if result.store_error is not None:
        return None
    return Steady(now, result)
