"""Validated config values shared by the rule parsers (one clear ConfigError naming the key)."""

from __future__ import annotations

import math

from connwatch.errors import ConfigError

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import Any


def parse_limit(value: Any, where: str, low: float = 0, top: float | None = None) -> float | None:
    """A number >= low (and <= top), or "unlimited" (None)."""
    if value == "unlimited":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: must be a number or \"unlimited\", got {value!r}")
    if not math.isfinite(value):  # nan never compares greater, inf never breaches: alerting silently off
        raise ConfigError(f"{where}: must be a finite number or \"unlimited\", got {value!r}")
    if value < low or (top is not None and value > top):
        rng = f"{low}–{top}" if top is not None else f">= {low}"
        raise ConfigError(f"{where}: {value} is out of range ({rng}, or \"unlimited\")")
    return float(value)


def whole_number(value: Any, low: int, top: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= top:
        raise ConfigError(f"{where}: must be a whole number from {low} to {top}, got {value!r}")
    return value
