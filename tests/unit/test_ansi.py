"""outputs/ansi.py: a table on a colour terminal written without rich is byte for byte what rich writes."""

from __future__ import annotations

import io
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from connwatch.outputs.ansi import SGR, dimensions, table_lines
from connwatch.outputs.fit import Cell, Col, Styled, _plain, _rich_table, layout
from connwatch.outputs.listeners import PLAIN_COLS, listeners_cells

from .test_listeners_out import snapshots

TEXT = st.text("ab z09-/.·█", max_size=14) | st.text("a :[é", max_size=4)  # (':', '[', 'é': rich's to draw)
PARTS = st.lists(st.tuples(TEXT, st.sampled_from(list(SGR)) | st.just("blue")), min_size=1, max_size=3)
CELLS = st.one_of(TEXT, PARTS.map(lambda p: Styled(tuple(p))))
COLS = st.builds(Col, header=st.text("Ab z", min_size=1, max_size=9) | st.text("A:[", max_size=3),
                 justify=st.sampled_from(["left", "right"]), drop=st.integers(0, 3), shrink=st.booleans())


def _rich(cols: tuple[Col, ...], rows: list[list[Cell]], title: str | None, width: int, colours: str) -> str:
    out = io.StringIO()
    plains = [[_plain(c) for c in r] for r in rows]
    Console(file=out, width=width, height=25, force_terminal=True, color_system=colours,  # type: ignore[arg-type]
            legacy_windows=False, _environ={}).print(_rich_table(cols, layout(cols, plains, width), rows, title))
    return out.getvalue()


@settings(max_examples=300, deadline=None)
@given(st.lists(COLS, min_size=1, max_size=5), st.data(),
       st.none() | st.text("TCP lisn", max_size=30) | st.text("T [:é", max_size=5), st.integers(20, 120),
       st.sampled_from(["standard", "256", "truecolor"]))
def test_table_lines_are_richs(cols: list[Col], data: Any, title: str | None, width: int, colours: str) -> None:
    rows = data.draw(st.lists(st.lists(CELLS, min_size=len(cols), max_size=len(cols)), max_size=6))
    lay = layout(cols, [[_plain(c) for c in r] for r in rows], width)
    ours = table_lines(cols, lay, rows, title, width)
    if ours is not None:
        assert "\n".join(ours) + "\n" == _rich(tuple(cols), rows, title, width, colours)


@settings(max_examples=100, deadline=None)
@given(snapshots(max_size=12), st.sampled_from([60, 80, 119, 120, 160, 250]), st.sampled_from([None, "TCP listeners"]))
def test_listener_tables_are_richs(snap: Any, width: int, title: str | None) -> None:
    """The listeners' cells: written without rich wherever their text is plain one-cell text that fits."""
    rows = listeners_cells(snap, width=width)[1]
    lay = layout(PLAIN_COLS, [[_plain(c) for c in r] for r in rows], width)
    ours = table_lines(PLAIN_COLS, lay, rows, title, width)
    if ours is not None:
        assert "\n".join(ours) + "\n" == _rich(PLAIN_COLS, rows, title, width, "256")
    elif all(not isinstance(c, str) or c.isascii() for r in rows for c in r) and lay.total <= width and \
            all(_plain(c).isascii() for r in rows for c in r) and snap.listeners and \
            all(len(_plain(r[k])) <= lay.widths[k] for r in rows for k in lay.keep):
        pytest.fail("plain ASCII cells that fit were left to rich")


class Tty(io.StringIO):
    encoding = "utf-8"  # (StringIO's is None)

    def isatty(self) -> bool:
        return True


def test_dimensions_only_where_rich_would_draw_in_colour_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"}
    monkeypatch.setenv("COLUMNS", "100")
    assert dimensions(Tty(), env) == (100, 30)
    assert dimensions(Tty(), {**env, "LINES": "x"})[0] == 100  # type: ignore[index]  # (rows: the tty's, else 25)
    assert dimensions(io.StringIO(), env) is None  # not a terminal
    for k, v in (("TERM", "dumb"), ("TERM", "unknown"), ("NO_COLOR", "1"), ("FORCE_COLOR", "1"),
                 ("TTY_COMPATIBLE", "1"), ("NO_COLOR", "")):
        assert dimensions(Tty(), {**env, k: v}) is None, (k, v)

    class Latin(Tty):
        encoding = "latin-1"

    assert dimensions(Latin(), env) is None  # (rich would draw the rule in ASCII)
