"""`connwatch destinations`: the busiest destinations by ephemeral ports held, with state mix and forecast."""

from __future__ import annotations

import argparse

from connwatch.cli import add_common
from connwatch.cliargs import seconds, whole

NAME = "destinations"
HELP = ("busiest destinations (remote ip:port per local address): ephemeral ports held with usage bars, "
        "state mix, TIME_WAIT reuse, rate and exhaustion forecast")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--interval", type=seconds(0, 3600), default=1.0,
                   help="seconds between two samples for rates and the forecast (default 1; 0 = one sample)")
    p.add_argument("--top", type=whole(1, 1000), default=20, help="how many destinations to show (default 20)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    add_common(p, config=True)


def run(args: argparse.Namespace) -> int:
    from connwatch.clock import SystemClock
    from connwatch.commands.common import (
        collect_options,
        collect_selected,
        is_other,
        need_sockets,
        pairs,
        print_report,
        with_namespaces,
    )
    from connwatch.reports.destinations import build_report, render
    from connwatch.rules.config import load_config

    rules = load_config(args.config).rules
    clock = SystemClock()
    before = after = collect_selected(clock, args, collect_options(args))
    if args.interval > 0:
        clock.sleep(args.interval)
        after = collect_selected(clock, args, collect_options(args))
    judged = [(prev if args.interval > 0 else cur, cur) for prev, cur in pairs(before, after)]
    need_sockets(judged[0][1])
    reports = [(cur, build_report(prev, cur, rules, args.top)) for prev, cur in judged if cur.sockets is not None]
    data = with_namespaces(reports[0][1], [x for x in reports[1:] if is_other(x[0]) and x[1]["destinations"]])
    print_report(data, args.format, render, "destinations")
    return 0
