"""`connwatch listeners` without rich where nothing is styled: the table piped (plain text) and the JSON.

Thousands of listeners: the cells are made as the plain strings rich would show (outputs/text.py
listeners_cells makes the styled ones; tests/unit/test_listeners_out.py holds them equal), laid out by
outputs/fit.py; the JSON rows are columns (outputs/fastjson.py writes json.dumps(indent=2)'s text of
them; dataclasses.asdict deep-copied each listener's owner).
"""

from __future__ import annotations

import operator
from collections.abc import Callable

from connwatch.model import Listener, Process, Snapshot, fill_percent
from connwatch.outputs.fit import Cell, Col, Styled, layout, plain_lines
from connwatch.timewords import age_words

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:  # (the JSON's: the text tables load no json)
    from typing import Any

    from connwatch.outputs.fastjson import Table

LISTENER_COLS = (Col("Port", "right"), Col("Address", drop=5, shrink=True), Col("Queue/Backlog", "right"),
                 Col("Fill", drop=4), Col("Drops", "right"), Col("Rejects/s", "right", drop=2),
                 Col("Owner", drop=3, shrink=True), Col("FDs", "right", drop=6),
                 Col("Owner started", drop=7))
PLAIN_COLS = tuple(c for c in LISTENER_COLS if c.header != "Rejects/s")  # no deltas: no rate column
NOT_VISIBLE_TEXT = "not visible"


def short_when(ts: float, now: float) -> str:
    """'21:32:18 (5 s ago)' today, '2026-11-20 08:00 (2.5 days ago)' otherwise."""
    from datetime import datetime  # (the JSON has no times: it loads no datetime)

    stamp = datetime.fromtimestamp(ts).astimezone()
    shown = stamp.strftime("%H:%M:%S") if now - ts < 86400 else stamp.strftime("%Y-%m-%d %H:%M")
    return f"{shown} ({age_words(max(now - ts, 0))} ago)"


def fill_parts(lst: Listener, width: int) -> tuple[tuple[str, str], ...]:
    """The fill bar's pieces and their styles ("n/a" without a backlog)."""
    fill = fill_percent(lst)
    if fill is None:
        return (("n/a", "dim"),)
    blocks = min(width, round(width * fill / 100))
    style = "red" if fill > 100 else "yellow" if fill >= 80 else "green"
    return (("█" * blocks + "·" * (width - blocks), style), (f" {fill:.0f}%", ""))


def fill_cell(lst: Listener, width: int = 10) -> Styled:
    return Styled(fill_parts(lst, width))


NOT_VISIBLE = Styled(((NOT_VISIBLE_TEXT, "dim"),))


def listeners_cells(snap: Snapshot, deltas: dict[tuple[int, int, int, str], int] | None = None, width: int = 120,
                    interval_s: float | None = None) -> tuple[tuple[Col, ...], list[list[Cell]]]:
    """listeners_table's columns and cells (outputs.fit.print_fitted prints thousands of them fast)."""
    rows: list[list[Cell]] = []
    memo: dict[object, Cell] = {}  # cells many listeners share (an owner, its start, an address, a fill)
    bar = 10 if width >= 120 else 4
    for lst in snap.listeners:
        backlog = "?" if lst.backlog is None else str(lst.backlog)
        drops: Cell = "n/a" if lst.drops is None else str(lst.drops)
        delta = (deltas or {}).get(lst.identity)
        if delta:
            drops = Styled(((f"{drops} (+{delta})", "red"),))
        rate = "-" if not delta or not interval_s else f"{delta / interval_s:.1f}"
        owner = lst.owner
        fds = "" if owner is None or owner.open_fds is None or not owner.fd_limit else \
            f"{owner.open_fds}/{owner.fd_limit}"
        address = memo.get(lst.address) or memo.setdefault(lst.address, Styled(((lst.address, ""),)))
        fill = memo.get((lst.queue, lst.backlog)) or memo.setdefault((lst.queue, lst.backlog), fill_cell(lst, bar))
        rows.append([str(lst.port), address, f"{lst.queue}/{backlog}", fill, drops, rate, _owner_cell(memo, owner),
                     fds, _started_cell(memo, owner, snap.taken_at)])
    cols = LISTENER_COLS if deltas is not None else tuple(c for c in LISTENER_COLS if c.header != "Rejects/s")
    if deltas is None:
        rows = [r[:5] + r[6:] for r in rows]
    return cols, rows


def _shared(memo: dict[object, Cell], key: object, make: Callable[[], Cell]) -> Cell:
    found = memo.get(key)
    if found is None:
        found = memo[key] = make()
    return found


def _owner_cell(memo: dict[object, Cell], owner: Process | None) -> Cell:
    if owner is None:
        return NOT_VISIBLE
    return _shared(memo, ("owner", owner.pid, owner.command),
                   lambda: Styled(((owner.command, ""), (" ", ""), (str(owner.pid), "dim"))))


