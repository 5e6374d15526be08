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
    from connwatch.commands.common import collect_options, collect_selected, is_other

    snaps = collect_selected(SystemClock(), args, collect_options(args, sockets=False))
    limitations = list(dict.fromkeys(x for s in snaps for x in s.limitations))
    if args.format == "json":
        from connwatch.outputs.jsonout import dumps, snapshot_listeners
        from connwatch.snapshot_json import netns_dict

        rows = []
        for snap in snaps:
            for row in snapshot_listeners(snap):
                if is_other(snap) and snap.netns is not None:
                    row["netns"] = netns_dict(snap.netns)
                rows.append(row)
        print(dumps({"listeners": rows, "limitations": limitations}, "listeners"))
        return 0
    from connwatch.outputs.console import console
    from connwatch.outputs.fit import print_fitted
    from connwatch.outputs.text import listeners_cells

    out = console()
    for snap in snaps:
        if snap.listeners or not is_other(snap):
            title = f"TCP listeners in {snap.netns.label}" if is_other(snap) and snap.netns else "TCP listeners"
            print_fitted(out, *listeners_cells(snap, width=out.width), title=title)
    for note in limitations:
        out.print(f"[dim]note: {note}[/dim]")
    return 0
