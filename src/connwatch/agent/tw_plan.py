"""The agent's TIME_WAIT plan across samples, per namespace (the aggregates and the dump-or-reuse decision:
collect_tw.py): TIME_WAIT dumped every sample while an attribute judged from it is near a threshold, the
aggregates of namespaces gone forgotten, the samples that dumped it counted."""

from __future__ import annotations

import logging

from connwatch.collect_tw import QUIET

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from collections.abc import Set

    from connwatch.collect_tw import TimeWaitCaches
    from connwatch.engine import CheckResult
    from connwatch.model import Snapshot
    from connwatch.rules.rule import Rule

log = logging.getLogger("connwatch.agent")
# Attributes judged from per-destination TIME_WAIT counts: while one of them is at NEAR_FRACTION of its
# lowest threshold (or alerting), its namespace's TIME_WAIT is dumped every full sample (collect_tw.py).
# TimeWaitSockets is not one: its value is sockstat's tw, read every sample (only its detail's top
# destinations come from the dump).
TIME_WAIT_ATTRIBUTES = frozenset({"EphemeralPortUsage", "EphemeralPortUsageWithoutReuse", "EphemeralPortExhaustion"})
NEAR_FRACTION = 0.5


def count_time_wait(caches: TimeWaitCaches, snaps: list[Snapshot], samples: dict[str, int],
                    served: Set[int] = frozenset()) -> None:
    """Forget the TIME_WAIT aggregates of namespaces gone; count the samples that dumped TIME_WAIT
    (`connwatch_samples_total{kind="time_wait"}`). `served`: the keys of the namespaces whose last sample served
    again (agent/quiet.py): nothing was dumped there, whatever their cache's last reason says."""
    keys = {tw_key(s) for s in snaps}
    caches.keep(keys)
    dumped = sum(1 for k in keys if k in caches.caches and k not in served
                 and caches.caches[k].reason not in ("reused", QUIET))
    samples["time_wait"] = samples.get("time_wait", 0) + dumped
    for key in keys:
        cache = caches.caches.get(key)
        if cache is not None:
            log.debug("TIME_WAIT of netns key %d: %s (sockstat tw %s)", key, cache.reason, cache.tw)


def plan_time_wait(caches: TimeWaitCaches, rules: tuple[Rule, ...], results: list[CheckResult]) -> None:
    """Dump TIME_WAIT every sample in a namespace while an attribute judged from it is near a threshold."""
    lowest: dict[str, float] = {}
    for rule in rules:
        if rule.attribute in TIME_WAIT_ATTRIBUTES and rule.high is not None:
            lowest[rule.attribute] = min(lowest.get(rule.attribute, rule.high), rule.high)
    for r in results:
        cache = caches.caches.get(tw_key(r.current))
        if cache is None or (cache.planned is not None and cache.planned[0] is r and cache.planned[1] is rules):
            continue  # (a namespace's kept judgement, agent/steady.py: its measurements were looked at already)
        cache.planned = (r, rules)
        active = r.step.raised + r.step.updated + r.step.still_active_clean
        cache.force = any(a.attribute in TIME_WAIT_ATTRIBUTES for a in active) or any(
            m.attribute in lowest and m.value >= NEAR_FRACTION * lowest[m.attribute] for m in r.measurements)


def tw_key(snap: Snapshot) -> int:
    """The key of a snapshot's TIME_WAIT aggregate (collect.sample's tw_key): its nsfs inode, 0 for collect()."""
    return snap.netns.inode if snap.netns is not None else 0
