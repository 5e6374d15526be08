"""Nagios plugin output (monitoring-plugins guidelines): a status line with perfdata, then long output.

    CONNWATCH CRITICAL - 1 alert(s): TCP(8080) BacklogRejectsByPort High, 136 requests > 100 requests |
        '8080 BacklogRejectsByPort'=136;0;100;0 ...   (one line)
    TCP(8080) BacklogRejectsByPort High, 136 requests > 100 requests: <explanation>
    ...

Perfdata `'label'=value[UOM];warn;crit;min`: warn is the lowest limit of the rules in force for that
measurement that make `check` exit WARNING (severity 3 Medium, 4 Low), crit the lowest of those that
make it exit CRITICAL (1 Critical, 2 High); empty when no such rule applies. A plain number N is the
plugin range "alert above N", which is what connwatch's rules mean (value > limit). Labels lead with the
resource (port, `host`, destination, source), then the attribute: unique, and distinct early for the
tools that shorten labels (RRD data sources keep 19 characters).
"""

from __future__ import annotations

from collections.abc import Sequence

from connwatch.engine import CheckResult
from connwatch.findings import Finding, describe, format_number, severity_name
from connwatch.rules.evaluate import applicable
from connwatch.rules.rule import Rule

MAX_PERFDATA = 50  # breached measurements first; a busy host must not print a line of megabytes
MAX_LONG = 20  # long-output lines (one per alert)


def render(result: CheckResult, status: str | None = None, note: str = "", rules: Sequence[Rule] = ()) -> str:
    """`CONNWATCH STATUS - note summary | perfdata` and the long output; `status` overrides the result's
    (analyze's errors). `rules`: the rules in force, for the thresholds (none: only the deciding limit)."""
    breached = sorted((f for f in result.breached if f.folded_into is None), key=lambda f: f.severity)
    if breached:
        summary = f"{len(breached)} alert(s): " + _line(breached[0])
        if len(breached) > 1:
            summary += "; " + "; ".join(f"{f.measurement.resource_key} {f.measurement.attribute}"
                                         for f in breached[1:4])
    else:
        summary = f"{len(result.current.listeners)} listeners, no connection rejected"
    perf = perfdata(result.findings, rules)
    first = f"CONNWATCH {status or result.status} - {note}{summary}" + (" | " + " ".join(perf) if perf else "")
    long = [f"{_line(f)}: {_first_sentence(f)}" for f in breached[:MAX_LONG]]
    if len(breached) > MAX_LONG:
        long.append(f"... and {len(breached) - MAX_LONG} more (connwatch alerts)")
    return "\n".join([first, *long])


def _line(f: Finding) -> str:
    m = f.measurement
    line = describe(m.resource_key, m.attribute, m.value, f.limit, m.unit)
    return line.replace(" High, ", f" {severity_name(f.severity)}, ", 1)  # the alert's own severity


def _first_sentence(f: Finding) -> str:
    text = f.explanation.explanation if f.explanation is not None else ""
    head = text.split(". ", 1)[0].strip().rstrip(".")
    return (head + ".") if head else "see `connwatch alerts show`"


def label(f: Finding) -> str:
    """`8080 BacklogRejectsByPort`, `host ListenOverflows`, `10.0.0.9:5432 EphemeralPortUsage 10.0.0.5`."""
    m, res = f.measurement, f.measurement.resource
    if res.get("destination") is not None:
        text = f"{res['destination']} {m.attribute} {res.get('local_address') or ''}".strip()
    elif res.get("source") is not None:
        text = f"{res['source']}>{res.get('port') or '*'} {m.attribute}"
    elif res.get("port") is not None:
        text = f"{res['port']} {m.attribute}"
    else:
        text = f"host {m.attribute}"
    return text.replace("'", "").replace("=", ":")


def thresholds(f: Finding, rules: Sequence[Rule]) -> tuple[str, str]:
    """(warn, crit) from the rules in force for this measurement, in the measurement's mode."""
    group = [r for r in applicable(rules, f.measurement) if r.high is not None and r.mode == f.measurement.mode]
    if not group:  # the rules are unknown here: the deciding limit in its own field
        return (format_number(f.limit), "") if f.severity > 2 else ("", format_number(f.limit))
    warn = [r.high for r in group if r.severity > 2 and r.high is not None]
    crit = [r.high for r in group if r.severity <= 2 and r.high is not None]
    return (format_number(min(warn)) if warn else "", format_number(min(crit)) if crit else "")


def perfdata(findings: Sequence[Finding], rules: Sequence[Rule]) -> list[str]:
    out, seen = [], set()
    for f in sorted(findings, key=lambda f: not f.breached)[:MAX_PERFDATA]:
        name, n = label(f), 2
        while name in seen:  # never two values under one label
            name, n = f"{label(f)} #{n}", n + 1
        seen.add(name)
        uom = "%" if f.measurement.unit == "%" else ""  # per-interval values, not Nagios 'c' (continuous counters)
        warn, crit = thresholds(f, rules)
        out.append(f"'{name}'={format_number(f.measurement.value)}{uom};{warn};{crit};0")
    return out
