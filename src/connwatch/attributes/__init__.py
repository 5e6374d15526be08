"""Attributes: (previous Snapshot, current Snapshot) -> Measurements, one module per subject."""

from __future__ import annotations

from connwatch.findings import Measurement
from connwatch.model import Snapshot


def measure_all(prev: Snapshot, cur: Snapshot) -> list[Measurement]:
    from connwatch.attributes import backlog

    out: list[Measurement] = []
    for module in (backlog,):
        out.extend(module.measure(prev, cur))
    return out
