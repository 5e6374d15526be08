"""The alert lifecycle: raise, update, count clean samples, clear.

Pure: no I/O and no clock. The caller passes the active alerts (from the
store), this sample's findings, and `now`; it persists `StepResult.alerts`.

Identity of an alert is (attribute, resource_key). A cleared alert is never
revived: a later breach of the same key raises a new alert (a new row).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set

from connwatch.findings import Alert, Finding
from connwatch.record import Record, record, replace

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import Any

Key = tuple[str, str]

ACTIVE = "active"
CLEARED = "cleared"


@record
class StepResult(Record):
    """What one step did to the alerts. Every alert here must be persisted."""

    raised: tuple[Alert, ...] = ()
    updated: tuple[Alert, ...] = ()
    cleared: tuple[Alert, ...] = ()
    still_active_clean: tuple[Alert, ...] = ()

    @property
    def alerts(self) -> tuple[Alert, ...]:
        """All alerts touched this step: raised, updated, cleared, then clean-but-active."""
        return self.raised + self.updated + self.cleared + self.still_active_clean


def step(
    active: Mapping[Key, Alert],
    findings: Sequence[Finding],
    now: float,
    system_name: str,
    held: Set[Key] = frozenset(),
) -> StepResult:
    """Advance the lifecycle by one sample taken at `now`. `held`: active alerts whose problem goes on
    though their own attribute is quiet this sample (a breach folded into them): kept, not counted clean."""
    breached = most_severe_breaches(findings)
    raised: list[Alert] = []
    updated: list[Alert] = []
    for key, finding in breached.items():
        current = active.get(key)
        if current is None:
            raised.append(raise_alert(finding, now, system_name))
        else:
            updated.append(update_alert(current, finding, now, system_name))
    cleared: list[Alert] = []
    still_clean: list[Alert] = []
    for key, alert in active.items():
        if key in breached:
            continue
        if key in held:
            updated.append(replace(alert, clean_samples=0, last_updated=now))
            continue
        counted = count_clean(alert, now)
        (cleared if counted.state == CLEARED else still_clean).append(counted)
    return StepResult(tuple(raised), tuple(updated), tuple(cleared), tuple(still_clean))


def most_severe_breaches(findings: Sequence[Finding]) -> dict[Key, Finding]:
    """Breached findings by key; of several for one key, the most severe (lowest number) wins.

    Ties keep the first finding. Insertion order follows the findings.
    """
    chosen: dict[Key, Finding] = {}
    for finding in findings:
        if not finding.breached or finding.folded_into is not None:
            continue
        previous = chosen.get(finding.key)
        if previous is None or finding.severity < previous.severity:
            chosen[finding.key] = finding
    return chosen


def raise_alert(finding: Finding, now: float, system_name: str) -> Alert:
    """A new active alert for a breached finding with no active alert of its key."""
    m = finding.measurement
    return Alert(
        attribute=m.attribute,
        resource_key=m.resource_key,
        state=ACTIVE,
        created_at=now,
        last_updated=now,
        occurrences=1,
        last_occurred=now,
        clean_samples=0,
        cleared_at=None,
        **_finding_fields(finding, system_name),
        **_explanation_fields(finding),
    )


def update_alert(alert: Alert, finding: Finding, now: float, system_name: str) -> Alert:
    """Another breach of an active alert: refresh it, keep its id and created_at.

    Texts are kept when this finding carries no explanation.
    """
    return replace(
        alert,
        occurrences=alert.occurrences + 1,
        last_occurred=now,
        last_updated=now,
        clean_samples=0,
        **_finding_fields(finding, system_name),
        **_explanation_fields(finding),
    )


def count_clean(alert: Alert, now: float) -> Alert:
    """One clean sample (or the resource vanished) for an active alert; clear it when due."""
    clean = alert.clean_samples + 1
    if clean >= alert.clear_after:
        return replace(alert, clean_samples=clean, last_updated=now, state=CLEARED, cleared_at=now)
    return replace(alert, clean_samples=clean, last_updated=now)


def _finding_fields(finding: Finding, system_name: str) -> dict[str, Any]:
    m = finding.measurement
    return {
        "resource": dict(m.resource),
        "value": m.value,
        "unit": m.unit,
        "limit": finding.limit,
        "severity": finding.severity,
        "alert_class": finding.alert_class,
        "clear_after": finding.clear_after,
        "system_name": system_name,
        "detail": dict(m.detail),
    }


def _explanation_fields(finding: Finding) -> dict[str, Any]:
    e = finding.explanation
    if e is None:
        return {}
    return {"text": e.text, "explanation": e.explanation, "action": e.action, "owner": e.owner}
