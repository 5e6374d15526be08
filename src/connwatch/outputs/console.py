"""The rich Console every command prints through (its width and unpadded stream: outputs/width.py).

Width: COLUMNS when set, else the terminal's size — also on a dumb terminal (TERM=dumb), where rich
would assume 80 columns; off a terminal (a pipe, a file: a ticket, a log) PIPE_WIDTH. Off a terminal
no line carries trailing padding (rich pads tables and indented paragraphs to the width).
"""

from __future__ import annotations

import sys

from rich.console import Console

from connwatch.outputs.width import PIPE_WIDTH, Unpadded, terminal_width

__all__ = ["PIPE_WIDTH", "Unpadded", "console", "terminal_width"]


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """rich exits 1 here, which a Nagios caller reads as WARNING: let the CLI map it to UNKNOWN."""
        raise BrokenPipeError


def console(stderr: bool = False) -> Console:
    """A Console of the right width; piped or redirected output gets PIPE_WIDTH columns unless COLUMNS is
    set, and no trailing padding."""
    stream = sys.stderr if stderr else sys.stdout
    width = terminal_width(stream)
    if stream.isatty():
        return _Console(stderr=stderr, width=width or _columns())
    return _Console(file=Unpadded(stream), width=width or PIPE_WIDTH)  # type: ignore[arg-type]


def _columns() -> int:
    """A terminal whose size cannot be read: shutil's answer (sys.__stdout__'s size, else 80 columns). shutil
    loads only here (with bz2, lzma and zlib: ~3 ms a terminal run of `listeners` need not pay)."""
    import shutil

    return shutil.get_terminal_size().columns
