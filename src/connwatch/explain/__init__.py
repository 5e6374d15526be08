"""Explanation catalogue: attribute -> function building the alert's words from measured facts."""

from __future__ import annotations

from collections.abc import Callable

from connwatch.findings import Explanation, Finding, format_number

Explainer = Callable[[Finding], Explanation]


def _registry() -> dict[str, Explainer]:
    from connwatch.explain import backlog

    table: dict[str, Explainer] = {}
    for module in (backlog,):
        table.update(module.EXPLAINERS)
    return table


def explain(finding: Finding) -> Explanation:
    explainer = _registry().get(finding.measurement.attribute)
    if explainer is not None:
        return explainer(finding)
    m = finding.measurement
    return Explanation(
        text=f"{m.attribute} of {m.resource_key}.",
        explanation=f"The latest sample value is {format_number(m.value)} {m.unit}; the high limit is "
        f"{format_number(finding.limit)} {m.unit}.",
        action="",
    )
