"""Measurements + rules -> findings. Pure."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from connwatch.findings import Finding, Measurement
from connwatch.record import replace
from connwatch.rules.rule import Rule


def applicable(rules: Sequence[Rule], m: Measurement) -> list[Rule]:
    """The most specific matching rules for this measurement (port/address rules replace generic)."""
    matching = [r for r in rules if r.matches(m)]
    if not matching:
        return []
    best = max(r.specificity for r in matching)
    return [r for r in matching if r.specificity == best]


def judged_value(rule: Rule, m: Measurement) -> float:
    if rule.mode == "rate":
        interval = float(m.get("interval_s") or 0) or 1.0
        return round(m.value / interval, 3)
    return m.value


def evaluate_one(rules: Sequence[Rule], m: Measurement) -> Finding | None:
    """None when no rule applies or the applicable rule says "unlimited"."""
    group = [r for r in applicable(rules, m) if r.high is not None]
    if not group:
        return None
    breached = [r for r in group if judged_value(r, m) > (r.high or 0)]
    if breached:
        rule = min(breached, key=lambda r: (r.severity, -(r.high or 0)))
    else:
        rule = min(group, key=lambda r: r.high or 0)  # the nearest limit, for display
    value = judged_value(rule, m)
    shown = m if value == m.value else _as_rate(m, value)
    return Finding(measurement=shown, limit=float(rule.high or 0), severity=rule.severity,
                   alert_class=rule.alert_class, clear_after=rule.clear_after, breached=bool(breached))


def _as_rate(m: Measurement, value: float) -> Measurement:
    return replace(m, value=value, unit=f"{m.unit}/s", mode="rate")


def evaluate(rules: Sequence[Rule], measurements: Iterable[Measurement]) -> list[Finding]:
    by_attribute: dict[str, list[Rule]] = {}  # (a rule matches its own attribute only: not every rule per
    for r in rules:                           # measurement, 30,000 of them in a check of 104 namespaces)
        by_attribute.setdefault(r.attribute, []).append(r)
    plans = {attribute: _plan(group) for attribute, group in by_attribute.items()}
    out = []
    for m in measurements:
        plan = plans.get(m.attribute)
        finding = plan(m) if plan is not None else None
        if finding is not None:
            out.append(finding)
    return out


Plan = Callable[[Measurement], "Finding | None"]


def _plan(rules: Sequence[Rule]) -> Plan:
    """evaluate_one for one attribute's rules, the choice of rule made once where it depends on the value
    alone: every rule generic (no port or address: all apply, equally specific) and judging the value
    itself. Issue 17: 0.4 of a namespace's ~5 ms judged, 15,700 measurements at 100 namespaces."""
    if any(r.port is not None or r.address is not None or r.mode == "rate" for r in rules):
        return lambda m: evaluate_one(rules, m)
    group = [r for r in rules if r.high is not None]
    if not group:
        return lambda m: None
    ranked = sorted(group, key=lambda r: (r.severity, -(r.high or 0)))  # min(breached, key=...) is the first
    near = min(group, key=lambda r: r.high or 0)
    chosen = [(r.high or 0, (float(r.high or 0), r.severity, r.alert_class, r.clear_after, True)) for r in ranked]
    clear = (float(near.high or 0), near.severity, near.alert_class, near.clear_after, False)

    def judge(m: Measurement) -> Finding | None:
        value = m.value
        if value != value:  # NaN: evaluate_one's own way (it shows it as a rate)
            return evaluate_one(rules, m)
        for high, made in chosen:
            if value > high:
                return Finding(m, *made)
        return Finding(m, *clear)

    return judge
