"""`connwatch check --watch`: the check's words live — sample every INTERVAL, judge against the previous
sample (the alert store steps as with repeated checks), and redraw in place on a terminal. Off a terminal
(or with --format json/nagios) each result is printed after the previous one. Ctrl-C stops; the exit code
is the last check's."""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.text import Text

    from connwatch.engine import CheckResult
    from connwatch.model import Snapshot


def watch(args: argparse.Namespace, first: list[Snapshot], sample: Callable[[], list[Snapshot]],
          judge: Callable[[list[Snapshot], list[Snapshot]], CheckResult], rounds: int | None = None) -> int:
    """`rounds`: stop after that many checks (tests); None: until Ctrl-C."""
    from connwatch.outputs.console import console

    out = console()
    code, prev, done = 3, first, 0
    live = None
    if args.format == "text" and out.is_terminal:
        from rich.live import Live
        from rich.text import Text as Plain

        live = Live(Plain(f"connwatch check --watch: first result in {args.interval:g} s (Ctrl-C stops)"),
                    console=out, screen=True, auto_refresh=False, vertical_overflow="crop")
        live.start(refresh=True)
    try:
        while rounds is None or done < rounds:
            time.sleep(args.interval)
            cur = sample()
            result = judge(prev, cur)
            prev, code, done = cur, result.exit_code, done + 1
            if live is not None:
                live.update(_frame(result, out.width, args.verbose), refresh=True)
            else:
                from connwatch.commands.check import _print

                _print(args.format, result, args.verbose)
    except KeyboardInterrupt:
        pass
    finally:
        if live is not None:
            live.stop()
    return code


def _frame(result: CheckResult, width: int, verbose: bool) -> Text:
    """One check rendered off-screen at the terminal's width, as a renderable for Live."""
    from rich.console import Console
    from rich.text import Text

    from connwatch.outputs.text import render_check

    buf = io.StringIO()
    render_check(result, Console(file=buf, width=width, force_terminal=True, color_system="standard"), verbose)
    return Text.from_ansi(buf.getvalue().rstrip("\n") + f"\n(every {_age(result)}; Ctrl-C stops)")


def _age(result: CheckResult) -> str:
    return f"{result.current.taken_at - result.previous.taken_at:.0f} s"
