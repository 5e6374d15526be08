"""Nagios plugin output: one status line with perfdata (exit code set by the caller)."""

from __future__ import annotations

from connwatch.engine import CheckResult
from connwatch.findings import describe, format_number

MAX_PERFDATA = 50  # breached measurements first; a busy host must not print a line of megabytes


def render(result: CheckResult, status: str | None = None, note: str = "") -> str:
    """`CONNWATCH STATUS - note summary | perfdata`; `status` overrides the result's (analyze's errors)."""
    breached = sorted((f for f in result.breached if f.folded_into is None), key=lambda f: f.severity)
    if breached:
        first = breached[0]
        m = first.measurement
        summary = f"{len(breached)} alert(s): " + describe(m.resource_key, m.attribute, m.value, first.limit, m.unit)
        if len(breached) > 1:
            summary += "; " + "; ".join(f"{f.measurement.resource_key} {f.measurement.attribute}"
                                         for f in breached[1:4])
    else:
        summary = f"{len(result.current.listeners)} listeners, no connection rejected"
    perf = []
    for f in sorted(result.findings, key=lambda f: not f.breached)[:MAX_PERFDATA]:
        m = f.measurement
        label = f"{m.attribute}_{m.resource_key}".replace("'", "")
        uom = "%" if m.unit == "%" else ""  # per-interval values, not Nagios 'c' (continuous counters)
        perf.append(f"'{label}'={format_number(m.value)}{uom};{format_number(f.limit)}")
    line = f"CONNWATCH {status or result.status} - {note}{summary}"
    return line + (" | " + " ".join(perf) if perf else "")
