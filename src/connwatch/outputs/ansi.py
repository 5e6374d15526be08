"""A table's lines on a colour terminal as rich draws them (outputs/fit.py _rich_table), without loading rich.

On a terminal `listeners` has rich draw the first screenful, the rest plain; rich's import alone
(rich.console, rich.table and what they load: dataclasses, inspect, ...) was the largest part left of a
terminal run's start-up (issue 17: 5,000 listeners on an 80x24 terminal 2.22x `ss -ltnp`, piped 1.90x).
What rich writes there is simple: each segment of text in its style's SGR codes and a reset, the padding
and the column gaps as their cells' style has them. `table_lines` writes that for the tables it covers
(single-line literal cells that fit their columns, styles of `SGR`, printable one-cell characters: what
`listeners` shows) and says None for anything else, which rich then draws as before;
tests/unit/test_ansi.py compares both byte for byte. `dimensions` gives the size rich's Console takes
(outputs/console.py), only where rich would draw in colour and nothing in the environment changes how.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from connwatch.outputs.fit import _ONE_CELL, Col, Layout, Styled, literal
from connwatch.outputs.width import terminal_width

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import IO

    from connwatch.outputs.fit import Cell

# rich's SGR codes of the styles these tables use (standard colours: the same in every colour system)
SGR = {"": "", "dim": "2", "red": "31", "green": "32", "yellow": "33"}
TITLE, HEADER = "3", "1"  # rich's default theme: table.title italic, table.header bold
# Variables that change whether or how rich draws (rich.console.Console: is_terminal, no_color, colours)
_RICH_ENV = ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "JUPYTER_COLUMNS", "JUPYTER_LINES")


def dimensions(stream: IO[str], environ: Mapping[str, str] = os.environ) -> tuple[int, int] | None:
    """(width, height) of the Console outputs/console.py makes for `stream` where rich would draw in
    colour to a UTF-8 terminal; None where rich is to decide (not a terminal, TERM dumb or unknown, any of
    _RICH_ENV set, a size only shutil tells, another encoding)."""
    try:
        tty = stream.isatty()
    except (ValueError, AttributeError):
        return None
    term = environ.get("TERM", "").lower()
    encoding = (getattr(stream, "encoding", None) or "").lower()
    if not tty or term in ("dumb", "unknown") or any(k in environ for k in _RICH_ENV) or \
            not encoding.startswith("utf") or "idlelib" in sys.modules:
        return None
    width = terminal_width(stream)
    if width is None:
        return None
    return width, _height(environ)


def _height(environ: Mapping[str, str]) -> int:
    """rich's Console.height: LINES, else the first of stdin, stdout and stderr that tells its size, else 25."""
    lines = environ.get("LINES")
    if lines is not None and lines.isdigit():
        return int(lines)
    for fd in (0, 1, 2):
        try:
            return os.get_terminal_size(fd).lines or 25
        except (AttributeError, ValueError, OSError):
            continue
    return 25


def _sgr(text: str, codes: str) -> str:
    return f"\x1b[{codes}m{text}\x1b[0m" if codes and text else text


def _parts(cell: Cell) -> tuple[tuple[str, str], ...] | None:
    """A cell's pieces and their SGR codes; None where rich would not show the text as it is."""
    if isinstance(cell, Styled):
        if any(style not in SGR for _, style in cell.parts):
            return None
        return tuple((text, SGR[style]) for text, style in cell.parts if text)
    if isinstance(cell, str) and literal(cell):
        return ((cell, ""),) if cell else ()
    return None


def _fits(text: str, width: int) -> bool:
    return text.isprintable() and (text.isascii() or _ONE_CELL.issuperset(text)) and len(text) <= width


def _cell(parts: tuple[tuple[str, str], ...], width: int, right: bool) -> str | None:
    """One body cell at `width` (rich's Text justified: right-justified text loses its trailing blanks;
    the padding has the cell's style, none in the body)."""
    if right:
        plain = "".join(t for t, _ in parts)
        cut = len(plain) - len(plain.rstrip())
        while cut and parts:
            text, codes = parts[-1]
            parts = (*parts[:-1], (text[:-cut], codes)) if len(text) > cut else parts[:-1]
            cut = max(0, cut - len(text))
    plain = "".join(t for t, _ in parts)
    if not _fits(plain, width):
        return None
    pad = " " * (width - len(plain))
    shown = "".join(_sgr(t, c) for t, c in parts)
    return pad + shown if right else shown + pad


def table_lines(cols: Sequence[Col], lay: Layout, rows: Sequence[Sequence[Cell]], title: str | None,
                width: int) -> list[str] | None:
    """The lines rich prints of fit._rich_table(cols, lay, rows, title) on a colour terminal `width`
    columns wide, SGR codes included; None where that is not certain (see the module's docstring)."""
    total = lay.total
    if not lay.keep or min(lay.widths.values()) < 1 or total > width or (
            title is not None and not (title and literal(title) and _fits(title, total))):
        return None
    last = len(lay.keep) - 1
    lines = [] if title is None else [_sgr(title.ljust(total), TITLE)]
    head = []
    for i, k in enumerate(lay.keep):
        w, text = lay.widths[k], cols[k].header
        if not (literal(text) and _fits(text, w)):
            return None
        shown = text.rstrip().rjust(w) if cols[k].justify == "right" else text.ljust(w)
        pad = _sgr(" ", HEADER)  # (the cell's padding, a segment of its own in the header's style)
        head.append(("" if i == 0 else pad) + _sgr(shown, HEADER) + ("" if i == last else pad))
    lines += [" ".join(head), "\u2500" * total]
    for row in rows:
        cells = []
        for k in lay.keep:
            parts = _parts(row[k])
            made = None if parts is None else _cell(parts, lay.widths[k], cols[k].justify == "right")
            if made is None:
                return None
            cells.append(made)
        lines.append("   ".join(cells))
    return lines
