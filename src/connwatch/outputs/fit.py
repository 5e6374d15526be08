"""Tables that fit the terminal: each column says how dispensable it is; the least important columns are
dropped until the table fits the width, and only columns marked `shrink` may be cut (with '…'). Columns
with drop 0 (the number the user came for) are never dropped or cut."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from operator import itemgetter

from connwatch.record import Record, record

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:  # (rich loads where it draws: plain text off a terminal prints without it)
    from typing import TypeAlias

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text


class Styled:
    """A cell of literal pieces, each with its style (no markup or emoji codes parsed): cheap to make by the
    thousand; it becomes a rich Text only where rich draws it."""

    __slots__ = ("parts", "plain")

    def __init__(self, parts: tuple[tuple[str, str], ...]) -> None:
        self.parts = parts
        self.plain = "".join(p for p, _ in parts)

    def __repr__(self) -> str:
        return f"Styled({self.parts!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Styled) and other.parts == self.parts

    def __hash__(self) -> int:
        return hash(self.parts)

    def text(self) -> Text:
        from rich.text import Text

        return Text.assemble(*self.parts)


Cell: TypeAlias = "str | Text | Styled"  # str: rich markup
SHRUNK = 12  # what a shrinkable column needs at least to stay useful ('runmqlsr 42…')


@record
class Col(Record):
    header: str
    justify: str = "left"
    drop: int = 0  # 0: always shown; otherwise the higher, the sooner it goes when space runs out
    shrink: bool = False  # may be cut with an ellipsis (names, addresses)


def _plain(cell: Cell) -> str:
    """The text rich shows for a cell. Markup is parsed only where it may be: '[' (markup) or ':' (emoji
    codes, which rich replaces)."""
    if not isinstance(cell, str):
        return cell.plain
    if "[" in cell or ":" in cell:
        from rich.text import Text

        return Text.from_markup(cell).plain
    return cell


def plain_cell(cell: Cell) -> str:
    """The text rich shows for a cell or a printed string (markup and emoji codes applied, no styles)."""
    return _plain(cell)


_EMOJI_LIKE = re.compile(r":\S*?:")  # what rich's emoji codes need (rich._emoji_replace), known names or not
_WORD = re.compile(r"\s*\S+\s*")  # a word and the blanks after it (rich._wrap.words)


def literal(markup: str) -> bool:
    """True where rich prints the markup string as it is: no '[' (a tag, or text rich might read as one), no
    backslash (an escape) and nothing shaped like an emoji code (':name:', which rich may replace)."""
    return "[" not in markup and "\\" not in markup and _EMOJI_LIKE.search(markup) is None


def wrapped(text: str, width: int) -> list[str] | None:
    """The lines Console.print makes of plain `text` at `width` columns, without rich: as rich._wrap.divide_line,
    a word (with the blanks after it) that does not fit moves whole to the next line; trailing blanks dropped.
    None where this does not cover rich: a word wider than the line (rich folds it), a tab or another control
    character, a character whose width in cells only rich tells."""
    out: list[str] = []
    for line in text.split("\n"):
        if not line.isprintable() or not (line.isascii() or _ONE_CELL.issuperset(line)):
            return None
        offset, start = 0, 0
        for m in _WORD.finditer(line):
            word = m.group()
            need = len(word.rstrip())
            if width - offset >= need:
                offset += len(word)
            elif need > width:
                return None
            elif offset and m.start():
                out.append(line[start:m.start()].rstrip())
                start, offset = m.start(), len(word)
        out.append(line[start:].rstrip())
    return out


def natural(col: Col, rows: Sequence[Sequence[Cell]], i: int) -> int:
    return _natural(col, [[_plain(c) for c in r] for r in rows], i)


def _natural(col: Col, plains: Sequence[Sequence[str]], i: int) -> int:
    texts = [r[i] for r in plains]
    joined = "".join(texts)
    if joined.isascii() and "\n" not in joined:  # (the common case, thousands of rows: one pass in C)
        return max(_cells(col.header), max(map(len, texts), default=0))
    return max(_cells(col.header), max(map(_width, set(texts)), default=0))  # (wide cells repeat: a fill bar)


def _width(text: str) -> int:
    if "\n" in text:
        return max(map(_cells, text.split("\n")))
    return _cells(text)


_NARROW = frozenset("█▒·…─—")  # the fill and usage bars, the ellipsis, the rule, check's dash: one cell each
# (rich agrees: test_fit)
_ONE_CELL = _NARROW | frozenset(map(chr, range(128)))  # (ASCII: len, as below)


def _cells(text: str) -> int:
    if text.isascii() or _ONE_CELL.issuperset(text):
        return len(text)
    from rich.cells import cell_len

    return cell_len(text)


def chosen(cols: Sequence[Col], rows: Sequence[Sequence[Cell]], width: int) -> list[int]:
    """Indices of the columns kept at this width."""
    return _chosen(cols, [[_plain(c) for c in r] for r in rows], width)


def _chosen(cols: Sequence[Col], plains: Sequence[Sequence[str]], width: int,
            naturals: Sequence[int] | None = None) -> list[int]:
    sizes = naturals if naturals is not None else [_natural(c, plains, i) for i, c in enumerate(cols)]
    widths = [min(n, SHRUNK) if c.shrink else n for n, c in zip(sizes, cols, strict=True)]
    keep = [k for k, c in enumerate(cols) if not c.drop or any(r[k].strip() for r in plains)]

    def total() -> int:
        return sum(widths[k] for k in keep) + 3 * (len(keep) - 1)  # SIMPLE_HEAD: pad, space, pad

    for k in sorted((k for k in keep if cols[k].drop), key=lambda k: -cols[k].drop):
        if total() <= width:
            break
        keep.remove(k)
    return keep


@record
class Layout(Record):
    """The kept columns (indices) and the width each is given."""

    keep: list[int]
    widths: dict[int, int]

    @property
    def total(self) -> int:
        return sum(self.widths.values()) + 3 * (len(self.keep) - 1)


def layout(cols: Sequence[Col], plains: Sequence[Sequence[str]], width: int) -> Layout:
    """Kept columns at their natural width; the shrinkable ones share what is left (at least SHRUNK each)."""
    naturals = [_natural(c, plains, i) for i, c in enumerate(cols)]
    keep = _chosen(cols, plains, width, naturals)
    sizes = {k: naturals[k] for k in keep}
    shrink = [k for k in keep if cols[k].shrink]
    room = width - 3 * (len(keep) - 1) - sum(v for k, v in sizes.items() if k not in shrink)
    given = {k: min(sizes[k], SHRUNK) for k in shrink}
    room -= sum(given.values())
    for k in sorted(shrink, key=lambda k: cols[k].drop):  # the more important column gets spare room first
        extra = max(0, min(sizes[k] - given[k], room))
        given[k] += extra
        room -= extra
    return Layout(keep, {k: given.get(k, sizes[k]) for k in keep})


def fit_table(cols: Sequence[Col], rows: Sequence[Sequence[Cell]], width: int,
              title: str | None = None) -> Table:
    """Kept columns at their natural width; the shrinkable ones share what is left (at least SHRUNK each)."""
    return _rich_table(cols, layout(cols, [[_plain(c) for c in r] for r in rows], width), rows, title)


def _rich_table(cols: Sequence[Col], lay: Layout, rows: Sequence[Sequence[Cell]], title: str | None) -> Table:
    """The table rich draws. Literal strings (no markup, escapes or emoji codes: `literal`) go in as Text, as
    rich would make them (render_str: no highlighting in a table; the title in style table.title), so rich
    parses no markup and loads no emoji codes for them (rich._emoji_codes: ~2 ms of a terminal run)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    def cell(c: Cell) -> str | Text:
        if isinstance(c, Styled):
            return c.text()
        return Text(c) if isinstance(c, str) and literal(c) else c

    shown = Text(title, style="table.title") if title is not None and literal(title) else title
    table = Table(title=shown, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
                  expand=False)
    for k in lay.keep:
        c = cols[k]
        table.add_column(cell(c.header), justify=c.justify, no_wrap=True,  # type: ignore[arg-type]
                         overflow="ellipsis" if c.shrink else "fold", width=lay.widths[k])
    for r in rows:
        table.add_row(*(cell(r[k]) for k in lay.keep))
    return table


