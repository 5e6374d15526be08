"""`connwatch alerts [--all]` and `connwatch alerts show ID`: the alert history."""

from __future__ import annotations

import argparse

from connwatch.cli import add_common

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from connwatch.findings import Alert

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
            listed = store.listing(alert_id=args.id)
            if not listed:
                raise ConnwatchError(f"no alert with ID {args.id} in {store.path}")
        else:
            listed = store.listing(include_cleared=args.all)
    alerts = [a for _, a in listed]
    if args.format == "json":
        print(dumps({"alerts": [{**alert_dict(a), "scope": scope} for scope, a in listed]}, "alerts"))
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
    for line in scope_notes(listed, store.scope):
        out.print(line, markup=False)
    return 0


def scope_notes(listed: list[tuple[str, Alert]], here: str) -> list[str]:
    """Which listed alerts runs in another network namespace than this one recorded (alerts/store.py scopes):
    their resources are that namespace's (`TCP(8080)` of a run under `ip netns exec blue` is blue's port 8080)."""
    by_scope: dict[str, list[str]] = {}
    for scope, alert in listed:
        if scope != here:
            by_scope.setdefault(scope, []).append(str(alert.id))
    return [f"alert(s) {', '.join(ids)} recorded by runs in {scope or HOST_SCOPE}: their resources are that "
            "namespace's" for scope, ids in by_scope.items()]


HOST_SCOPE = "the host's network namespace"
