"""Human output with rich: listener tables and alerts in the layout of seed 000."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from connwatch.attributes.backlog import drop_deltas
from connwatch.engine import CheckResult
from connwatch.findings import Alert, format_number
from connwatch.model import Listener, Snapshot, fill_percent
from connwatch.outputs.check_plain import CHECK_ROWS
from connwatch.outputs.fit import fit_table, print_fitted
from connwatch.outputs.listeners import LISTENER_COLS, NOT_VISIBLE, fill_cell, listeners_cells, short_when
from connwatch.record import replace

# (re-exported: their home is outputs/listeners.py, which draws `connwatch listeners` without the rules)
__all__ = ["LISTENER_COLS", "NOT_VISIBLE", "fill_cell", "listeners_cells", "short_when"]

STATUS_STYLE = {"OK": "bold green", "WARNING": "bold yellow", "CRITICAL": "bold red", "UNKNOWN": "bold magenta"}


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).astimezone().strftime("%a %d-%b-%Y %H:%M:%S %Z").upper()


def fill_bar(lst: Listener, width: int = 10) -> Text:
    return fill_cell(lst, width).text()


def listeners_table(snap: Snapshot, deltas: dict[tuple[int, int, int, str], int] | None = None,
                    title: str = "TCP listeners", width: int = 120,
                    interval_s: float | None = None) -> Table:
    """Port, queue/backlog and drops always; the rest as the width allows. "Owner started" is the owner
    process's start time: the listener opened then or later (an upper bound of its age)."""
    return fit_table(*listeners_cells(snap, deltas, width, interval_s), width, title)


def alert_block(a: Alert) -> RenderableType:
    """An alert in the layout of seed 000."""
    lines = [
        ("Alert Description", [a.description]),
        ("Alert History", [
            f"Created at .................. {when(a.created_at)}",
            f"Last Updated at ............. {when(a.last_updated)}",
            f"Number of occurrences ....... {a.occurrences}",
            f"Last occurred at ............ {when(a.last_occurred)}",
        ] + ([f"Cleared at .................. {when(a.cleared_at)}"] if a.cleared_at else [])
          + ([f"Cleared because ............. {a.detail['cleared_because']}"]
             if a.detail.get("cleared_because") else [])),
        ("Alert Identification", [
            f"Alert ID ............ {a.id if a.id is not None else '-'}",
            f"Severity ............ {a.severity} ({a.severity_name})",
            f"State ............... {a.state}",
            f"System Name ......... {a.system_name}",
            f"Alert Class ......... {a.alert_class}",
            f"Resource ............ {a.resource_key} {a.owner}".rstrip(),
        ]),
        ("Alert Text", [a.text]), ("Alert Explanation", [a.explanation]), ("User Action", [a.action]),
    ]
    parts: list[RenderableType] = []
    for title, body in lines:
        parts.append(Text(title, style="bold"))
        parts.extend(Padding(Text(line), (0, 0, 0, 2)) for line in body if line)
        parts.append(Text(""))
    return Group(*parts)


# CHECK_ROWS: listeners shown by check (outputs/check_plain.py); `connwatch listeners` shows them all


def render_check(result: CheckResult, console: Console, verbose: bool = False) -> None:
    """Summary first: one line per problem, then a short paragraph each (the full article with --verbose),
    then the listeners that matter. No remedy script: the paragraph names the command that prints it."""
    from connwatch.outputs import summary

    status = result.status
    alerts = sorted(result.step.raised + result.step.updated, key=lambda a: (a.severity, a.resource_key))
    parts = result.parts or (result,)
    now, interval = result.current.taken_at, result.current.taken_at - result.previous.taken_at
    spaces = f", {len(parts)} network namespaces" if len(parts) > 1 else ""
    console.print(Text(f"connwatch {status}", style=STATUS_STYLE[status]) + Text(
        f" — {len(alerts)} problem(s), {sum(len(p.current.listeners) for p in parts)} listeners{spaces}, host "
        f"{result.current.host.hostname}, {summary.clock_words(now, now)}"))
    lines = [(summary.tag(a), summary.summary_line(a, now).split(" ", 1)[1], STATUS_STYLE[
        "CRITICAL" if a.severity <= 2 else "WARNING"]) for a in alerts]
    lines += [("OK", summary.clearing_line(a, interval).split(" ", 1)[1], "green")
              for a in result.step.still_active_clean]
    lines += [("OK", summary.cleared_line(a, now).split(" ", 1)[1], "green") for a in result.step.cleared]
    if lines:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column()
        for label, text, style in lines:
            grid.add_row(Text(label, style=style), Text(text))
        console.print()
        console.print(grid)
    for a in alerts:
        console.print()
        if verbose:
            console.print(alert_block(a))
            continue
        pct = " %" if a.unit == "%" else ""
        console.print(Text(f"{summary.place(a)} — alert {a.id if a.id is not None else '-'}: {a.attribute} "
                           f"{format_number(a.value)} {a.unit}, limit {format_number(a.limit)}{pct}", style="bold"))
        for line in summary.paragraph(a):
            console.print(Padding(Text(line), (0, 0, 0, 2)))
        full = f"connwatch alerts show {a.id}" if a.id is not None else "connwatch check --verbose"
        console.print(Padding(Text(f"Full article: {full}", style="dim"), (0, 0, 0, 2)))
    console.print()
    _check_listeners(result, alerts, console, interval)
    for note in dict.fromkeys(x for part in parts for x in part.current.limitations):
        console.print(Text(f"note: {note}", style="dim"))
    if result.store_error:
        console.print(Text(f"warning: alert history not kept: {result.store_error}", style="yellow"))


def _check_listeners(result: CheckResult, alerts: list[Alert], console: Console, interval: float) -> None:
    """The listeners that matter (alerted ports, drops, a queue ≥ 80 %), at most CHECK_ROWS per namespace."""
    ports = {a.resource.get("port") for a in alerts}
    for i, part in enumerate(result.parts or (result,)):
        snap, deltas = part.current, drop_deltas(part.previous, part.current)
        if i and not (part.step.raised or part.step.updated):
            continue  # other namespaces: only those with something to say
        hot = [x for x in snap.listeners if x.port in ports or deltas.get(x.identity) or (fill_percent(x) or 0) >= 80]
        shown = (hot or list(snap.listeners))[:CHECK_ROWS]
        ns = snap.netns
        title = "TCP listeners" + (f" in {ns.label}" if i and ns is not None else "")
        if hot and len(snap.listeners) > len(shown):
            title += " (those rejecting or filling)"
        if not shown:
            continue
        # Off a terminal (Nagios, cron, a pipe) the table's plain lines (fit.plain_lines); on one rich draws
        # every row (screen), as before: rich drew ~40 ms of the 50 ms a piped check's text took (issue 17)
        cols, rows = listeners_cells(replace(snap, listeners=tuple(shown)), deltas, console.width, interval)
        print_fitted(console, cols, rows, title, screen=len(rows))
        if len(snap.listeners) > len(shown):
            console.print(Text(f"… and {len(snap.listeners) - len(shown)} more listener(s): connwatch listeners",
                               style="dim"))


def alerts_table(alerts: list[Alert]) -> Table:
    table = Table(title="Alerts", title_justify="left")
    for col in ("ID", "State", "Sev", "Description", "Occurrences", "Last occurred"):
        table.add_column(col)
    for a in alerts:
        table.add_row(str(a.id), a.state, f"{a.severity} {a.severity_name}", a.description,
                      str(a.occurrences), when(a.last_occurred))
    return table
