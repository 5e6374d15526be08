"""`connwatch listeners`: like `ss -ltnm`, but readable."""

from __future__ import annotations

import argparse

from connwatch.cli import add_common

NAME = "listeners"
HELP = "table of TCP listeners: port, address, queue/backlog with fill bar, drops, owner, listening since"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("text", "json"), default="text")
    add_common(p)


def run(args: argparse.Namespace) -> int:
    from connwatch.clock import SystemClock
    from connwatch.collect import collect
    from connwatch.commands.common import collect_options

    snap = collect(SystemClock(), collect_options(args, sockets=False))
    if args.format == "json":
        from connwatch.outputs.jsonout import dumps, snapshot_listeners

        print(dumps({"listeners": snapshot_listeners(snap), "limitations": list(snap.limitations)}))
        return 0
    from connwatch.outputs.console import console
    from connwatch.outputs.text import listeners_table

    out = console()
    out.print(listeners_table(snap))
    for note in snap.limitations:
        out.print(f"[dim]note: {note}[/dim]")
    return 0
