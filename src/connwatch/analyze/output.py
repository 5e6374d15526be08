"""Analysis -> JSON (the check contract plus `findings`, `unsupported`, `captures`), text, nagios."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from connwatch.analyze.hostfacts import ADVICE
from connwatch.analyze.outdict import analysis_dict, basis_of
from connwatch.analyze.report import Analysis
from connwatch.engine import STATUS_NAMES
from connwatch.findings import Alert, format_number

__all__ = ["analysis_dict", "render_nagios", "render_text"]
from connwatch.model import Listener, Snapshot


def render_text(a: Analysis, console: Console, verbose: bool = False) -> None:
    """Summary first, as `check` prints it (issue 13): one line per problem, then a short paragraph each
    (the full article with --verbose), then what was read, the listeners that matter, and the notes."""
    from connwatch.outputs.text import STATUS_STYLE, alert_block

    cur = a.result.current
    status = STATUS_NAMES[a.exit_code]
    alerts = a.result.step.raised
    console.print(Text(f"connwatch analyze {status}", style=STATUS_STYLE[status]) + Text(
        f" — {len(alerts)} problem(s), host {cur.host.hostname} ({a.platform}), "
        + ("counters cumulative since boot" + (f", uptime {a.uptime_s:.0f} s" if a.uptime_s else ", uptime unknown")
           if a.basis == "since boot" else f"rates over {a.interval_s:.0f} s between captures")))
    _summary_lines(alerts[:MAX_TEXT_ALERTS], console)
    for alert in alerts[:MAX_TEXT_ALERTS]:
        console.print()
        if verbose:
            console.print(alert_block(alert))
            continue
        _paragraph(alert, console)
    _left_out(console, len(alerts) - MAX_TEXT_ALERTS, "alert(s)")
    console.print()
    _captures(a, console)
    if cur.listeners:
        ports = {x.resource.get("port") for x in alerts}
        hot = [x for x in cur.listeners if x.port in ports or x.drops or (x.backlog and x.queue * 5 >= x.backlog * 4)]
        shown = _busiest(hot) if hot else tuple(cur.listeners[:CHECK_ROWS])
        console.print(_listeners(replace(cur, listeners=shown), lambda s: _table(s, console.width, bool(hot))))
        why = "rejecting or filling, most drops and fullest queues first" if hot else "first by port"
        _left_out(console, len(cur.listeners) - len(shown), f"listener(s) (shown: the {len(shown)} {why})")
    _rest(a, console)


def _summary_lines(alerts: Sequence[Alert], console: Console) -> None:
    from connwatch.outputs import summary
    from connwatch.outputs.text import STATUS_STYLE

    if not alerts:
        return
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column()
    for alert in alerts:
        style = STATUS_STYLE["CRITICAL" if alert.severity <= 2 else "WARNING"]
        grid.add_row(Text(summary.tag(alert), style=style), Text(summary.problem_line(alert).split(" ", 1)[1]))
    console.print()
    console.print(grid)


def _paragraph(alert: Alert, console: Console) -> None:
    from connwatch.outputs import summary

    pct = " %" if alert.unit == "%" else ""
    console.print(Text(f"{summary.place(alert)} — {alert.attribute} {format_number(alert.value)} {alert.unit}, "
                       f"limit {format_number(alert.limit)}{pct} ({basis_of(alert.detail, 'since boot')})",
                       style="bold"))
    for line in summary.paragraph(alert):
        console.print(Padding(Text(line), (0, 0, 0, 2)))
    console.print(Padding(Text("Full article: the same command with --verbose", style="dim"), (0, 0, 0, 2)))


def _captures(a: Analysis, console: Console) -> None:
    for cap in a.captures:
        formats = ", ".join(_file_label(f) for f in cap.files[:MAX_TEXT_NOTES])
        more = f" and {len(cap.files) - MAX_TEXT_NOTES} more" if len(cap.files) > MAX_TEXT_NOTES else ""
        console.print(Text(f"capture {cap.name}: {formats}{more}", style="dim"))
        for part in cap.skipped_parts[:MAX_TEXT_NOTES]:
            lines = part["lines"]
            console.print(Text(f"  skipped {part['path']} lines {lines[0]}-{lines[1]}: {part['reason']}",  # type: ignore[index]
                               style="dim"))
        _left_out(console, len(cap.skipped_parts) - MAX_TEXT_NOTES, "skipped part(s)")


def _table(snap: Snapshot, width: int, hot: bool) -> Table:
    from connwatch.outputs.text import listeners_table

    return listeners_table(snap, title="TCP listeners" + (" (those rejecting or filling)" if hot else ""),
                           width=width)


def _rest(a: Analysis, console: Console) -> None:
    cur = a.result.current
    if cur.sockets is not None and cur.sockets.total:
        states = ", ".join(f"{k} {v}" for k, v in sorted(cur.sockets.by_state.items(), key=lambda kv: -kv[1]))
        console.print(f"TCP sockets: {cur.sockets.total} ({states})")
    if a.unsupported:
        console.print(Text("Not supported by this capture:", style="bold"))
        by_reason: dict[str, list[str]] = {}
        for item in a.unsupported:  # one line per reason, the checks it stops listed together
            by_reason.setdefault(item["reason"], []).append(item["check"])
        for reason, checks in by_reason.items():
            _hanging(console, f"  {', '.join(checks)}: {reason}", 4)
    for note in cur.limitations[:MAX_TEXT_NOTES]:
        _hanging(console, f"note: {note}", 6, "dim")
    _left_out(console, len(cur.limitations) - MAX_TEXT_NOTES, "note(s)")
    for line in ADVICE.get(a.platform, []):
        _hanging(console, f"advice: {line}", 8, "cyan")


def _hanging(console: Console, text: str, indent: int, style: str = "") -> None:
    """A paragraph whose wrapped lines are indented (`note:` and `advice:` stay the left margin)."""
    head = len(text) - len(text.lstrip(" "))
    lines = Text(text.lstrip(" "), style=style).wrap(console, max(console.width - head - indent, 20))
    for i, line in enumerate(lines):
        console.print(Padding(line, (0, 0, 0, head + (indent if i else 0))))


MAX_TEXT_ALERTS = 50  # the text report stays readable at 3 a.m.; --format json has everything
MAX_TEXT_LISTENERS = 100
CHECK_ROWS = 10  # listeners shown when none is rejecting or filling (as `check`)
MAX_TEXT_NOTES = 30


def _busiest(listeners: Sequence[Listener]) -> tuple[Listener, ...]:
    """At most MAX_TEXT_LISTENERS listeners, those with drops and the fullest queues first, by port."""
    if len(listeners) <= MAX_TEXT_LISTENERS:
        return tuple(listeners)
    ranked = sorted(listeners, key=lambda x: (-(x.drops or 0), -(x.queue / x.backlog if x.backlog else x.queue)))
    return tuple(sorted(ranked[:MAX_TEXT_LISTENERS], key=lambda x: (x.port, x.family, x.address)))


def _left_out(console: Console, count: int, what: str) -> None:
    if count > 0:
        console.print(Text(f"... {count} more {what} not shown: --format json lists them all", style="bold"))


def _file_label(f: dict[str, Any]) -> str:
    where = str(f["path"]) + (f" lines {f['lines'][0]}-{f['lines'][1]}" if "lines" in f else "")
    return where + f" ({f['format']}" + (f", `{f['command']}`" if f.get("command") else "") + ")"


def _listeners(snap: Snapshot, table: Callable[[Snapshot], Table]) -> Table:
    """The live listener table; owners known only by name (Windows -b) are shown without a pid."""
    named = tuple(replace(x, owner=None) if x.owner is not None and x.owner.pid < 0 else x for x in snap.listeners)
    out = table(replace(snap, listeners=named))
    names = {x.endpoint: x.owner.command for x in snap.listeners if x.owner is not None and x.owner.pid < 0}
    if names:
        out.caption = "owners by name only (netstat -b): " + ", ".join(
            f"{k} {v}" for k, v in list(names.items())[:12]) + (" …" if len(names) > 12 else "")
    return out


def render_nagios(a: Analysis) -> str:
    from connwatch.outputs.nagios import render

    status = STATUS_NAMES[a.exit_code]
    if status == a.result.status:
        return render(a.result)
    return render(a.result, status, f"{len(a.errors)} unreadable file(s); ")
