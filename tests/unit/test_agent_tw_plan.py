"""agent/tw_plan.py: a namespace's TIME_WAIT is dumped every sample while an attribute judged from it is at
NEAR_FRACTION of its lowest threshold or alerting; the aggregates of namespaces gone are forgotten and the
samples that dumped TIME_WAIT counted."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from connwatch.agent.tw_plan import NEAR_FRACTION, count_time_wait, plan_time_wait
from connwatch.collect_tw import QUIET, TimeWaitCaches


def _snap(inode: int | None) -> Any:
    return SimpleNamespace(netns=None if inode is None else SimpleNamespace(inode=inode))


def _result(inode: int | None, value: float, attribute: str = "EphemeralPortUsage", alerting: bool = False) -> Any:
    alert = SimpleNamespace(attribute=attribute)
    step = SimpleNamespace(raised=(alert,) if alerting else (), updated=(), still_active_clean=())
    return SimpleNamespace(current=_snap(inode), step=step,
                           measurements=(SimpleNamespace(attribute=attribute, value=value),))


def test_time_wait_is_forced_near_the_lowest_threshold_or_while_alerting() -> None:
    rules: Any = (SimpleNamespace(attribute="EphemeralPortUsage", high=80.0),
                  SimpleNamespace(attribute="EphemeralPortUsage", high=60.0),
                  SimpleNamespace(attribute="TimeWaitSockets", high=1.0))
    caches = TimeWaitCaches()
    own, other = caches.get(0), caches.get(7)
    plan_time_wait(caches, rules, [_result(None, NEAR_FRACTION * 60.0), _result(7, NEAR_FRACTION * 60.0 - 0.1)])
    assert own.force and not other.force
    plan_time_wait(caches, rules, [_result(None, 0.0), _result(7, 0.0, alerting=True)])
    assert not own.force and other.force
    plan_time_wait(caches, rules, [_result(7, 99.0, attribute="TimeWaitSockets")])  # (sockstat's: not one)
    assert not other.force


def test_a_kept_judgement_is_not_looked_at_again_and_new_rules_are() -> None:
    rules: Any = (SimpleNamespace(attribute="EphemeralPortUsage", high=80.0),)
    caches = TimeWaitCaches()
    cache = caches.get(7)
    kept = _result(7, 79.0)
    plan_time_wait(caches, rules, [kept])
    assert cache.force
    cache.force = False  # (what looking at it again would set back)
    plan_time_wait(caches, rules, [kept])  # the same judgement (agent/steady.py kept it): force stands
    assert not cache.force
    reloaded: Any = (SimpleNamespace(attribute="EphemeralPortUsage", high=80.0),)
    plan_time_wait(caches, reloaded, [kept])  # a reload
    assert cache.force
    plan_time_wait(caches, rules, [_result(7, 0.0)])
    assert not cache.force


def test_namespaces_gone_are_forgotten_and_dumps_counted() -> None:
    caches = TimeWaitCaches()
    caches.get(0).reason, caches.get(7).reason, caches.get(9).reason = "due", "reused", QUIET
    caches.get(5)  # (a namespace gone)
    samples = {"time_wait": 2}
    count_time_wait(caches, [_snap(None), _snap(7), _snap(9)], samples)
    assert sorted(caches.caches) == [0, 7, 9] and samples == {"time_wait": 3}
    caches.get(11).reason = "first sample"  # its last fresh sample dumped; this one served it again
    count_time_wait(caches, [_snap(None), _snap(11)], samples, served=frozenset({11}))
    assert sorted(caches.caches) == [0, 11] and samples == {"time_wait": 4}
