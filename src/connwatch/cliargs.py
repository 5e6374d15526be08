"""argparse types for the options every command shares: ranges checked once, at parse time.

A bad value is a usage error: argparse reports it as `connwatch CMD: error: argument --interval:
must be ...` and the CLI exits 3 (UNKNOWN), never 2, so a Nagios caller does not read it as CRITICAL.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def seconds(low: float, high: float, *, above: bool = False) -> Callable[[str], float]:
    """A duration in seconds from `low` (exclusive when `above`) to `high`."""
    word = "above" if above else "from"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value > high or value < low or (above and value == low):
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g} seconds ({word} {low:g}), "
                                             f"got {text!r}")
        return value

    return parse


def whole(low: int, high: int) -> Callable[[str], int]:
    """A whole number from `low` to `high`."""

    def parse(text: str) -> int:
        stripped = text.strip()
        if not stripped.lstrip("-").isdecimal() or len(stripped) > 12 or not low <= int(stripped) <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high} (a whole number), got {text!r}")
        return int(stripped)

    return parse


PORT = whole(1, 65535)


def prometheus_duration(text: str) -> str:
    """A PromQL range like 30s, 1m, 5m."""
    import re

    if not re.fullmatch(r"[0-9]{1,6}(ms|s|m|h)", text):
        raise argparse.ArgumentTypeError(f"must be a Prometheus duration like 30s, 1m or 5m, got {text!r}")
    return text
