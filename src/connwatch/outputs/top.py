"""The frame of `connwatch top`: pure, from what was sampled (TopData) and what the user chose (TopView) to
one renderable that fits width x height exactly (commands/top.py samples, reads keys and draws it).

Panes: alerts (active, with age), listeners (queue/backlog bar, rejects per second, refreshed every
second), busiest destinations (port usage and forecast) and heaviest sources (refreshed every full sample).
The overview shows all four, shared by height; Tab or 1-4 shows one pane on the whole screen."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from connwatch.findings import Alert
from connwatch.model import Listener
from connwatch.outputs.fit import Cell, Col, fit_table

PANES = ("all", "listeners", "destinations", "sources", "alerts")
SORTS: dict[str, tuple[str, ...]] = {
    "listeners": ("rejects/s", "fill", "drops", "port"),
    "destinations": ("usage", "TW/s", "held"),
    "sources": ("conns", "half-open", "port"),
    "alerts": ("severity", "age"),
}
HELP = "q quit  p pause  Tab/1-4 pane  s sort  f port  n namespace  c clear"


@dataclass(frozen=True, slots=True)
class ListenerRow:
    namespace: str  # '' for connwatch's own namespace
    listener: Listener
    rejects_per_s: float | None  # drops delta / seconds since the previous poll; None on the first poll


@dataclass(frozen=True, slots=True)
class TopData:
    host: str
    taken_at: float  # last listener poll
    listeners: tuple[ListenerRow, ...] = ()
    destinations: tuple[dict[str, Any], ...] = ()  # rows of `connwatch destinations --format json`, + namespace
    sources: tuple[dict[str, Any], ...] = ()  # rows of `connwatch sources --format json`, + namespace
    alerts: tuple[Alert, ...] = ()
    full_at: float | None = None  # last full sample
    full_ms: float | None = None
    interval_s: float = 5.0
    notes: tuple[str, ...] = ()


@dataclass(slots=True)
class TopView:
    pane: str = "all"
    sort: dict[str, int] = field(default_factory=dict)
    port: int | None = None
    namespace: str | None = None
    paused: bool = False
    prompt: str | None = None  # "port" or "namespace" while the user types
    typed: str = ""

    def sort_key(self, pane: str) -> str:
        return SORTS[pane][self.sort.get(pane, 0) % len(SORTS[pane])]


def _ns_ok(view: TopView, namespace: str) -> bool:
    return view.namespace is None or view.namespace.lower() in (namespace or "own").lower()


def _listeners(data: TopData, view: TopView) -> list[ListenerRow]:
    rows = [r for r in data.listeners if (view.port is None or r.listener.port == view.port)
            and _ns_ok(view, r.namespace)]
    key = view.sort_key("listeners")
    order: dict[str, Callable[[ListenerRow], Any]] = {
        "rejects/s": lambda r: (-(r.rejects_per_s or 0), -_fill(r.listener), r.listener.port),
        "fill": lambda r: (-_fill(r.listener), r.listener.port),
        "drops": lambda r: (-(r.listener.drops or 0), r.listener.port),
        "port": lambda r: (r.listener.port, r.listener.address),
    }
    return sorted(rows, key=order[key])


def _fill(lst: Listener) -> float:
    """As attributes.backlog.fill_percent (not imported: the first frame comes before the rules load)."""
    return 0.0 if lst.backlog is None else 100.0 * lst.queue / max(lst.backlog, 1)


def _bar(lst: Listener, width: int) -> Text:
    if lst.backlog is None:
        return Text("n/a", style="dim")
    fill = _fill(lst)
    blocks = min(width, round(width * fill / 100))
    style = "red" if fill > 100 else "yellow" if fill >= 80 else "green"
    return Text("█" * blocks + "·" * (width - blocks), style=style) + Text(f" {fill:.0f}%")


LISTENER_COLS = (Col("Port", "right"), Col("Address", drop=4, shrink=True), Col("Queue/Backlog", "right"),
                 Col("Fill"), Col("Rejects/s", "right"), Col("Drops", "right", drop=3),
                 Col("Owner", drop=2, shrink=True), Col("Namespace", drop=5, shrink=True))


def listener_table(rows: Sequence[ListenerRow], width: int, limit: int) -> RenderableType:
    cells: list[list[Cell]] = []
    for r in rows[:limit]:
        lst = r.listener
        rate = "-" if r.rejects_per_s is None else f"{r.rejects_per_s:.1f}"
        if r.rejects_per_s:
            rate = f"[bold red]{rate}[/bold red]"
        owner = "" if lst.owner is None else f"{lst.owner.command} [dim]{lst.owner.pid}[/dim]"
        cells.append([str(lst.port), lst.address, f"{lst.queue}/{'?' if lst.backlog is None else lst.backlog}",
                      _bar(lst, 10 if width >= 120 else 5), rate, "n/a" if lst.drops is None else str(lst.drops),
                      owner, r.namespace])
    return fit_table(LISTENER_COLS, cells, width)


def _destinations(data: TopData, view: TopView) -> list[dict[str, Any]]:
    rows = [r for r in data.destinations if (view.port is None or r.get("remote_port") == view.port)
            and _ns_ok(view, r.get("namespace", ""))]
    key = view.sort_key("destinations")
    order: dict[str, Callable[[dict[str, Any]], Any]] = {
        "usage": lambda r: -(r.get("percent") or 0),
        "TW/s": lambda r: -((r.get("forecast") or {}).get("rate_per_s") or 0),
        "held": lambda r: -r.get("held", 0),
    }
    return sorted(rows, key=order[key])


def destination_table(rows: Sequence[dict[str, Any]], width: int, limit: int) -> RenderableType:
    from connwatch.reports.destinations import DEST_COLS, table_row

    return fit_table(DEST_COLS, [table_row(r, width, one_line=True) for r in rows[:limit]], width)


SOURCE_COLS = (Col("Source", shrink=True), Col("Port", "right"), Col("Conns", "right"),
               Col("Limit", "right", drop=3), Col("Half-open", "right", drop=2),
               Col("States", drop=4, shrink=True), Col("Namespace", drop=5, shrink=True))


def _sources(data: TopData, view: TopView) -> list[dict[str, Any]]:
    rows = [r for r in data.sources if (view.port is None or r.get("port") == view.port)
            and _ns_ok(view, r.get("namespace", ""))]
    key = view.sort_key("sources")
    order: dict[str, Callable[[dict[str, Any]], Any]] = {
        "conns": lambda r: -r["value"], "half-open": lambda r: -r["half_open"], "port": lambda r: r["port"]}
    return sorted(rows, key=order[key])


def source_table(rows: Sequence[dict[str, Any]], width: int, limit: int) -> RenderableType:
    cells: list[list[Cell]] = []
    for r in rows[:limit]:
        over = r["limit"] is not None and r["value"] > r["limit"]
        states = " ".join(f"{k} {v}" for k, v in sorted(r["states"].items(), key=lambda kv: -kv[1]))
        cells.append([r["source"], str(r["port"]), f"[red]{r['value']}[/red]" if over else str(r["value"]),
                      "-" if r["limit"] is None else f"{r['limit']:g}", str(r["half_open"]), states,
                      r.get("namespace", "")])
    return fit_table(SOURCE_COLS, cells, width)


def _alerts(data: TopData, view: TopView) -> list[Alert]:
    rows = [a for a in data.alerts if (view.port is None or a.resource.get("port") == view.port)
            and _ns_ok(view, str(a.resource.get("netns") or ""))]
    if view.sort_key("alerts") == "age":
        return sorted(rows, key=lambda a: a.created_at)
    return sorted(rows, key=lambda a: (a.severity, a.created_at))


def alert_lines(rows: Sequence[Alert], now: float, limit: int) -> list[Text]:
    if not rows:
        return []
    from connwatch.outputs.summary import summary_line
    from connwatch.timewords import age_words

    out = []
    for a in rows[:limit]:
        words = summary_line(a, now).rsplit("; since ", 1)[0]
        style = "bold red" if a.severity <= 2 else "yellow"
        line = Text(words.split(" ", 1)[0], style=style) + Text(" " + words.split(" ", 1)[1])
        out.append(line + Text(f" · for {age_words(max(now - a.created_at, 0))}", style="dim"))
    return out


def _title(name: str, view: TopView, shown: int, total: int) -> Text:
    focus = view.pane == name
    sort = f" sort: {view.sort_key(name)}" if name in SORTS else ""
    return Text(f"{name.capitalize()} ({shown} of {total}){sort}",
                style="bold reverse" if focus else "bold")


def frame(data: TopData, view: TopView, width: int, height: int) -> RenderableType:
    """The whole screen. Every line is cut to `width`; the frame has at most `height` lines."""
    import time

    parts: list[RenderableType] = [_header(data, view, time.strftime("%H:%M:%S", time.localtime(data.taken_at)))]
    budget = max(height - 2, 4)  # header and footer lines
    panes = PANES[1:] if view.pane == "all" else (view.pane,)
    lists: dict[str, Sequence[Any]] = {"listeners": _listeners(data, view), "destinations": _destinations(data, view),
                                       "sources": _sources(data, view), "alerts": _alerts(data, view)}
    rows = _share(panes, lists, budget)
    for name in panes:
        items, n = lists[name], rows[name]
        parts.append(_title(name, view, min(len(items), n), len(items)))
        if name == "alerts":
            parts.extend(alert_lines(items, data.taken_at, n) or [Text("  none active", style="green")])
        elif not items:
            parts.append(Text("  none" + (" (first full sample pending)" if data.full_at is None
                                          and name != "listeners" else ""), style="dim"))
        else:
            parts.append(listener_table(items, width, n) if name == "listeners" else destination_table(
                items, width, n) if name == "destinations" else source_table(items, width, n))
    body = Group(*parts)
    return _Cropped(body, height - 1, _footer(view, data))


def _share(panes: Sequence[str], lists: dict[str, Sequence[Any]], budget: int) -> dict[str, int]:
    """Rows per pane: alerts take what they need (at most 4 in the overview); the tables share the rest
    round-robin, none taking more rows than it has, so an empty pane leaves its room to the others."""
    if len(panes) == 1:
        name = panes[0]
        return {name: max(budget - (1 if name == "alerts" else 3), 1)}
    alloc = {"alerts": min(max(len(lists["alerts"]), 1), 4)}
    tables = ("listeners", "destinations", "sources")
    left = budget - alloc["alerts"] - 1 - sum(3 if lists[n] else 1 for n in tables)
    alloc.update({n: 1 if lists[n] else 0 for n in tables})
    left -= sum(alloc[n] for n in tables)
    while left > 0 and any(alloc[n] < len(lists[n]) for n in tables):
        for n in tables:
            if left > 0 and alloc[n] < len(lists[n]):
                alloc[n] += 1
                left -= 1
    return {n: max(v, 1) for n, v in alloc.items()}


def _header(data: TopData, view: TopView, clock: str) -> Text:
    full = "full sample pending" if data.full_at is None else \
        f"full every {data.interval_s:g} s ({data.full_ms or 0:.0f} ms)"
    head = Text(f"connwatch top — {data.host} {clock} · {full}", style="bold")
    filters = " ".join(x for x in (f"port={view.port}" if view.port is not None else "",
                                   f"ns~{view.namespace}" if view.namespace else "") if x)
    if filters:
        head += Text(f" · {filters}", style="cyan")
    if view.paused:
        head += Text(" PAUSED", style="bold yellow reverse")
    return head


def _footer(view: TopView, data: TopData) -> Text:
    if view.prompt is not None:
        return Text(f"{view.prompt} (Enter applies, Esc cancels): {view.typed}█", style="reverse")
    note = f"  {data.notes[0]}" if data.notes else ""
    return Text(HELP + note, style="dim")


class _Cropped:
    """A body cut to `lines` lines (each line cut to the width, never wrapped), then the footer."""

    def __init__(self, body: RenderableType, lines: int, footer: Text) -> None:
        self.body, self.lines, self.footer = body, lines, footer

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.segment import Segment

        width = options.max_width
        rendered = console.render_lines(self.body, options.update(height=None, no_wrap=True, overflow="crop"),
                                        pad=False)
        shown = rendered[:self.lines]
        for line in shown:
            yield from Segment.adjust_line_length(line, width)
            yield Segment.line()
        for _ in range(self.lines - len(shown)):
            yield Segment(" " * width)
            yield Segment.line()
        footer = self.footer.copy()
        footer.truncate(width, overflow="ellipsis", pad=True)
        footer.end = ""  # the last line of the screen: a newline there would scroll it
        yield footer