def plain_lines(cols: Sequence[Col], lay: Layout, plains: Sequence[Sequence[str]], title: str | None,
                width: int) -> list[str] | None:
    """The lines rich prints for _rich_table without styles (trailing blanks stripped), made with string
    operations only, a column at a time: rich takes ~0.6 ms per row. A cell of several lines makes its row
    as many lines, the other cells blank below their first (rich aligns cells at the top). None where rich
    would lay it out otherwise (a table or title wider than `width`, a title of several lines, a cell ending
    in a newline)."""
    shown = None if title is None else _plain(title)  # rich draws the title as markup too
    if lay.total > width or (shown is not None and (_cells(shown) > lay.total or "\n" in shown)):
        return None
    texts = {k: [cols[k].header, *map(itemgetter(k), plains)] for k in lay.keep}  # (a column at a time, in C)
    if any("\n" in "".join(t) for t in texts.values()):
        if any(r[k].endswith("\n") for r in plains for k in lay.keep):
            return None  # (rich draws no blank line for the last newline of a cell)
        plains = _one_line_rows(plains, lay.keep)
        texts = {k: [cols[k].header, *map(itemgetter(k), plains)] for k in lay.keep}
    columns = [_padded(texts[k], lay.widths[k], cols[k].justify == "right") for k in lay.keep]
    lines = [] if shown is None else [shown]
    rows = ["   ".join(cells).rstrip() for cells in zip(*columns, strict=True)]
    lines.append(rows[0])
    lines.append("\u2500" * lay.total)
    lines.extend(rows[1:])
    return lines


