"""Plain-text tables (outputs/fit.py print_fitted) equal rich's drawing of the same fitted table."""

from __future__ import annotations

import io
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.errors import MarkupError
from rich.text import Text

from connwatch.model import Process
from connwatch.outputs.fit import Cell, Col, Styled, _plain, _rich_table, layout, plain_lines, print_fitted
from connwatch.outputs.text import listeners_cells, listeners_table

from .builders import listener, snapshot

T0 = 1_700_000_000.0
COLS = (Col("Port", "right"), Col("Address", drop=5, shrink=True), Col("Q/B", "right"), Col("Fill", drop=4),
        Col("Owner", drop=3, shrink=True), Col("Since", drop=7))
CELL = st.one_of(st.text("ab 1:.[]/日…\n", max_size=25),
                 st.sampled_from(["[red]5 (+2)[/red]", "nginx [dim]42[/dim]", ":smile:", "21:32:18 (5 s ago)",
                                  "2001:db8::1", "", "1 ", "10.0.0.9:5432\n[dim]from 10.0.0.1[/dim]", "a\n\nb "]))
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _rich_lines(cols: tuple[Col, ...], rows: list[list[Cell]], width: int, title: str | None) -> list[str]:
    plains = [[_plain(c) for c in r] for r in rows]
    out = io.StringIO()
    Console(file=out, width=width).print(_rich_table(cols, layout(cols, plains, width), rows, title))
    return [x.rstrip() for x in out.getvalue().split("\n")][:-1]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(*[CELL] * 6), max_size=5), st.integers(20, 200),
       st.sampled_from([None, "TCP listeners", "T", "TCP listeners in netns:[4026531833] pid 2 (kthreadd)",
                        ":smile: [bold]up[/bold]"]), st.booleans())
def test_plain_lines_equal_richs_table(cells: list[tuple[str, ...]], width: int, title: str | None,
                                       styled: bool) -> None:
    """Markup, emoji codes, wide characters, cut cells with an ellipsis, right-justified cells with
    trailing blanks, cells of several lines: the plain lines are rich's, or None (then rich draws)."""
    rows: list[list[Cell]] = [[Styled(((c, "red"),)) if styled and i == 3 else c for i, c in enumerate(r)]
                              for r in cells]
    try:
        plains = [[_plain(c) for c in r] for r in rows]
    except MarkupError:
        return  # rich refuses it too
    got = plain_lines(COLS, layout(COLS, plains, width), plains, title, width)
    if got is not None:
        assert got == _rich_lines(COLS, rows, width, title)
    else:  # only where rich would lay it out otherwise
        assert layout(COLS, plains, width).total > width or (title is not None and len(_plain(title)) > 1) or any(
            c.endswith("\n") for r in plains for c in r)  # (in a kept column)


def _as_before(cols: tuple[Col, ...], rows: list[list[Cell]], width: int, title: str | None) -> Any:
    """_rich_table as it was: every string cell, header and title to rich as markup."""
    from rich import box
    from rich.table import Table

    lay = layout(cols, [[_plain(c) for c in r] for r in rows], width)
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
                  expand=False)
    for k in lay.keep:
        table.add_column(cols[k].header, justify=cols[k].justify, no_wrap=True,  # type: ignore[arg-type]
                         overflow="ellipsis" if cols[k].shrink else "fold", width=lay.widths[k])
    for r in rows:
        table.add_row(*(c.text() if isinstance(c, Styled) else c for c in (r[k] for k in lay.keep)))
    return table


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(*[CELL] * 6), max_size=4), st.integers(20, 200),
       st.sampled_from([None, "TCP listeners", "Busiest destinations (3 of 9)", ":smile: [bold]up[/bold]", "a:b:c"]),
       st.sampled_from(["standard", "256", "truecolor"]))
