"""The rich Console every command prints through."""

from __future__ import annotations

import os
import sys

from rich.console import Console

PIPE_WIDTH = 160  # rich assumes 80 columns off a terminal and truncates wide tables to '…'


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """rich exits 1 here, which a Nagios caller reads as WARNING: let the CLI map it to UNKNOWN."""
        raise BrokenPipeError


def console(stderr: bool = False) -> Console:
    """A Console; piped or redirected output (a ticket, a log) gets PIPE_WIDTH columns unless COLUMNS is set."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty() or os.environ.get("COLUMNS"):
        return _Console(stderr=stderr)
    return _Console(stderr=stderr, width=PIPE_WIDTH)
