"""`check`'s text off a terminal (Nagios, cron, a pipe) without rich, where it says nothing is wrong.

outputs/text.py render_check prints through a rich Console; off a terminal that has no styles to show,
and where no problem, clearing or cleared alert is listed the report is a status line, the listeners
table, and the notes: lines this module makes with the same wrapping (outputs/fit.py `wrapped`) and the
same table (fit.plain_lines, as print_fitted prints it there). Anything else (an alert line, a word wider
than the line, a character whose width only rich knows, a table that does not fit) returns None and rich
draws the whole report. Measured (issue 17, 35k sockets, `check --interval 0.5` piped): rich's import and
drawing were ~40 of the ~42 ms its text took. tests/unit/test_check_plain.py compares both.
"""

from __future__ import annotations

from connwatch.attributes.backlog import drop_deltas
from connwatch.model import fill_percent
from connwatch.outputs.fit import layout, plain_cell, plain_lines, wrapped
from connwatch.outputs.listeners import listeners_cells
from connwatch.record import replace

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from connwatch.engine import CheckResult

CHECK_ROWS = 10  # listeners shown by check (here and in outputs/text.py)


def plain_check(result: CheckResult, width: int) -> list[str] | None:
    """The lines render_check(result, console) prints off a terminal at `width` columns (not verbose), or
    None where rich is to print them."""
    from connwatch.outputs.summary import clock_words

    step = result.step
    if step.raised or step.updated or step.cleared or step.still_active_clean:
        return None
    parts = result.parts or (result,)
    now, interval = result.current.taken_at, result.current.taken_at - result.previous.taken_at
    spaces = f", {len(parts)} network namespaces" if len(parts) > 1 else ""
    texts = [f"connwatch {result.status} — 0 problem(s), {sum(len(p.current.listeners) for p in parts)} listeners"
             f"{spaces}, host {result.current.host.hostname}, {clock_words(now, now)}"]
    lines = _said(texts, width)
    table = _listeners(result, width, interval)
    if lines is None or table is None:
        return None
    notes = [f"note: {note}" for note in dict.fromkeys(x for part in parts for x in part.current.limitations)]
    if result.store_error:
        notes.append(f"warning: alert history not kept: {result.store_error}")
    said = _said(notes, width)
    return None if said is None else [*lines, "", *table, *said]


def _said(texts: list[str], width: int) -> list[str] | None:
    """Each text as Console.print wraps a Text (no markup) at `width`; None where only rich can."""
    out: list[str] = []
    for text in texts:
        lines = wrapped(text, width)
        if lines is None:
            return None
        out += lines
    return out


def _listeners(result: CheckResult, width: int, interval: float) -> list[str] | None:
    """text._check_listeners with no alert: the own namespace's listeners (those with drops or a queue at
    80 % or more, else the first ones), at most CHECK_ROWS; the other namespaces have nothing to say."""
    part = (result.parts or (result,))[0]
    snap, deltas = part.current, drop_deltas(part.previous, part.current)
    hot = [x for x in snap.listeners if deltas.get(x.identity) or (fill_percent(x) or 0) >= 80]
    shown = (hot or list(snap.listeners))[:CHECK_ROWS]
    if not shown:
        return []
    title = "TCP listeners" + (" (those rejecting or filling)" if hot and len(snap.listeners) > len(shown) else "")
    cols, rows = listeners_cells(replace(snap, listeners=tuple(shown)), deltas, width, interval)
    plains = [[plain_cell(c) for c in r] for r in rows]
    table = plain_lines(cols, layout(cols, plains, width), plains, title, width)
    if table is None or len(snap.listeners) <= len(shown):
        return table
    more = _said([f"… and {len(snap.listeners) - len(shown)} more listener(s): connwatch listeners"], width)
    return None if more is None else [*table, *more]
