"""Explanation catalogue: attribute -> function building the alert's words from measured facts.

One module per attribute module (see connwatch.attributes.MODULES), each exporting EXPLAINERS.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from connwatch.findings import Explanation, Finding, format_number

Explainer = Callable[[Finding], Explanation]


def process_words(owner: Mapping[str, Any]) -> str:
    """'pid 4242 (runmqlsr, user mqm)'; a capture may name a program without its pid."""
    if owner.get("pid") is None or owner["pid"] < 0:
        return str(owner["command"])
    return f"pid {owner['pid']} ({owner['command']}, user {owner.get('user') or '?'})"


@cache
def _registry() -> dict[str, Explainer]:
    from connwatch.attributes import MODULES

    table: dict[str, Explainer] = {}
    for name in MODULES:
        table.update(importlib.import_module(f"connwatch.explain.{name}").EXPLAINERS)
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
