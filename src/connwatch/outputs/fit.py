"""Tables that fit the terminal: each column says how dispensable it is; the least important columns are
dropped until the table fits the width, and only columns marked `shrink` may be cut (with '…'). Columns
with drop 0 (the number the user came for) are never dropped or cut."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

Cell = str | Text  # str: rich markup
SHRUNK = 12  # what a shrinkable column needs at least to stay useful ('runmqlsr 42…')


@dataclass(frozen=True, slots=True)
class Col:
    header: str
    justify: str = "left"
    drop: int = 0  # 0: always shown; otherwise the higher, the sooner it goes when space runs out
    shrink: bool = False  # may be cut with an ellipsis (names, addresses)


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else Text.from_markup(cell).plain


def natural(col: Col, rows: Sequence[Sequence[Cell]], i: int) -> int:
    return max([cell_len(col.header)] + [max(map(cell_len, _plain(r[i]).split("\n"))) for r in rows])


def chosen(cols: Sequence[Col], rows: Sequence[Sequence[Cell]], width: int) -> list[int]:
    """Indices of the columns kept at this width."""
    widths = [min(natural(c, rows, i), SHRUNK) if c.shrink else natural(c, rows, i) for i, c in enumerate(cols)]
    keep = [k for k, c in enumerate(cols) if not c.drop or any(_plain(r[k]).strip() for r in rows)]

    def total() -> int:
        return sum(widths[k] for k in keep) + 3 * (len(keep) - 1)  # SIMPLE_HEAD: pad, space, pad

    for k in sorted((k for k in keep if cols[k].drop), key=lambda k: -cols[k].drop):
        if total() <= width:
            break
        keep.remove(k)
    return keep


def fit_table(cols: Sequence[Col], rows: Sequence[Sequence[Cell]], width: int,
              title: str | None = None) -> Table:
    """Kept columns at their natural width; the shrinkable ones share what is left (at least SHRUNK each)."""
    keep = chosen(cols, rows, width)
    sizes = {k: natural(cols[k], rows, k) for k in keep}
    shrink = [k for k in keep if cols[k].shrink]
    room = width - 3 * (len(keep) - 1) - sum(v for k, v in sizes.items() if k not in shrink)
    given = {k: min(sizes[k], SHRUNK) for k in shrink}
    room -= sum(given.values())
    for k in sorted(shrink, key=lambda k: cols[k].drop):  # the more important column gets spare room first
        extra = max(0, min(sizes[k] - given[k], room))
        given[k] += extra
        room -= extra
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
                  expand=False)
    for k in keep:
        c = cols[k]
        table.add_column(c.header, justify=c.justify, no_wrap=True,  # type: ignore[arg-type]
                         overflow="ellipsis" if c.shrink else "fold", width=given.get(k, sizes[k]))
    for r in rows:
        table.add_row(*(r[k] for k in keep))
    return table
