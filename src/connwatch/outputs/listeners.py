"""`connwatch listeners` without rich where nothing is styled: the table piped (plain text) and the JSON.

Thousands of listeners: the cells are made as the plain strings rich would show (outputs/text.py
listeners_cells makes the styled ones; tests/unit/test_listeners_out.py holds them equal), laid out by
outputs/fit.py, and the JSON is written by a flat encoder that gives json.dumps(indent=2)'s text
(falling back to json.dumps for any value it does not cover) — json's own encoder runs in Python
when it indents, and dataclasses.asdict deep-copies each listener's owner.
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
from collections.abc import Callable
from datetime import datetime
from typing import Any

from connwatch.model import Listener, Process, Snapshot, fill_percent
from connwatch.outputs.fit import Cell, Col, Styled, layout, plain_lines
from connwatch.timewords import age_words

LISTENER_COLS = (Col("Port", "right"), Col("Address", drop=5, shrink=True), Col("Queue/Backlog", "right"),
                 Col("Fill", drop=4), Col("Drops", "right"), Col("Rejects/s", "right", drop=2),
                 Col("Owner", drop=3, shrink=True), Col("FDs", "right", drop=6),
                 Col("Owner started", drop=7))
PLAIN_COLS = tuple(c for c in LISTENER_COLS if c.header != "Rejects/s")  # no deltas: no rate column
NOT_VISIBLE_TEXT = "not visible"


def short_when(ts: float, now: float) -> str:
    """'21:32:18 (5 s ago)' today, '2026-11-20 08:00 (2.5 days ago)' otherwise."""
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


def listener_rows(snap: Snapshot, netns: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """outputs.jsonout.listener_row of each listener (plus `netns`), each owner's dict made once and
    shared by its listeners."""
    names = tuple(f.name for f in dataclasses.fields(Listener))
    values = operator.attrgetter(*names)
    at_owner = names.index("owner")
    owners: dict[int, tuple[Process, dict[str, Any]]] = {}
    rows = []
    for lst in snap.listeners:
        d = dict(zip(names, values(lst), strict=True))
        owner = lst.owner
        if owner is not None:
            known = owners.get(id(owner))
            if known is None:
                known = owners[id(owner)] = (owner, dataclasses.asdict(owner))
            d[names[at_owner]] = known[1]
        d["endpoint"] = lst.endpoint
        d["fill"] = fill_percent(lst)
        d["drops_delta"] = None
        if netns is not None:
            d["netns"] = netns
        rows.append(d)
    return rows


class _Unsupported(Exception):
    """A value the flat encoder leaves to json.dumps."""


def dumps_indented(data: Any) -> str:
    """json.dumps(data, indent=2, default=str), made faster for many dicts of plain values (a dict met
    again, the same object, is encoded once per depth). Anything else (a key that is not a str, a value
    that is not None, bool, int, float, str, list, tuple or dict) goes to json.dumps itself."""
    try:
        return _Encoder().encode(data, 0)
    except (_Unsupported, RecursionError):
        return json.dumps(data, indent=2, default=str)


class _Encoder:
    def __init__(self) -> None:
        self.memo: dict[tuple[int, int], str] = {}
        self.keep: list[object] = []
        self.keys: dict[str, str] = {}
        self.scalar: Callable[[Any], str] = _scalar

    def encode(self, value: Any, depth: int) -> str:
        if isinstance(value, dict):
            return self._dict(value, depth)
        if isinstance(value, (list, tuple)):
            if not value:
                return "[]"
            pad = "\n" + "  " * (depth + 1)
            return "[" + pad + ("," + pad).join(self.encode(v, depth + 1) for v in value) + "\n" + "  " * depth + "]"
        return self.scalar(value)

    def _dict(self, value: dict[Any, Any], depth: int) -> str:
        if not value:
            return "{}"
        key = (id(value), depth)
        known = self.memo.get(key)
        if known is not None:
            return known
        pad = "\n" + "  " * (depth + 1)
        keys, scalar = self.keys, self.scalar
        parts = []
        for k, v in value.items():
            name = keys.get(k) if type(k) is str else None
            if name is None:
                if not isinstance(k, str):
                    raise _Unsupported(k)
                name = keys[k] = json.encoder.encode_basestring_ascii(k) + ": "
            t = type(v)
            parts.append(name + (scalar(v) if t is int or t is str or v is None else self.encode(v, depth + 1)))
        text = "{" + pad + ("," + pad).join(parts) + "\n" + "  " * depth + "}"
        self.memo[key] = text
        self.keep.append(value)  # (its id stays its own while memo holds it)
        return text


def _scalar(v: Any) -> str:
    """A value as json.JSONEncoder writes it (ensure_ascii, allow_nan)."""
    if isinstance(v, str):
        return json.encoder.encode_basestring_ascii(v)
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return int.__repr__(v)
    if isinstance(v, float):
        if math.isfinite(v):
            return float.__repr__(v)
        return "NaN" if v != v else "Infinity" if v > 0 else "-Infinity"
    raise _Unsupported(v)