def _one_line_rows(plains: Sequence[Sequence[str]], keep: list[int]) -> list[Sequence[str]]:
    """Rows whose kept cells hold one line each: a row with a kept cell of n lines becomes n rows."""
    out: list[Sequence[str]] = []
    for r in plains:
        if not any("\n" in r[k] for k in keep):
            out.append(r)
            continue
        split = [c.split("\n") for c in r]
        height = max(len(split[k]) for k in keep)
        out.extend([s[j] if j < len(s) else "" for s in split] for j in range(height))
    return out


def _padded(texts: list[str], w: int, right: bool) -> list[str]:
    """One column's cells at width w as rich draws them: right-justified cells lose trailing blanks, a
    cell wider than w (shrinkable columns only) ends in an ellipsis."""
    if right:
        texts = [t.rstrip() for t in texts]
    if "".join(texts).isascii() and max(map(len, texts), default=0) <= w:  # (the common case: one pass in C)
        return [t.rjust(w) for t in texts] if right else [t.ljust(w) for t in texts]
    done: dict[str, str] = {}  # (non-ASCII cells repeat: a fill bar, an address)
    for t in set(texts):
        n = _cells(t)
        cut = t
        if n > w:
            from rich.cells import set_cell_size

            cut, n = set_cell_size(t, w - 1) + "\u2026", w
        pad = w - n + len(cut)  # str.rjust/ljust count characters, not terminal cells
        done[t] = cut.rjust(pad) if right else cut.ljust(pad)
    return [done[t] for t in texts]


def print_fitted(console: Console, cols: Sequence[Col], rows: Sequence[Sequence[Cell]], title: str | None = None,
                 screen: int | None = None) -> None:
    """fit_table at the console's width, printed. Without styles to show (a pipe, a file) as plain text;
    on a terminal rich draws the first screenful (`screen` rows, default the console's height) and the
    rows past it are plain text in the same columns. Falls back to rich where plain_lines cannot match it."""
    print_fitted_plains(console, cols, [[_plain(c) for c in r] for r in rows],
                        lambda n: rows if n is None else rows[:n], title, screen)


def print_fitted_plains(console: Console, cols: Sequence[Col], plains: Sequence[Sequence[str]],
                        styled: Callable[[int | None], Sequence[Sequence[Cell]]], title: str | None = None,
                        screen: int | None = None) -> None:
    """print_fitted for a caller that has every row's plain text (what _plain gives of each cell) and
    makes the styled cells on demand: `styled(n)`, the first n rows' (None: all), only for what rich draws."""
    lay = layout(cols, plains, console.width)
    colour = console.color_system is not None and console.is_terminal
    shown = 0 if not colour else max(1, console.height - 4 if screen is None else screen)
    lines = plain_lines(cols, lay, plains[shown:], title, console.width) if len(plains) > shown else None
    if lines is None:
        console.print(_rich_table(cols, lay, styled(None), title))
        return
    if shown:
        console.print(_rich_table(cols, lay, styled(shown), title))
        lines = lines[(title is not None) + 2:]  # title, header and rule already drawn
    if console.record:  # keep what is printed in the record (export_text)
        console.out("\n".join(lines), highlight=False)
    else:  # rich's own printing of plain lines costs ~0.1 ms per line
        console.file.write("\n".join(lines) + "\n")
        console.file.flush()
