"""`connwatch sources`: the heaviest sources per listening port, with their limits (or an nft rule)."""

from __future__ import annotations

import argparse

from connwatch.cli import add_common
from connwatch.cliargs import PORT, seconds, whole

NAME = "sources"
HELP = ("heaviest sources per listening port: connections held, half-open, distinct ports, against the "
        "per-source limits; --nft prints a ready nftables rule for a port")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=PORT, default=None, help="only this listening port")
    p.add_argument("--top", type=whole(1, 1000), default=None,
                   help="sources shown per port (default 10, [sources] top)")
    p.add_argument("--interval", type=seconds(0, 3600), default=0.0,
                   help="take a second sample after S seconds; distinct ports per source are counted over both "
                   "(default 0: one sample)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--nft", action="store_true",
                   help="print an nftables script limiting connections per source to --port (limit in force, "
                   "or --limit)")
    p.add_argument("--limit", type=whole(1, 10000), default=None,
                   help="with --nft: connections allowed per source (1-10000)")
    add_common(p, config=True)


def run(args: argparse.Namespace) -> int:
    from connwatch.commands.common import Build, collect_options, print_report, sampled_reports
    from connwatch.record import replace

    _validate(args)
    if args.nft:
        from connwatch.reports.sources import nft_script
        from connwatch.rules.config import load_config

        config = load_config(args.config)
        print(nft_script(args.port, args.limit, config.rules, config.sources), end="")
        return 0

    def prepare() -> Build:  # after the first sample (the rules and the report's modules)
        from connwatch.reports.sources import build_report
        from connwatch.rules.config import load_config

        config = load_config(args.config)
        rules, settings = config.rules, config.sources
        top = args.top or settings.top
        return lambda prev, cur: build_report(prev, cur, rules, settings, args.port, top)

    data, sample_ms = sampled_reports(
        # the report names listener owners only; TIME_WAIT dumped apart (see CollectOptions.split_time_wait)
        args, replace(collect_options(args, destination_owners=False), split_time_wait=True),
        prepare, "sources")
    data["sample_ms"] = sample_ms
    from connwatch.reports.sources import plain, render

    print_report(data, args.format, render, "sources", plain)
    return 0


def _validate(args: argparse.Namespace) -> None:
    from connwatch.errors import UsageError

    if args.nft and args.port is None:
        raise UsageError("--nft needs --port: the rule limits one port")
