"""Words for alerts, built from measured facts. Each attribute's explainer is named by its spec
(attributes/registry.py); this package holds the explainers and the helpers they share."""

from __future__ import annotations

from collections.abc import Mapping

from connwatch.findings import Explanation, Finding, format_number

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import Any


def process_words(owner: Mapping[str, Any]) -> str:
    """'pid 4242 (runmqlsr, user mqm)'; a capture may name a program without its pid."""
    if owner.get("pid") is None or owner["pid"] < 0:
        return str(owner["command"])
    return f"pid {owner['pid']} ({owner['command']}, user {owner.get('user') or '?'})"


def generic(finding: Finding) -> Explanation:
    """Words for an attribute without an explainer of its own."""
    m = finding.measurement
    return Explanation(
        text=f"{m.attribute} of {m.resource_key}.",
        explanation=f"The latest sample value is {format_number(m.value)} {m.unit}; the high limit is "
        f"{format_number(finding.limit)} {m.unit}.",
        action="",
    )


def explain(finding: Finding) -> Explanation:
    """The words for a breached finding (its attribute's explainer, from the registry)."""
    from connwatch.attributes.registry import explain as by_spec

    return by_spec(finding)
