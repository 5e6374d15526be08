"""What attributes measure, what rules make of it, and the alerts that result.

Measurement (attributes/) -> Finding (rules/evaluate.py) -> Alert (alerts/lifecycle.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from connwatch.record import Record, field, items, record

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import Any

ResourceValue = str | int | None

SEVERITY_NAMES: Mapping[int, str] = {1: "Critical", 2: "High", 3: "Medium", 4: "Low"}


def severity_name(severity: int) -> str:
    return SEVERITY_NAMES.get(severity, str(severity))


# What Alertmanager routes commonly match (`severity`): Critical and High page (as check exits CRITICAL),
# Medium warns, Low informs. The four-level name travels in `connwatch_severity`.
ROUTING_SEVERITY: Mapping[int, str] = {1: "critical", 2: "critical", 3: "warning", 4: "info"}


def routing_severity(severity: int) -> str:
    return ROUTING_SEVERITY.get(severity, "warning")


@record
class Measurement(Record):
    """One attribute's value for one resource in one sample (or over one interval).

    `facts` is what the attribute's explanation reads: a frozen dataclass whose type the attribute's
    spec names (attributes/registry.py), so mypy checks the contract between measure and explain.
    `notes` are facts the pipeline adds afterwards (first_seen_s, basis, uptime_s). The JSON `detail`
    is both, flattened (`detail`).
    """

    attribute: str  # e.g. "BacklogRejectsByPort"
    resource: Mapping[str, ResourceValue]  # JSON resource keys: {"port": 1414}, {"destination": ...}
    resource_key: str  # human identity of the resource: "TCP(1414)"
    value: float
    unit: str  # "conns", "%", "drops", "sockets"
    mode: str = "value"  # "value" (per sample / per interval) or "rate" (per second)
    facts: Any = None  # the attribute's facts dataclass (or, for attributes not yet typed, a mapping)
    notes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def detail(self) -> dict[str, Any]:
        """Facts and notes as JSON-ready data (the alert's `detail`)."""
        return {**facts_dict(self.facts), **self.notes}

    def get(self, key: str, default: Any = None) -> Any:
        """One fact by its JSON name, without building the whole detail."""
        if key in self.notes:
            return self.notes[key]
        if isinstance(self.facts, Mapping):
            return self.facts.get(key, default)
        return getattr(self.facts, key, default)


def facts_dict(facts: Any) -> dict[str, Any]:
    """A facts dataclass (nested dataclasses, tuples) as plain JSON-ready data, in field order."""
    if facts is None:
        return {}
    if isinstance(facts, Mapping):
        return dict(facts)
    if isinstance(facts, Record):  # (every facts class is a record: no dataclasses loaded to judge)
        return {name: _plain(value) for name, value in items(facts)}
    from dataclasses import fields

    return {f.name: _plain(getattr(facts, f.name)) for f in fields(facts)}


def _plain(value: Any) -> Any:
    if isinstance(value, Record) or (hasattr(type(value), "__dataclass_fields__") and not isinstance(value, type)):
        return facts_dict(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


@record
class Explanation(Record):
    """Words for one alert, built from measured facts (explain/)."""

    text: str  # what the attribute measures
    explanation: str  # why it happened, with the facts (cleared? other ports? new app?)
    action: str  # what to change
    owner: str = ""  # owner process of the resource, in words


@record
class Finding(Record):
    """A measurement judged against the rule that applies to it."""

    measurement: Measurement
    limit: float
    severity: int  # 1 Critical .. 4 Low
    alert_class: str
    clear_after: int  # clean samples that clear an active alert
    breached: bool
    explanation: Explanation | None = None
    folded_into: str | None = None  # breached, but a fact of this alert ("BacklogRejectsByPort TCP(8080)")

    @property
    def key(self) -> tuple[str, str]:
        return (self.measurement.attribute, self.measurement.resource_key)


@record
class Alert(Record):
    """An alert's current record. Identity: attribute + resource_key."""

    attribute: str
    resource_key: str
    resource: Mapping[str, ResourceValue]
    value: float
    unit: str
    limit: float
    severity: int
    alert_class: str
    state: str  # "active" or "cleared"
    created_at: float
    last_updated: float
    occurrences: int
    last_occurred: float
    clear_after: int
    system_name: str
    clean_samples: int = 0
    cleared_at: float | None = None
    text: str = ""
    explanation: str = ""
    action: str = ""
    owner: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None  # assigned by the store

    @property
    def key(self) -> tuple[str, str]:
        return (self.attribute, self.resource_key)

    @property
    def severity_name(self) -> str:
        return severity_name(self.severity)

    @property
    def description(self) -> str:
        return describe(self.resource_key, self.attribute, self.value, self.limit, self.unit)


def describe(resource_key: str, attribute: str, value: float, limit: float, unit: str) -> str:
    """The seed's description line: `TCP(1414) BacklogRejectsByPort High, 124 conns > 20 conns`; in another
    network namespace `TCP(8080) BacklogRejectsByPort High, 136 requests > 100 requests in pod shop/web`."""
    base, sep, where = resource_key.partition(" in ")
    line = f"{base} {attribute} High, {format_number(value)} {unit} > {format_number(limit)} {unit}"
    return f"{line} in {where}" if sep else line


def format_number(value: float) -> str:
    """124.0 -> '124', 87.5 -> '87.5'."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.1f}"
