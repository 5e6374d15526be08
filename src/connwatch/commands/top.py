"""`connwatch top`: a full-screen live view, as top/htop users expect.

Listeners are polled every second (a listener-only netlink dump, well under a millisecond); destinations,
sources and alerts follow each full sample (--interval, default 5 s). Alerts are judged in memory with
the same rules as `check`; the alert store is never opened. Drawn with rich Live on the alternate screen
(redrawn in place, no clear: no flicker); keys are read in cbreak mode and the terminal is restored on
any exit. `--batch` prints frames one after the other (no keys), `-n N` stops after N frames.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from connwatch.cli import add_common
from connwatch.cliargs import seconds, whole

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import Any

    from connwatch.findings import Alert
    from connwatch.model import Snapshot
    from connwatch.outputs.top import TopData, TopView
    from connwatch.rules.config import Config

NAME = "top"
HELP = "full-screen live view: listeners (every second), destinations, sources, active alerts; q quits"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--interval", type=seconds(0.5, 3600), default=5.0,
                   help="seconds between full samples (destinations, sources, alerts; default 5)")
    p.add_argument("--listener-interval", type=seconds(0.2, 60), default=1.0,
                   help="seconds between listener polls (default 1)")
    p.add_argument("--batch", "-b", action="store_true", help="print frames one after the other, no keys")
    p.add_argument("--iterations", "-n", type=whole(1, 1_000_000), default=None, help="stop after N frames")
    p.add_argument("--top", type=whole(1, 1000), default=50, help="destinations and sources kept (default 50)")
    add_common(p, config=True)


class Sampler:
    """What top shows, refreshed: listener polls and full samples, rates between polls, alerts in memory."""

    def __init__(self, args: argparse.Namespace) -> None:
        from connwatch.clock import SystemClock
        from connwatch.collect import CollectOptions
        from connwatch.record import replace

        self.args, self.clock = args, SystemClock()
        self._config: Config | None = None  # loaded at the first full sample: the first frame comes sooner
        self.full_opts = CollectOptions(proc_root=args.proc_root, use_netlink=not args.no_netlink)
        self.poll_opts = replace(self.full_opts, sockets=False, owners=False)
        self.prev_full: list[Snapshot] | None = None
        self.drops: dict[tuple[str, Any], tuple[int, float]] = {}
        self.owners: dict[tuple[str, Any], Any] = {}
        self.active: dict[tuple[str, str], Alert] = {}
        self.data: TopData | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            from connwatch.rules.config import load_config

            self._config = load_config(self.args.config)
        return self._config

    def poll(self) -> None:
        from connwatch.collect_netns import collect_all

        snaps = collect_all(self.clock, self.poll_opts, self.args.netns)
        import dataclasses  # (after the first read of the kernel, as rich)

        from connwatch.outputs.top import ListenerRow, TopData
        from connwatch.record import replace

        rows = []
        for snap in snaps:
            ns = _ns_label(snap)
            for lst in snap.listeners:
                key = (ns, lst.identity)
                rate = None
                if key in self.drops and lst.drops is not None:
                    drops, at = self.drops[key]
                    rate = max(lst.drops - drops, 0) / max(snap.monotonic - at, 1e-3)
                if lst.drops is not None:
                    self.drops[key] = (lst.drops, snap.monotonic)
                owner = self.owners.get(key)
                rows.append(ListenerRow(ns, replace(lst, owner=owner) if owner else lst, rate))
        old = self.data or TopData(host=snaps[0].host.hostname, taken_at=snaps[0].taken_at,
                                   interval_s=self.args.interval)
        self.data = dataclasses.replace(old, taken_at=snaps[0].taken_at, listeners=tuple(rows))

    def full(self) -> None:
        import dataclasses

        from connwatch.alerts.lifecycle import step
        from connwatch.commands.common import collect_selected, pairs
        from connwatch.engine import judge
        from connwatch.reports import destinations, sources

        start = time.perf_counter()
        cur = collect_selected(self.clock, self.args, self.full_opts)
        judged = pairs(self.prev_full or cur, cur)
        dests, srcs, findings = [], [], []
        for prev, snap in judged:
            ns = _ns_label(snap)
            self.owners.update({(ns, x.identity): x.owner for x in snap.listeners if x.owner is not None})
            if snap.sockets is None:
                continue
            d = destinations.build_report(prev, snap, self.config.rules, self.args.top)
            dests += [{**r, "namespace": ns} for r in d["destinations"]]
            s = sources.build_report(prev, snap, self.config.rules, self.config.sources, None, 10)
            srcs += [{**r, "namespace": ns} for r in s["sources"]]
            if self.prev_full is not None:
                findings += list(judge(prev, snap, self.config, None).findings)
        if self.prev_full is not None:
            done = step(self.active, findings, cur[0].taken_at, cur[0].host.hostname)
            self.active = {a.key: a for a in done.raised + done.updated + done.still_active_clean}
        self.prev_full = cur
        assert self.data is not None
        notes = tuple(dict.fromkeys(n for s in cur for n in s.limitations))
        self.data = dataclasses.replace(
            self.data, destinations=tuple(dests), sources=tuple(srcs), alerts=tuple(self.active.values()),
            full_at=cur[0].taken_at, full_ms=(time.perf_counter() - start) * 1000, notes=notes)


def _ns_label(snap: Snapshot) -> str:
    n = snap.netns
    return "" if n is None or n.own else n.label


def run(args: argparse.Namespace) -> int:
    from connwatch.errors import UsageError

    if not args.batch and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("top needs a terminal (use --batch -n N to print frames to a pipe)")
    sampler = Sampler(args)
    if args.config:
        sampler.config  # noqa: B018 - a bad --config is one line and exit 3 before the screen opens
    sampler.poll()
    from connwatch.outputs.top import TopView

    view = TopView()
    if args.batch:
        return _batch(args, sampler, view)
    from connwatch.commands.topkeys import interactive

    return interactive(args, sampler, view)


def _batch(args: argparse.Namespace, sampler: Sampler, view: TopView) -> int:
    from connwatch.outputs.console import console
    from connwatch.outputs.top import frame

    out = console()
    height = int(os.environ.get("LINES", "0") or 0) or 50
    next_full = time.monotonic()
    for shown in range(args.iterations or 1_000_000):
        if time.monotonic() >= next_full:
            sampler.full()
            next_full = time.monotonic() + args.interval
        assert sampler.data is not None
        out.print(frame(sampler.data, view, out.width, height))
        if args.iterations is not None and shown + 1 >= args.iterations:
            break
        time.sleep(args.listener_interval)
        sampler.poll()
    return 0
