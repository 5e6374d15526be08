"""`connwatch check`: sample, wait, sample again, evaluate, print, exit like a Nagios plugin."""

from __future__ import annotations

import argparse
import gc
import sys

from connwatch.cli import add_common
from connwatch.cliargs import seconds
from connwatch.perf import gc_paused

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from rich.console import Console

    from connwatch.alerts.store import AlertStore
    from connwatch.clock import SystemClock
    from connwatch.collect import CollectOptions
    from connwatch.engine import CheckResult
    from connwatch.model import Snapshot
    from connwatch.rules.config import Config
    from connwatch.rules.rule import Rule

NAME = "check"
HELP = "sample twice INTERVAL seconds apart, raise alerts, exit 0 OK / 1 WARNING / 2 CRITICAL / 3 UNKNOWN"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--interval", type=seconds(0, 3600, above=True), default=5.0,
                   help="seconds between the two samples (default 5)")
    p.add_argument("--format", choices=("text", "json", "nagios"), default="text")
    p.add_argument("--verbose", action="store_true",
                   help="each alert in full (the support-article layout of `connwatch alerts show ID`)")
    p.add_argument("--watch", action="store_true",
                   help="repeat every INTERVAL and redraw in place (text; Ctrl-C stops; exits like the last check)")
    add_common(p, state=True, config=True)
    from connwatch.commands import plugin

    plugin.add_arguments(p)


def _wait(seconds: float, show: bool) -> None:
    import time

    if not show:
        time.sleep(seconds)
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("sampling: waiting {task.total:.0f} s for the second sample"), BarColumn(),
                  TimeRemainingColumn(), transient=True, console=_stderr()) as progress:
        task = progress.add_task("wait", total=seconds)
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(0.1, left))
            progress.update(task, completed=seconds - max(left, 0))


def _stderr() -> Console:
    from connwatch.outputs.console import console

    return console(stderr=True)


def run(args: argparse.Namespace) -> int:
    from connwatch.clock import SystemClock
    from connwatch.commands import plugin
    from connwatch.commands.common import collect_listed, collect_options, collect_selected, pairs
    plugin.check_timeout(args.timeout, args.interval)
    clock = SystemClock()
    opts = collect_options(args)
    if args.watch:  # runs until interrupted: -t does not apply
        from connwatch.commands.watch import watch
        from connwatch.rules.config import load_config

        config = plugin.override(load_config(args.config), args.warning, args.critical)
        before = collect_selected(clock, args, _first(opts))
        listed: list[frozenset[str] | None] = [None]  # the last sample's namespaces on the host
        again = resampler(lambda o: collect_listed(clock, args, o), opts, before, listed)
        return watch(args, before, again, lambda prev, cur: _judge_all(args, pairs(prev, cur), config, listed[0]))
    return _once(args, clock, opts)


def resampler(collect: Callable[[CollectOptions], tuple[list[Snapshot], frozenset[str] | None]],
              opts: CollectOptions, first: list[Snapshot], listed: list[frozenset[str] | None]
              ) -> Callable[[], list[Snapshot]]:
    """`--watch`'s next sample, each judged against the one before: a namespace that held nothing but its
    listeners at the last sample is not walked again while nothing moved (_second; a sample that skipped the walk
    carries the proof on: collect_quiet.empty_proof). `listed[0]`: the last sample's namespaces on the host."""
    last = [first]

    def again() -> list[Snapshot]:
        snaps, listed[0] = collect(_second(opts, last[0]))
        last[0] = snaps
        return snaps

    return again


