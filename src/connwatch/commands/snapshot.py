"""`connwatch snapshot`: one raw sample (counters, sysctls, listeners, socket aggregates)."""

from __future__ import annotations

from connwatch.cli import add_common

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:  # (argparse loads only where it parses: see fastargs.py)
    import argparse

NAME = "snapshot"
HELP = "print one raw snapshot (JSON by default: usable later as an offline capture)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("json", "text"), default="json")
    p.add_argument("--listeners-only", action="store_true",
                   help="skip the dump of non-listening sockets (sub-millisecond on any host)")
    add_common(p)


def run(args: argparse.Namespace) -> int:
    from connwatch.clock import SystemClock
    from connwatch.commands.common import collect_options, collect_selected, is_other

    snaps = collect_selected(SystemClock(), args, collect_options(args, sockets=not args.listeners_only))
    snap = snaps[0]
    if args.format == "json":
        from connwatch.outputs.jsonout import dumps
        from connwatch.snapshot_json import to_dict

        data = to_dict(snap)
        others = [to_dict(s) for s in snaps[1:] if is_other(s)]
        if others:  # every other namespace sampled, each a capture of its own (with its `netns`)
            data["namespaces"] = others
        print(dumps(data, "snapshot"))
        return 0
    from rich.table import Table

    from connwatch.outputs.console import console
    from connwatch.outputs.text import listeners_table

    out = console()
    out.print(listeners_table(snap, width=out.width))
    if snap.sockets is not None:
        states = Table(title=f"TCP sockets by state ({snap.sockets.total} total)", title_justify="left")
        states.add_column("State")
        states.add_column("Sockets", justify="right")
        for name, count in sorted(snap.sockets.by_state.items(), key=lambda kv: -kv[1]):
            states.add_row(name, str(count))
        out.print(states)
    counters = Table(title="Counters (cumulative since boot)", title_justify="left")
    counters.add_column("Counter")
    counters.add_column("Value", justify="right")
    for name in sorted(snap.counters):
        if name.startswith(("TcpExt.Listen", "TcpExt.TCPReqQ", "TcpExt.Syncookies", "TcpExt.TW", "Tcp.")):
            counters.add_row(name, str(snap.counters[name]))
    out.print(counters)
    for note in snap.limitations:
        out.print(f"[dim]note: {note}[/dim]")
    return 0