def _started_cell(memo: dict[object, Cell], owner: Process | None, now: float) -> Cell:
    """"Owner started": the owner's start time, worded once per owner."""
    if owner is None or owner.started_at is None:
        return "?"
    at = owner.started_at
    return _shared(memo, ("started", at), lambda: Styled(((short_when(at, now), ""),)))


def plain_rows(snap: Snapshot, width: int) -> list[list[str]]:
    """What rich shows of each cell of outputs.text.listeners_cells(snap, width=width) (no deltas)."""
    bar = 10 if width >= 120 else 4
    fills: dict[tuple[int, int | None], str] = {}
    owners: dict[int, tuple[str, str, str]] = {}  # id(owner) -> owner, fds, started
    keep: list[Process] = []  # (the owners whose ids key `owners`)
    rows = []
    for lst in snap.listeners:
        fkey = (lst.queue, lst.backlog)
        fill = fills.get(fkey)
        if fill is None:
            fill = fills[fkey] = "".join(p for p, _ in fill_parts(lst, bar))
        owner = lst.owner
        words = owners.get(id(owner))
        if words is None:
            words = owners[id(owner)] = _owner_words(owner, snap.taken_at)
            keep.append(owner)  # type: ignore[arg-type]
        rows.append([str(lst.port), lst.address, f"{lst.queue}/{'?' if lst.backlog is None else lst.backlog}", fill,
                     "n/a" if lst.drops is None else str(lst.drops), *words])
    return rows


def _owner_words(owner: Process | None, now: float) -> tuple[str, str, str]:
    if owner is None:
        return NOT_VISIBLE_TEXT, "", "?"
    fds = "" if owner.open_fds is None or not owner.fd_limit else f"{owner.open_fds}/{owner.fd_limit}"
    started = "?" if owner.started_at is None else short_when(owner.started_at, now)
    return f"{owner.command} {owner.pid}", fds, started


def plain_table(snap: Snapshot, width: int, title: str | None) -> list[str] | None:
    """The lines outputs.fit.print_fitted prints for the listeners table off a terminal; None where rich
    must draw it (no listeners, a table or title that does not fit, a cell of several lines)."""
    if not snap.listeners:
        return None
    plains = plain_rows(snap, width)
    return plain_lines(PLAIN_COLS, layout(PLAIN_COLS, plains, width), plains, title, width)


def terminal_table(snap: Snapshot, width: int, height: int, title: str | None) -> list[str] | None:
    """The lines outputs.fit.print_fitted_plains prints for the listeners table on a colour terminal of
    `width` x `height` (outputs/ansi.py dimensions): rich's screenful (height - 4 rows), written without
    rich (outputs/ansi.py), then the plain rest; None where rich must draw it."""
    from connwatch.outputs.ansi import table_lines
    from connwatch.record import replace

    if not snap.listeners:
        return None
    plains = plain_rows(snap, width)
    lay = layout(PLAIN_COLS, plains, width)
    shown = max(1, height - 4)
    rest: list[str] = []
    if len(plains) > shown:
        more = plain_lines(PLAIN_COLS, lay, plains[shown:], title, width)
        if more is None:
            return None
        rest = more[(title is not None) + 2:]  # (title, header and rule: the screenful's)
    head = listeners_cells(replace(snap, listeners=snap.listeners[:shown]), width=width)[1]
    top = table_lines(PLAIN_COLS, lay, head, title, width)
    return None if top is None else top + rest


def listener_rows(snap: Snapshot, netns: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """outputs.jsonout.listener_row of each listener (plus `netns`)."""
    return listener_table(snap, netns).rows()


def listener_table(snap: Snapshot, netns: dict[str, Any] | None = None) -> Table:
    """listener_rows as columns: the Listener's fields (its owner as dataclasses.asdict makes it, one dict per
    owner shared by its listeners), endpoint, fill, drops_delta (None) and `netns` when given."""
    import dataclasses  # (the JSON's: the text tables load neither)

    from connwatch.outputs.fastjson import Table

    lst = snap.listeners
    names = tuple(f.name for f in dataclasses.fields(Listener))
    columns: list[list[Any]] = [list(map(operator.attrgetter(name), lst)) for name in names]
    at = names.index("owner")
    owners = {key: dataclasses.asdict(o) for key, o in {id(o): o for o in columns[at] if o is not None}.items()}
    columns[at] = [None if o is None else owners[id(o)] for o in columns[at]]
    fills: dict[tuple[int, int | None], float | None] = {}
    for x in lst:
        if (x.queue, x.backlog) not in fills:
            fills[(x.queue, x.backlog)] = fill_percent(x)
    columns += [[x.endpoint for x in lst], [fills[(x.queue, x.backlog)] for x in lst], [None] * len(lst)]
    keys = (*names, "endpoint", "fill", "drops_delta")
    if netns is not None:
        keys, columns = (*keys, "netns"), [*columns, [netns] * len(lst)]
    return Table([(keys, columns)])