def _once(args: argparse.Namespace, clock: SystemClock, opts: CollectOptions) -> int:
    """One check to its end without automatic cyclic GC (start-up's pause, perf.startup_begins, kept past the
    first sample): the samples, rules and judging free almost no cycle, yet the collector ran 11 more passes.
    What the run made is then frozen (perf.startup_over's way): the process ends after the print, and the
    interpreter's last collection at exit walked all of it (one gen2 pass, 2.9 ms, collecting ~600 objects).
    Measured (gc.callbacks, 35k sockets, VM shared): 15 gen0 + 1 gen1 passes 2.7-3.1 ms then 2.9 ms at exit,
    now 5 + 1 before main() ~1 ms and 0.02 ms at exit. --watch keeps the collector: it runs on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _checked(args, clock, opts)
    finally:
        if enabled:
            gc.freeze()  # (before enable(): else the next allocation starts a pass over everything made)
            gc.enable()


def _checked(args: argparse.Namespace, clock: SystemClock, opts: CollectOptions) -> int:
    from connwatch.commands import plugin
    from connwatch.commands.common import collect_listed, collect_selected, pairs

    with plugin.deadline(args.timeout):
        before = collect_selected(clock, args, _first(opts))
        sampled = clock.monotonic()
        # The rules (and the attribute modules they name) load within the interval, not before the first
        # sample: a bad config still ends the run (exit 3) before the wait.
        from connwatch.rules.config import load_config

        config = plugin.override(load_config(args.config), args.warning, args.critical)
        _wait(max(0.0, args.interval - (clock.monotonic() - sampled)), args.format == "text" and sys.stderr.isatty())
        after, present = collect_listed(clock, args, _second(opts, before))
        result = _judge_all(args, pairs(before, after), config, present)
    _print(args.format, result, args.verbose, config.rules)
    return result.exit_code


def _second(opts: CollectOptions, before: list[Snapshot]) -> CollectOptions:
    """The second sample of a pair: a namespace whose first sample's dump held nothing but its listeners is not
    walked again while its Tcp counters, inuse and tw read the same (CollectOptions.empty_before)."""
    from connwatch.collect_quiet import empty_proof
    from connwatch.record import replace

    proofs = {s.netns.inode: p for s in before if s.netns is not None and (p := empty_proof(s)) is not None}
    return replace(opts, empty_before=proofs) if proofs else opts


def _first(opts: CollectOptions) -> CollectOptions:
    """The first sample of a pair: owners are only reported from the second (no fd scan), and of the
    non-listening sockets the judging compares only those on listening ports (CollectOptions.inbound_only;
    tests/live/test_first_sample_live.py judges both ways on a real load)."""
    from connwatch.record import replace

    return replace(opts, owners=False, inbound_only=True)


def _judge(args: argparse.Namespace, prev: Snapshot, cur: Snapshot, config: Config) -> CheckResult:
    """Evaluate with the alert store; without it (one clear warning) if the state dir is unusable."""
    return _judge_all(args, [(prev, cur)], config)


@gc_paused  # measurements, findings, facts, rows: many small acyclic objects, all kept to the print (100
def _judge_all(args: argparse.Namespace, judged: list[tuple[Snapshot, Snapshot]], config: Config,
               present: frozenset[str] | None = None) -> CheckResult:
    """Each namespace judged on its own samples (its alerts keyed by it), one verdict for all; with `present`
    (every namespace's key on the host), the alerts of namespaces gone step as vanished (_with_vanished)."""
    from connwatch.commands.common import open_store
    from connwatch.engine import judge, merge
    from connwatch.errors import StateError

    try:
        store = open_store(args)
    except StateError as exc:
        result = merge([judge(p, c, config, None, store_error=str(exc)) for p, c in judged])
    else:
        with store:
            result = merge([judge(p, c, config, store) for p, c in judged])
            if present is not None and result.store_error is None:
                result = _with_vanished(result, store, present)
    if result.store_error is not None:
        print(f"connwatch: warning: {result.store_error}", file=sys.stderr)
    return result


def _with_vanished(result: CheckResult, store: AlertStore, present: frozenset[str]) -> CheckResult:
    """The verdict with the alerts of namespaces no longer on the host stepped (engine.retire_vanished): those
    cleared are listed with the cleared ones, saying why."""
    from connwatch.alerts.lifecycle import StepResult
    from connwatch.engine import retire_vanished
    from connwatch.errors import StateError
    from connwatch.record import replace

    try:
        gone = retire_vanished(store, present, result.current.taken_at)
    except StateError as exc:
        return replace(result, store_error=str(exc))
    if not gone.alerts:
        return result
    s = result.step
    return replace(result, step=StepResult(s.raised, s.updated, s.cleared + gone.cleared,
                                           s.still_active_clean + gone.still_active_clean))


@gc_paused  # namespaces, 15,700 findings: the collector's passes were ~50 ms of judging and ~50 of the JSON)
def _print(fmt: str, result: CheckResult, verbose: bool = False, rules: Sequence[Rule] = ()) -> None:
    if fmt == "json":
        from connwatch.outputs.jsonout import check_text

        print(check_text(result))
    elif fmt == "nagios":
        from connwatch.outputs.nagios import render

        print(render(result, rules=rules))
    else:
        if not verbose and _print_plain(result):
            return
        from connwatch.outputs.console import console
        from connwatch.outputs.text import render_check

        render_check(result, console(), verbose)


def _print_plain(result: CheckResult) -> bool:
    """Off a terminal, the text render_check would print, made without rich where it can be
    (outputs/check_plain.py); False: nothing printed."""
    from connwatch.outputs.width import PIPE_WIDTH, plain_stream, terminal_width, write_lines

    if not plain_stream(sys.stdout):
        return False
    from connwatch.outputs.check_plain import plain_check

    lines = plain_check(result, terminal_width(sys.stdout) or PIPE_WIDTH)
    if lines is None:
        return False
    write_lines(sys.stdout, lines)
    return True
