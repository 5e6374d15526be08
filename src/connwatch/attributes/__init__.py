"""Attributes: (previous Snapshot, current Snapshot) -> Measurements, one module per subject.

Each module listed in MODULES exports:
    ATTRIBUTES: dict[name, (unit, is_counter)]   -- names users put in rules
    DEFAULT_RULES: tuple[Rule, ...]              -- built-in limits
    measure(prev, cur) -> list[Measurement]
and explain/<same name>.py exports EXPLAINERS: dict[name, Callable[[Finding], Explanation]].
"""

from __future__ import annotations

import importlib
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING

from connwatch.findings import Measurement
from connwatch.model import Snapshot

if TYPE_CHECKING:
    from connwatch.rules.spec import Rule

MODULES = ("backlog", "ephemeral", "sources")


@cache
def modules() -> tuple[ModuleType, ...]:
    return tuple(importlib.import_module(f"connwatch.attributes.{name}") for name in MODULES)


def known_attributes() -> dict[str, tuple[str, bool]]:
    out: dict[str, tuple[str, bool]] = {}
    for module in modules():
        out.update(module.ATTRIBUTES)
    return out


def default_rules() -> tuple[Rule, ...]:
    return tuple(rule for module in modules() for rule in module.DEFAULT_RULES)


def measure_all(prev: Snapshot, cur: Snapshot) -> list[Measurement]:
    out: list[Measurement] = []
    for module in modules():
        out.extend(module.measure(prev, cur))
    return out
