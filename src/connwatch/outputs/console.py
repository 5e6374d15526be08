"""The rich Console every command prints through.

Width: COLUMNS when set, else the terminal's size — also on a dumb terminal (TERM=dumb), where rich
would assume 80 columns; off a terminal (a pipe, a file: a ticket, a log) PIPE_WIDTH. Off a terminal
no line carries trailing padding (rich pads tables and indented paragraphs to the width).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from typing import IO

from rich.console import Console

PIPE_WIDTH = 160  # rich assumes 80 columns off a terminal and truncates wide tables to '…'
_TRAILING = re.compile(r"[ \t]+((?:\x1b\[[0-9;]*m)*)$")


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """rich exits 1 here, which a Nagios caller reads as WARNING: let the CLI map it to UNKNOWN."""
        raise BrokenPipeError


class Unpadded:
    """A text stream that drops trailing blanks from every line it passes on (rich's padding)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.pending = ""

    def write(self, text: str) -> int:
        lines = (self.pending + text).split("\n")
        self.pending = lines.pop()
        if lines:
            self.stream.write("".join(_TRAILING.sub(r"\1", line) + "\n" for line in lines))
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.stream.write(_TRAILING.sub(r"\1", self.pending))
            self.pending = ""
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.stream.fileno()


def terminal_width(stream: IO[str]) -> int | None:
    """COLUMNS, else the tty's own size (also when TERM=dumb), else None (not a terminal)."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return os.get_terminal_size(stream.fileno()).columns if stream.isatty() else None
    except (OSError, ValueError, AttributeError):
        return None


def console(stderr: bool = False) -> Console:
    """A Console of the right width; piped or redirected output gets PIPE_WIDTH columns unless COLUMNS is
    set, and no trailing padding."""
    stream = sys.stderr if stderr else sys.stdout
    width = terminal_width(stream)
    if stream.isatty():
        return _Console(stderr=stderr, width=width or shutil.get_terminal_size().columns)
    return _Console(file=Unpadded(stream), width=width or PIPE_WIDTH)  # type: ignore[arg-type]