def test_literal_strings_given_to_rich_as_text_draw_as_the_markup_did(
        cells: list[tuple[str, ...]], width: int, title: str | None, colours: str) -> None:
    """Styles too: on a colour terminal the table with literal strings passed as Text (no markup parsed, no
    emoji codes loaded) is drawn byte for byte as the one that gave rich every string as markup."""
    rows: list[list[Cell]] = [list(r) for r in cells]
    try:
        plains = [[_plain(c) for c in r] for r in rows]
    except MarkupError:
        return
    drawn = []
    for table in (_rich_table(COLS, layout(COLS, plains, width), rows, title), _as_before(COLS, rows, width, title)):
        out = io.StringIO()
        Console(file=out, width=width, force_terminal=True, color_system=colours).print(table)  # type: ignore[arg-type]
        drawn.append(out.getvalue())
    assert drawn[0] == drawn[1]
    assert "\x1b[" in drawn[0]  # (styled: the header at least)


def _many(n: int) -> list[list[Cell]]:
    return [[str(20000 + i), "127.0.0.1", f"{i % 7}/128", Styled((("··", "green"), (" 0%", ""))),
             "[red]3 (+1)[/red]" if i % 50 == 0 else "0", "nginx 42"] for i in range(n)]


def test_piped_table_is_richs_table_and_a_terminal_gets_rich_for_a_screenful() -> None:
    rows = _many(300)
    want = _rich_lines(COLS, rows, 100, "TCP listeners")
    piped = io.StringIO()
    print_fitted(Console(file=piped, width=100), COLS, rows, title="TCP listeners")
    assert [x.rstrip() for x in piped.getvalue().splitlines()] == want and "\x1b[" not in piped.getvalue()
    tty = io.StringIO()
    print_fitted(Console(file=tty, width=100, height=30, force_terminal=True, color_system="standard"), COLS, rows,
                 title="TCP listeners")
    drawn = tty.getvalue().splitlines()
    styled = [i for i, line in enumerate(drawn) if "\x1b[" in line]
    assert styled and max(styled) < 3 + 26  # title, header, rule and the first 26 rows (height - 4): rich
    assert [ANSI.sub("", x).rstrip() for x in drawn] == want  # the rest plain, in the same columns


def test_listeners_command_text_equals_the_rich_table() -> None:
    """`connwatch listeners` piped prints what rich drew before (same columns at 80 and 160), with the
    owner, its start and a red drop delta; names with brackets stay literal."""
    owner = Process(pid=4242, command="java[worker]", user="app", started_at=T0 - 60, open_fds=10, fd_limit=1024)
    snap = snapshot(T0, tuple(listener(20000 + i, i % 3, 128, i, owner=owner if i % 4 else None,
                                       address="2001:db8::1" if i % 5 == 0 else "127.0.0.1", family=6 if i % 5 == 0
                                       else 4) for i in range(400)))
    for width in (80, 160):
        want = io.StringIO()
        Console(file=want, width=width).print(listeners_table(snap, title="TCP listeners", width=width))
        got = io.StringIO()
        print_fitted(Console(file=got, width=width), *listeners_cells(snap, width=width), title="TCP listeners")
        assert got.getvalue().splitlines() == [x.rstrip() for x in want.getvalue().splitlines()]
        assert max(map(len, got.getvalue().splitlines())) <= width
        assert "java[worker] 4242" in got.getvalue() or (width == 80 and "java[wor" in got.getvalue())


def test_styled_cell_is_literal() -> None:
    cell = Styled((("a[b]", "red"), (" :smile:", "")))
    assert cell.plain == "a[b] :smile:" and cell.text().plain == cell.plain
    assert cell.text().spans[0].style == "red" and cell == Styled(cell.parts) and hash(cell) == hash(cell.parts)
    assert Text.from_markup(":smile:").plain != ":smile:"  # a str cell is markup (emoji), a Styled one is not


def test_the_characters_counted_without_rich_are_one_cell_wide() -> None:
    from rich.cells import cell_len

    from connwatch.outputs.fit import _NARROW, _cells

    assert all(cell_len(c * 3) == 3 for c in _NARROW) and _cells("██··· 42%") == cell_len("██··· 42%") == 9
    assert _cells("日本") == cell_len("日本") == 4  # others: rich counts them
