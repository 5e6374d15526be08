"""`connwatch listeners`: like `ss -ltnm`, but readable."""

from __future__ import annotations

import sys

from connwatch.cli import add_common

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:  # (argparse loads only where it parses: see fastargs.py)
    import argparse
    from typing import IO

    from rich.console import Console

    from connwatch.model import Snapshot
    from connwatch.outputs.fit import Cell

NAME = "listeners"
HELP = "table of TCP listeners: port, address, queue/backlog with fill bar, drops, owner, listening since"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("text", "json"), default="text")
    add_common(p)


def run(args: argparse.Namespace) -> int:
    from connwatch.clock import SystemClock
    from connwatch.commands.common import collect_options, collect_selected

    snaps = collect_selected(SystemClock(), args, collect_options(args, sockets=False))
    limitations = list(dict.fromkeys(x for s in snaps for x in s.limitations))
    if args.format == "json":
        sys.stdout.write(json_text(snaps, limitations) + "\n")
        return 0
    render_text(snaps, limitations, sys.stdout)
    return 0


def json_text(snaps: list[Snapshot], limitations: list[str]) -> str:
    """The `listeners` JSON document: every selected namespace's listeners (`netns` on the others')."""
    from connwatch.commands.common import is_other
    from connwatch.outputs.fastjson import Table, dumps_indented
    from connwatch.outputs.jsonout import document
    from connwatch.outputs.listeners import listener_table

    rows = Table([])
    for snap in snaps:
        netns = None
        if is_other(snap) and snap.netns is not None:
            from connwatch.snapshot_json import netns_dict

            netns = netns_dict(snap.netns)
        rows += listener_table(snap, netns)
    return dumps_indented(document("listeners", {"listeners": rows, "limitations": limitations}))


def render_text(snaps: list[Snapshot], limitations: list[str], stream: IO[str]) -> None:
    """Each namespace's table (the own one even when empty), then the notes. Off a terminal the tables are
    plain text made without rich (outputs/listeners.py), the notes too (wrapped as rich wraps them); rich
    draws what that does not cover (an empty or too wide table, a note it would not print as it is) and, on
    a terminal, the first screenful (outputs/fit.py print_fitted).
    `stream` is sys.stdout: the Console rich draws through (outputs/console.py) writes there too."""
    from connwatch.commands.common import is_other
    from connwatch.outputs.ansi import dimensions
    from connwatch.outputs.width import PIPE_WIDTH, plain_stream, terminal_width, write_lines

    plain = plain_stream(stream)
    width = (terminal_width(stream) or PIPE_WIDTH) if plain else 0
    screen = None if plain else dimensions(stream)  # (a colour terminal whose screenful rich need not draw)
    out: Console | None = None
    for snap in snaps:
        if not snap.listeners and is_other(snap):
            continue
        title = f"TCP listeners in {snap.netns.label}" if is_other(snap) and snap.netns else "TCP listeners"
        lines = None
        if plain:
            from connwatch.outputs.listeners import plain_table

            lines = plain_table(snap, width, title)
        elif screen is not None:
            from connwatch.outputs.listeners import terminal_table

            lines = terminal_table(snap, *screen, title)
            if lines is not None:  # (as rich writes to a terminal: its padding kept)
                stream.write("\n".join(lines) + "\n")
                stream.flush()
                continue
        if lines is not None:
            write_lines(stream, lines)
            continue
        out = out or _console()
        _draw(out, snap, title)
    notes = _plain_notes(limitations, width) if plain and out is None else None
    if notes:
        write_lines(stream, notes)
    elif notes is None and limitations:
        out = out or _console()
        for note in limitations:
            out.print(f"[dim]note: {note}[/dim]")


def _plain_notes(limitations: list[str], width: int) -> list[str] | None:
    """The notes as rich prints them off a terminal (wrapped at `width`), where rich would print them as they
    are (outputs/fit.py literal and wrapped); None: rich's to print. [] for no notes."""
    from connwatch.outputs.fit import literal, wrapped

    lines: list[str] = []
    for note in limitations:
        text = f"note: {note}"
        said = wrapped(text, width) if literal(text) else None
        if said is None:
            return None
        lines += said
    return lines


def _draw(out: Console, snap: Snapshot, title: str) -> None:
    """print_fitted of listeners_cells, the styled cells made only for the rows rich draws."""
    from connwatch.outputs.fit import print_fitted_plains
    from connwatch.outputs.listeners import PLAIN_COLS, listeners_cells, plain_rows
    from connwatch.record import replace

    def styled(n: int | None) -> list[list[Cell]]:
        head = snap if n is None else replace(snap, listeners=snap.listeners[:n])
        return listeners_cells(head, width=out.width)[1]

    print_fitted_plains(out, PLAIN_COLS, plain_rows(snap, out.width), styled, title=title)


def _console() -> Console:
    from connwatch.outputs.console import console

    return console()
