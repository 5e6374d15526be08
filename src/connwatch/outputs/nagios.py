"""Nagios plugin output: one status line with perfdata (exit code set by the caller)."""

from __future__ import annotations

from connwatch.engine import CheckResult
from connwatch.findings import format_number


def render(result: CheckResult) -> str:
    breached = sorted(result.breached, key=lambda f: f.severity)
    if breached:
        first = breached[0]
        m = first.measurement
        summary = (f"{len(breached)} alert(s): {m.resource_key} {m.attribute} High, "
                   f"{format_number(m.value)} {m.unit} > {format_number(first.limit)} {m.unit}")
        if len(breached) > 1:
            summary += "; " + "; ".join(f"{f.measurement.resource_key} {f.measurement.attribute}"
                                         for f in breached[1:4])
    else:
        summary = f"{len(result.current.listeners)} listeners, no connection rejected"
    perf = []
    for f in result.findings:
        m = f.measurement
        label = f"{m.attribute}_{m.resource_key}".replace("'", "")
        uom = "%" if m.unit == "%" else "c" if m.unit in ("drops", "conns") else ""
        perf.append(f"'{label}'={format_number(m.value)}{uom};{format_number(f.limit)}")
    line = f"CONNWATCH {result.status} - {summary}"
    return line + (" | " + " ".join(perf) if perf else "")
