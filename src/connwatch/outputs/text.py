"""Human output with rich: listener tables and alerts in the layout of seed 000."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from connwatch.attributes.backlog import drop_deltas, fill_percent
from connwatch.engine import CheckResult
from connwatch.findings import Alert
from connwatch.model import Listener, Snapshot

STATUS_STYLE = {"OK": "bold green", "WARNING": "bold yellow", "CRITICAL": "bold red", "UNKNOWN": "bold magenta"}


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).astimezone().strftime("%a %d-%b-%Y %H:%M:%S %Z").upper()


def short_when(ts: float, now: float) -> str:
    """'21:32:18 (5 s ago)' today, '2026-11-20 08:00 (2.5 days ago)' otherwise."""
    from connwatch.explain.backlog import age_words

    stamp = datetime.fromtimestamp(ts).astimezone()
    shown = stamp.strftime("%H:%M:%S") if now - ts < 86400 else stamp.strftime("%Y-%m-%d %H:%M")
    return f"{shown} ({age_words(max(now - ts, 0))} ago)"


def fill_bar(lst: Listener, width: int = 10) -> Text:
    fill = fill_percent(lst)
    if fill is None:
        return Text("n/a", style="dim")
    blocks = min(width, round(width * fill / 100))
    style = "red" if fill > 100 else "yellow" if fill >= 80 else "green"
    return Text("█" * blocks + "·" * (width - blocks), style=style) + Text(f" {fill:.0f}%")


def listeners_table(snap: Snapshot, deltas: dict[tuple[int, int, int, str], int] | None = None,
                    title: str = "TCP listeners") -> Table:
    table = Table(title=title, title_justify="left", expand=False)
    for col, just in (("Port", "right"), ("Address", "left"), ("Queue/Backlog", "right"), ("Fill", "left"),
                      ("Drops", "right"), ("Owner", "left"), ("Since", "left")):
        table.add_column(col, justify=just, no_wrap=col in ("Port", "Fill", "Queue/Backlog"))  # type: ignore[arg-type]
    for lst in snap.listeners:
        backlog = "?" if lst.backlog is None else str(lst.backlog)
        drops = "n/a" if lst.drops is None else str(lst.drops)
        if deltas is not None and deltas.get(lst.identity):
            drops = f"[red]{drops} (+{deltas[lst.identity]})[/red]"
        owner = lst.owner
        who = "[dim]not visible[/dim]" if owner is None else f"{owner.command} [dim]pid {owner.pid}[/dim]"
        if owner is not None and owner.open_fds is not None and owner.fd_limit:
            who += f" [dim]fds {owner.open_fds}/{owner.fd_limit}[/dim]"
        since = "?" if owner is None or owner.started_at is None else f"≤ {short_when(owner.started_at, snap.taken_at)}"
        table.add_row(str(lst.port), lst.address, f"{lst.queue}/{backlog}", fill_bar(lst), drops, who, since)
    return table


def alert_block(a: Alert) -> RenderableType:
    """An alert in the layout of seed 000."""
    lines = [
        ("Alert Description", [a.description]),
        ("Alert History", [
            f"Created at .................. {when(a.created_at)}",
            f"Last Updated at ............. {when(a.last_updated)}",
            f"Number of occurrences ....... {a.occurrences}",
            f"Last occurred at ............ {when(a.last_occurred)}",
        ] + ([f"Cleared at .................. {when(a.cleared_at)}"] if a.cleared_at else [])),
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


def render_check(result: CheckResult, console: Console) -> None:
    status = result.status
    alerts = sorted(result.step.raised + result.step.updated, key=lambda a: (a.severity, a.resource_key))
    parts = result.parts or (result,)
    spaces = f", {len(parts)} network namespaces" if len(parts) > 1 else ""
    console.print(Text(f"connwatch {status}", style=STATUS_STYLE[status]) + Text(
        f" — {len(alerts)} alert(s), {sum(len(p.current.listeners) for p in parts)} listeners{spaces}, host "
        f"{result.current.host.hostname}"))
    console.print()
    for a in alerts:
        console.print(alert_block(a))
    for a in result.step.cleared:
        console.print(Text(f"cleared: {a.description}", style="green"))
    for a in result.step.still_active_clean:
        console.print(Text(f"clearing ({a.clean_samples}/{a.clear_after} clean samples): {a.description}",
                           style="yellow"))
    console.print(listeners_table(result.current, drop_deltas(result.previous, result.current)))
    for part in parts[1:]:  # other namespaces: only those with something to say
        ns = part.current.netns
        if ns is not None and (part.step.raised or part.step.updated):
            console.print(listeners_table(part.current, drop_deltas(part.previous, part.current),
                                          title=f"TCP listeners in {ns.label}"))
    for note in dict.fromkeys(x for part in parts for x in part.current.limitations):
        console.print(Text(f"note: {note}", style="dim"))
    if result.store_error:
        console.print(Text(f"warning: alert history not kept: {result.store_error}", style="yellow"))


def alerts_table(alerts: list[Alert]) -> Table:
    table = Table(title="Alerts", title_justify="left")
    for col in ("ID", "State", "Sev", "Description", "Occurrences", "Last occurred"):
        table.add_column(col)
    for a in alerts:
        table.add_row(str(a.id), a.state, f"{a.severity} {a.severity_name}", a.description,
                      str(a.occurrences), when(a.last_occurred))
    return table
