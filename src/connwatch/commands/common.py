"""Helpers shared by the subcommands (imported only when a command runs)."""

from __future__ import annotations

from collections.abc import Callable

from connwatch.collect import CollectOptions
from connwatch.errors import SourceUnavailable

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:  # (the alert store, and sqlite3 with it, is imported only by the commands that open it)
    import argparse
    from pathlib import Path
    from typing import Any

    from rich.console import Console

    from connwatch.alerts.store import AlertStore
    from connwatch.clock import Clock
    from connwatch.model import Snapshot


def collect_options(args: argparse.Namespace, sockets: bool = True, destination_owners: bool = True) -> CollectOptions:
    return CollectOptions(proc_root=args.proc_root, use_netlink=not args.no_netlink, sockets=sockets,
                          destination_owners=destination_owners)


def collect_selected(clock: Clock, args: argparse.Namespace, opts: CollectOptions) -> list[Snapshot]:
    """One snapshot per network namespace `--netns` selects (own first); the own one alone for a copied
    /proc tree or `--netns own`."""
    from connwatch.collect_netns import collect_all

    return collect_all(clock, opts, getattr(args, "netns", "own"))


def collect_listed(clock: Clock, args: argparse.Namespace, opts: CollectOptions) -> tuple[list[Snapshot],
                                                                                       frozenset[str] | None]:
    """collect_selected(), and the key of every namespace on the host when they were listed (for
    engine.retire_vanished; None for `--netns own`, a copied /proc tree or an incomplete listing)."""
    from connwatch.collect_netns import collect_listed as listed

    return listed(clock, opts, getattr(args, "netns", "own"))


def pairs(before: list[Snapshot], after: list[Snapshot]) -> list[tuple[Snapshot, Snapshot]]:
    """Each namespace's two samples. A namespace new in the second sample is judged on that sample
    alone (no deltas: a container that just started has rejected nothing we saw); one gone is left out."""
    first = {_ns_key(s): s for s in before}
    return [(first.get(_ns_key(s), s), s) for s in after]


def is_other(snap: Snapshot) -> bool:
    """A snapshot of another namespace than connwatch's own (a container, a pod, an `ip netns`)."""
    return snap.netns is not None and not snap.netns.own


def with_namespaces(own: dict[str, Any], others: list[tuple[Snapshot, dict[str, Any]]]) -> dict[str, Any]:
    """The own namespace's report, unchanged in shape, plus `namespaces`: each other one's report with
    its `netns` {inode, name, container, pod, ...}."""
    from connwatch.snapshot_json import netns_dict

    if not others:
        return own
    return {**own, "namespaces": [{"netns": netns_dict(s.netns), **data} for s, data in others
                                  if s.netns is not None]}


def print_report(data: dict[str, Any], fmt: str, render: Callable[[dict[str, Any], Console], None],
                 kind: str, plain: Callable[[dict[str, Any], int], list[str] | None] | None = None) -> None:
    """A report as JSON (under the header of its `kind`), or rendered: the own namespace's, then each other
    namespace's under its name. Off a terminal `plain` (when given) makes the lines without rich; where it
    cannot (None for any part), rich draws the whole report."""
    if fmt == "json":
        from connwatch.outputs.jsonout import dumps

        print(dumps(data, kind))
        return
    if plain is not None and _print_plain(data, plain):
        return
    from rich.text import Text

    from connwatch.outputs.console import console

    out = console()
    render(data, out)
    for space in data.get("namespaces", ()):
        # A Text, not markup: a name may look like markup, and an escaped name ending in backslashes merged
        # them with the closing tag (`\\` printed as `\`; found by test_sources_text's fuzzing)
        out.print()
        out.print(Text(f"in {space['netns']['label']}", style="bold"))
        render(space, out)


def _print_plain(data: dict[str, Any], plain: Callable[[dict[str, Any], int], list[str] | None]) -> bool:
    """print_report's text without rich, as its Console prints it off a terminal; False (nothing printed)
    where stdout is a terminal or `plain` leaves a part to rich."""
    import sys

    from connwatch.outputs.width import PIPE_WIDTH, plain_stream, terminal_width, write_lines

    if not plain_stream(sys.stdout):
        return False
    width = terminal_width(sys.stdout) or PIPE_WIDTH
    lines = plain(data, width)
    for space in data.get("namespaces", ()):
        title = f"in {space['netns']['label']}"  # (printed by rich as bold, its markup escaped)
        more = plain(space, width)
        if lines is None or more is None or len(title) > width or not (title.isascii() and title.isprintable()):
            return False
        lines += ["", title, *more]
    if lines is None:
        return False
    write_lines(sys.stdout, lines)
    return True


Build = Callable[["Snapshot", "Snapshot"], "dict[str, Any]"]


def sampled_reports(args: argparse.Namespace, opts: CollectOptions, prepare: Callable[[], Build],
                    listed: str) -> tuple[dict[str, Any], float]:
    """Sample every selected namespace (twice, `args.interval` seconds apart, when it is > 0), build each
    namespace's report from its two samples (the same one twice without an interval), and return the own
    namespace's report with those of the others that list any `listed` (with_namespaces), and how long
    the first sample took in ms. `prepare` (loading the rules and the report's modules) runs after the
    first sample, within the interval: the kernel is read sooner, and a bad config still ends the run
    before the wait. SourceUnavailable when sockets could not be listed."""
    import time

    from connwatch.clock import SystemClock

    clock = SystemClock()
    start = time.perf_counter()
    before = after = collect_selected(clock, args, opts)
    sampled = clock.monotonic()
    sample_ms = round((time.perf_counter() - start) * 1000, 1)
    build = prepare()
    if args.interval > 0:
        clock.sleep(max(0.0, args.interval - (clock.monotonic() - sampled)))
        after = collect_selected(clock, args, opts)
    judged = pairs(before, after)
    need_sockets(judged[0][1])
    reports = [(cur, build(prev, cur)) for prev, cur in judged if cur.sockets is not None]
    return with_namespaces(reports[0][1], [x for x in reports[1:] if is_other(x[0]) and x[1][listed]]), sample_ms


def _ns_key(snap: Snapshot) -> tuple[int, str] | None:
    n = snap.netns
    return None if n is None else (n.inode, n.key)


def state_dir(args: argparse.Namespace) -> Path:
    from pathlib import Path  # (not for `snapshot`: see sources/procfs.py's LIVE_ROOT)

    from connwatch.alerts.store import default_state_dir  # sqlite3: only for the commands that keep alerts

    return Path(args.state_dir) if args.state_dir else default_state_dir()


def open_store(args: argparse.Namespace) -> AlertStore:
    """The state database, in the scope of the network namespace this runs in (sources/netns.run_scope)."""
    from connwatch.alerts.store import AlertStore
    from connwatch.sources.netns import run_scope

    return AlertStore.open(state_dir(args), run_scope())


def need_sockets(cur: Snapshot) -> None:
    """Commands about connections cannot work from listeners alone: say which source failed."""
    if cur.sockets is None:
        failed = "; ".join(f"{s.name}: {s.detail}" for s in cur.statuses if not s.ok) or "no socket source"
        raise SourceUnavailable("sockets", f"could not list sockets ({failed})")
