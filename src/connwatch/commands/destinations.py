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
    from connwatch.commands.common import Build, collect_options, print_report, sampled_reports

    def prepare() -> Build:  # after the first sample (the rules and the report's modules)
        from connwatch.reports.destinations import build_report
        from connwatch.rules.config import load_config

        rules = load_config(args.config).rules
        return lambda prev, cur: build_report(prev, cur, rules, args.top)

    data, _ = sampled_reports(args, collect_options(args), prepare, "destinations")
    from connwatch.reports.destinations import plain, render

    print_report(data, args.format, render, "destinations", plain)
    return 0
