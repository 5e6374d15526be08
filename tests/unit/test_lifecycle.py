"""The alert lifecycle state machine, driven by a fake clock (plain floats)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from connwatch.alerts.lifecycle import StepResult, step
from connwatch.alerts.store import AlertStore
from connwatch.findings import Alert, Explanation, Finding, Measurement

HOST = "host-a"
KEY = ("BacklogRejectsByPort", "TCP(1414)")


def finding(
    value: float = 124.0,
    *,
    breached: bool = True,
    severity: int = 2,
    port: int = 1414,
    attribute: str = "BacklogRejectsByPort",
    clear_after: int = 3,
    explanation: Explanation | None = None,
) -> Finding:
    m = Measurement(
        attribute=attribute,
        resource={"port": port},
        resource_key=f"TCP({port})",
        value=value,
        unit="conns",
        facts={"backlog": 128, "pids": [10, 11]},
    )
    return Finding(
        measurement=m,
        limit=20.0,
        severity=severity,
        alert_class="backlog",
        clear_after=clear_after,
        breached=breached,
        explanation=explanation,
    )


Active = dict[tuple[str, str], Alert]


def active_of(result: StepResult, base: Active | None = None) -> Active:
    """What the store's load_active would return after persisting `result`."""
    active = dict(base or {})
    for alert in result.alerts:
        if alert.state == "active":
            active[alert.key] = alert
        else:
            active.pop(alert.key, None)
    return active


def test_breach_raises_new_alert() -> None:
    why = Explanation(text="t", explanation="e", action="a", owner="mqm")
    result = step({}, [finding(explanation=why)], now=100.0, system_name=HOST)
    assert result.updated == result.cleared == result.still_active_clean == ()
    (alert,) = result.raised
    assert alert.key == KEY
    assert alert.state == "active"
    assert alert.created_at == alert.last_updated == alert.last_occurred == 100.0
    assert (alert.occurrences, alert.clean_samples, alert.cleared_at, alert.id) == (1, 0, None, None)
    assert (alert.value, alert.unit, alert.limit, alert.severity) == (124.0, "conns", 20.0, 2)
    assert (alert.alert_class, alert.clear_after, alert.system_name) == ("backlog", 3, HOST)
    assert alert.resource == {"port": 1414}
    assert alert.detail == {"backlog": 128, "pids": [10, 11]}
    assert (alert.text, alert.explanation, alert.action, alert.owner) == ("t", "e", "a", "mqm")
    assert result.alerts == (alert,)


def test_clean_finding_without_alert_does_nothing() -> None:
    result = step({}, [finding(breached=False)], now=1.0, system_name=HOST)
    assert result.alerts == ()


def test_second_breach_updates() -> None:
    first = step({}, [finding(124.0)], now=100.0, system_name=HOST).raised[0]
    first = replace(first, id=7)
    why = Explanation(text="t2", explanation="e2", action="a2")
    result = step({KEY: first}, [finding(300.0, severity=1, explanation=why)], now=160.0, system_name=HOST)
    assert result.raised == result.cleared == ()
    (alert,) = result.updated
    assert alert.id == 7
    assert alert.occurrences == 2
    assert alert.created_at == 100.0
    assert alert.last_occurred == alert.last_updated == 160.0
    assert (alert.value, alert.severity, alert.text, alert.explanation) == (300.0, 1, "t2", "e2")


def test_update_without_explanation_keeps_texts() -> None:
    why = Explanation(text="t", explanation="e", action="a", owner="o")
    first = step({}, [finding(explanation=why)], now=1.0, system_name=HOST).raised[0]
    (alert,) = step({KEY: first}, [finding()], now=2.0, system_name=HOST).updated
    assert (alert.text, alert.explanation, alert.action, alert.owner) == ("t", "e", "a", "o")


def test_breach_resets_clean_samples() -> None:
    first = step({}, [finding()], now=1.0, system_name=HOST).raised[0]
    clean = step({KEY: first}, [finding(breached=False)], now=2.0, system_name=HOST).still_active_clean[0]
    assert clean.clean_samples == 1
    (again,) = step({KEY: clean}, [finding()], now=3.0, system_name=HOST).updated
    assert again.clean_samples == 0


