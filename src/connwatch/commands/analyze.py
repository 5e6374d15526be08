"""`connwatch analyze`: diagnose captures (ss, netstat, nstat, /proc, snapshots) from any host, offline."""

from __future__ import annotations

import argparse
import sys

from connwatch.cliargs import seconds

NAME = "analyze"
HELP = ("analyse captures of one host (files, a directory or a tarball such as a sosreport): exit 0 OK / "
        "1 WARNING / 2 CRITICAL / 3 UNKNOWN (unreadable input)")


def _port_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    if not sep or not low.isdecimal() or not high.isdecimal() or not 1 <= int(low) <= int(high) <= 65535:
        raise argparse.ArgumentTypeError(f"expected LO-HI with 1 <= LO <= HI <= 65535, got {text!r}")
    return int(low), int(high)


def _positive(text: str) -> int:
    if not text.isdecimal() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="FILE|DIR",
                   help="capture files, directories or tarballs of ONE host (two captures taken apart give rates)")
    p.add_argument("--format", choices=("text", "json", "nagios"), default="text")
    p.add_argument("--port-range", type=_port_range, default=None, metavar="LO-HI",
                   help="ephemeral port range of that host (default: from the capture, else the platform default)")
    p.add_argument("--somaxconn", type=_positive, default=None, metavar="N",
                   help="that host's somaxconn (kern.ipc.somaxconn on BSD/macOS), when the capture lacks it")
    p.add_argument("--interval", type=seconds(0, 86400 * 30, above=True), default=None, metavar="SECONDS",
                   help="seconds between successive captures given in order (text captures carry no timestamps)")
    p.add_argument("--config", default=None, help="TOML rules file overriding the defaults")
    p.add_argument("--verbose", action="store_true",
                   help="text: each problem's full article (description, explanation, user action), not the short "
                   "paragraph")
    p.add_argument("--read-special", action="store_true",
                   help="also read FIFOs and devices (e.g. <(ssh host ss -tan)): copied once, at most 1 GiB; "
                   "refused otherwise, as they may never end")


def run(args: argparse.Namespace) -> int:
    from connwatch.analyze.run import run_analysis
    from connwatch.errors import EXIT_UNKNOWN
    from connwatch.rules.config import load_config

    config = load_config(args.config)
    analysis, errors = run_analysis(args.paths, config, args.interval, args.port_range, args.somaxconn,
                                    args.read_special)
    for line in errors:
        print(line, file=sys.stderr)
    if analysis is None:
        return EXIT_UNKNOWN
    if args.format == "json":
        from connwatch.analyze.outdict import analysis_dict
        from connwatch.outputs.jsonout import dumps

        print(dumps(analysis_dict(analysis), "analyze"))
    elif args.format == "nagios":
        from connwatch.analyze.output import render_nagios

        print(render_nagios(analysis))
    else:
        from connwatch.analyze.output import render_text
        from connwatch.outputs.console import console

        render_text(analysis, console(), args.verbose)
    return analysis.exit_code
