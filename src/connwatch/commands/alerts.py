"""`connwatch alerts [--all]` and `connwatch alerts show ID`: the alert history."""

from __future__ import annotations

import argparse

from connwatch.cli import add_common

NAME = "alerts"
HELP = "list active alerts (--all: also cleared ones) or `alerts show ID` one in full"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=("show",), help="show one alert in full")
    p.add_argument("id", nargs="?", type=int, help="alert ID (with show)")
    p.add_argument("--all", action="store_true", help="include cleared alerts")
    p.add_argument("--format", choices=("text", "json"), default="text")
    add_common(p, state=True, netns=False)


def run(args: argparse.Namespace) -> int:
    from connwatch.commands.common import open_store
    from connwatch.errors import ConnwatchError
    from connwatch.outputs.jsonout import alert_dict, dumps

    if args.action == "show" and args.id is None:
        raise ConnwatchError("alerts show needs an alert ID (see `connwatch alerts --all`)")
    with open_store(args) as store:
        if args.action == "show":
            alert = store.get(args.id)
            if alert is None:
                raise ConnwatchError(f"no alert with ID {args.id} in {store.path}")
            alerts = [alert]
        else:
            alerts = store.history(include_cleared=args.all)
        elsewhere = store.active_elsewhere() if args.action != "show" and args.format == "text" else {}
    if args.format == "json":
        print(dumps({"alerts": [alert_dict(a) for a in alerts]}, "alerts"))
        return 0
    from connwatch.outputs.console import console
    from connwatch.outputs.text import alert_block, alerts_table

    out = console()
    if args.action == "show":
        out.print(alert_block(alerts[0]))
    elif alerts:
        out.print(alerts_table(alerts))
    else:
        out.print("No active alerts." if not args.all else "No alerts recorded.")
    for scope, n in elsewhere.items():  # (alerts/store.py: each run namespace keeps its own)
        where = scope or "the host's network namespace"
        out.print(f"{n} active alert(s) recorded by runs in {where}: `connwatch alerts` run there lists them, "
                  "`connwatch alerts show ID` shows any", markup=False)
    return 0