def test_clears_after_clear_after_clean_samples_and_not_before() -> None:
    active = active_of(step({}, [finding(clear_after=3)], now=0.0, system_name=HOST))
    for n, now in enumerate((10.0, 20.0), start=1):
        result = step(active, [finding(1.0, breached=False)], now=now, system_name=HOST)
        assert result.cleared == ()
        (alert,) = result.still_active_clean
        assert (alert.state, alert.clean_samples, alert.last_updated) == ("active", n, now)
        assert alert.last_occurred == 0.0
        active = active_of(result, active)
    result = step(active, [finding(1.0, breached=False)], now=30.0, system_name=HOST)
    assert result.still_active_clean == ()
    (cleared,) = result.cleared
    assert (cleared.state, cleared.cleared_at, cleared.clean_samples) == ("cleared", 30.0, 3)
    assert cleared.last_updated == 30.0
    assert cleared.value == 124.0  # the cleared alert keeps the breaching value
    assert active_of(result, active) == {}


def test_vanished_resource_counts_as_clean() -> None:
    active = active_of(step({}, [finding(clear_after=2)], now=0.0, system_name=HOST))
    other = finding(port=80, breached=False)
    first = step(active, [other], now=1.0, system_name=HOST)
    assert first.still_active_clean[0].clean_samples == 1
    second = step(active_of(first, active), [], now=2.0, system_name=HOST)
    assert second.cleared[0].cleared_at == 2.0


def test_clear_after_one_clears_on_first_clean_sample() -> None:
    active = active_of(step({}, [finding(clear_after=1)], now=0.0, system_name=HOST))
    assert len(step(active, [], now=1.0, system_name=HOST).cleared) == 1


def test_most_severe_of_duplicate_keys_wins() -> None:
    findings = [
        finding(10.0, severity=3),
        finding(99.0, severity=1),
        finding(50.0, severity=2),
        finding(500.0, severity=0, breached=False),  # clean findings never win
    ]
    (alert,) = step({}, findings, now=1.0, system_name=HOST).raised
    assert (alert.severity, alert.value) == (1, 99.0)


def test_duplicate_keys_for_active_alert_give_one_update() -> None:
    first = step({}, [finding()], now=1.0, system_name=HOST).raised[0]
    twice = [finding(1.0, severity=4), finding(2.0, severity=1)]
    result = step({KEY: first}, twice, now=2.0, system_name=HOST)
    assert [a.value for a in result.updated] == [2.0]
    assert result.updated[0].occurrences == 2


def test_clean_and_breached_finding_for_same_key_counts_as_breach() -> None:
    first = step({}, [finding()], now=1.0, system_name=HOST).raised[0]
    result = step({KEY: first}, [finding(breached=False), finding(5.0)], now=2.0, system_name=HOST)
    assert len(result.updated) == 1 and result.still_active_clean == ()


def test_independent_keys() -> None:
    a = finding(port=1414)
    b = finding(port=80, attribute="SynDrops")
    result = step({}, [a, b], now=1.0, system_name=HOST)
    assert {x.key for x in result.raised} == {KEY, ("SynDrops", "TCP(80)")}


def test_step_does_not_mutate_inputs() -> None:
    first = step({}, [finding()], now=1.0, system_name=HOST).raised[0]
    active = {KEY: first}
    step(active, [], now=2.0, system_name=HOST)
    assert active == {KEY: first} and first.clean_samples == 0


def test_reraise_after_clear_creates_new_alert(tmp_path: Path) -> None:
    with AlertStore.open(tmp_path) as store:
        raised = store.save(step(store.load_active(), [finding(clear_after=1)], 1.0, HOST).alerts)
        first_id = raised[0].id
        cleared = store.save(step(store.load_active(), [], 2.0, HOST).alerts)
        assert cleared[0].state == "cleared" and cleared[0].id == first_id
        assert store.load_active() == {}
        result = step(store.load_active(), [finding()], 3.0, HOST)
        assert len(result.raised) == 1 and result.updated == ()
        (again,) = store.save(result.alerts)
        assert again.id is not None and again.id != first_id
        assert (again.created_at, again.occurrences) == (3.0, 1)
        assert store.get(first_id or -1) == cleared[0]
        assert store.load_active() == {KEY: again}


@pytest.mark.parametrize("clear_after", [1, 2, 5])
def test_samples_to_clear(clear_after: int) -> None:
    active = active_of(step({}, [finding(clear_after=clear_after)], now=0.0, system_name=HOST))
    for n in range(1, clear_after + 1):
        result = step(active, [], now=float(n), system_name=HOST)
        assert bool(result.cleared) == (n == clear_after)
        active = active_of(result, active)
    assert active == {}
