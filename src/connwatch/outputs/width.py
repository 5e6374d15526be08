"""Where text goes and how wide it may be, without rich: the plain-text paths (a table piped to a file or
another program) print without loading rich. outputs/console.py builds its rich Console on these."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import IO

PIPE_WIDTH = 160  # rich assumes 80 columns off a terminal and truncates wide tables to '…'
_TRAILING = re.compile(r"[ \t]+((?:\x1b\[[0-9;]*m)*)$")
_ENDS = frozenset(" \tm")  # the last character of any line _TRAILING matches


class Unpadded:
    """A text stream that drops trailing blanks from every line it passes on (rich's padding)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.pending = ""

    def write(self, text: str) -> int:
        lines = (self.pending + text).split("\n")
        self.pending = lines.pop()
        if lines:  # (only a line ending in a blank or an SGR code's "m" can match: thousands of table rows)
            self.stream.write("".join((_TRAILING.sub(r"\1", line) if line[-1:] in _ENDS else line) + "\n"
                                      for line in lines))
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


def write_lines(stream: IO[str], lines: list[str]) -> None:
    """Lines made without rich (a plain table or report), written as the Console would write them off a
    terminal: through Unpadded, no trailing blanks."""
    sink = Unpadded(stream)
    sink.write("\n".join(lines) + "\n")
    sink.flush()


def terminal_width(stream: IO[str]) -> int | None:
    """COLUMNS, else the tty's own size (also when TERM=dumb), else None (not a terminal)."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return os.get_terminal_size(stream.fileno()).columns if stream.isatty() else None
    except (OSError, ValueError, AttributeError):
        return None


def plain_stream(stream: IO[str], environ: Mapping[str, str] = os.environ) -> bool:
    """True when console() would print to `stream` without styles: not a terminal, and no FORCE_COLOR or
    TTY_COMPATIBLE=1 that makes rich treat it as one (rich.console.Console.is_terminal)."""
    try:
        tty = stream.isatty()
    except (ValueError, AttributeError):
        return False
    return not tty and "FORCE_COLOR" not in environ and environ.get("TTY_COMPATIBLE", "") != "1"
