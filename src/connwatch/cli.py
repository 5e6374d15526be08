"""Command-line front. Imports stay lazy so `connwatch --help` starts fast."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from connwatch.errors import EXIT_UNKNOWN, ConnwatchError
from connwatch.perf import startup_begins, startup_over

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    import argparse

DEFAULT_CONFIG = "/etc/connwatch/connwatch.toml"  # used by every command when present and --config is not given
# Subcommand modules under connwatch.commands; each defines NAME, HELP, add_arguments(), run().
SAMPLING = frozenset(("check", "snapshot", "listeners", "destinations", "sources", "top"))  # (see perf.startup_begins)
COMMANDS = ("check", "snapshot", "listeners", "alerts", "destinations", "run", "rules", "sources", "analyze", "top")
# Commands that keep nothing past their output (no store, no files, no threads left): run as the console
# script, their process ends without the interpreter's finalization (_end)
FAST_EXIT = frozenset(("snapshot", "listeners"))


def add_common(parser: argparse.ArgumentParser, *, state: bool = False, config: bool = False,
               netns: bool = True) -> None:
    """Options shared by several commands."""
    if netns:
        parser.add_argument("--netns", default=os.environ.get("CONNWATCH_NETNS", "all"),
                            metavar="all|own|NAME|PID|PATH",
                            help="network namespaces to sample: all (default, as root: containers and pods too), "
                            "own, an `ip netns`/container/pod NAME, a PID's or a PATH's (env CONNWATCH_NETNS)")
    parser.add_argument("--proc-root", default=os.environ.get("CONNWATCH_PROC_ROOT", "/proc"),
                        help="read procfs from this root (default /proc)")
    parser.add_argument("--no-netlink", action="store_true",
                        help="do not use netlink sock_diag; read /proc/net/tcp (loses backlog and drops)")
    if state:
        parser.add_argument("--state-dir", default=None,
                            help="alert history directory (default /var/lib/connwatch as root, "
                            "~/.local/state/connwatch otherwise; env CONNWATCH_STATE_DIR)")
    if config:
        parser.add_argument("--config", default=None, help="TOML rules file overriding the defaults (default "
                            f"{DEFAULT_CONFIG} when it exists; env CONNWATCH_CONFIG)")


def discover_config(env: Mapping[str, str], default: str = DEFAULT_CONFIG) -> str | None:
    """The config file when --config is not given: $CONNWATCH_CONFIG (empty: none), else `default` if it
    exists, else None (the built-in rules)."""
    if "CONNWATCH_CONFIG" in env:
        return env["CONNWATCH_CONFIG"] or None
    return default if os.path.isfile(default) else None


def chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand `argv` runs when only it needs building: its name when it comes first (after no
    option but -V/--version), else None (top-level help, completion, man page, no or a mistyped
    command: the whole parser is built)."""
    if argv and argv[0] in COMMANDS:
        return argv[0]
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; `only`: just that subcommand's (the others' modules are not even imported,
    so a command starts without loading every other command's code). In cliparser.py: argparse loads only
    where it parses (see fastargs.py)."""
    from connwatch.cliparser import build_parser as build

    return build(only)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script's entry (argv None: sys.argv; see _end); tests pass argv, and main returns."""
    script = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = chosen_command(argv)
    if chosen in SAMPLING:
        startup_begins()
    try:
        code = _main(argv, chosen)
    finally:
        startup_over(freeze=False)  # (a command that ended before its first sample: collection as before)
    if script and chosen in FAST_EXIT:
        _end(code)
    return code


def _end(code: int) -> None:
    """End the process once the output is flushed (os._exit), without the interpreter's finalization (every
    module and object freed one by one, to no end for a process that is over): measured 5.5 ms of a
    35k-socket `snapshot --format json`'s 89 ms CPU (medians of 40 interleaved runs). Returns when the flush
    fails (a reader gone: the interpreter's own exit reports it, as before)."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        return
    os._exit(code)


def _arguments(argv: list[str], chosen: str | None) -> argparse.Namespace | int:
    """The parsed arguments, or the exit code of --help, --version or a usage error. Plain options of a
    command are read by fastargs.py (the same namespace, without argparse), the rest by argparse."""
    from connwatch.fastargs import parse

    args = parse(chosen, argv[1:]) if chosen is not None else None
    if args is not None:
        return args
    parser = build_parser(chosen)
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version (0) or a usage error (3): a code, not an exception
        return done.code if isinstance(done.code, int) else EXIT_UNKNOWN
    if args.command is None:
        parser.print_help()
        return EXIT_UNKNOWN
    return args


def _main(argv: list[str], chosen: str | None) -> int:
    args = _arguments(argv, chosen)
    if isinstance(args, int):
        return args
    if getattr(args, "config", "") is None:
        args.config = discover_config(os.environ, DEFAULT_CONFIG)
    try:
        return int(args._module.run(args))
    except ConnwatchError as exc:
        print(f"connwatch: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("connwatch: interrupted", file=sys.stderr)
        return EXIT_UNKNOWN
    except BrokenPipeError:  # the reader went away (`| head`): not a verdict on the host
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail again
        return EXIT_UNKNOWN
    except Exception as exc:  # never a traceback for users; keep one for developers
        if os.environ.get("CONNWATCH_DEBUG"):
            raise
        print(f"connwatch: internal error: {type(exc).__name__}: {exc} (set CONNWATCH_DEBUG=1 for details)",
              file=sys.stderr)
        return EXIT_UNKNOWN
