"""The agent's full sample of every namespace `--netns` selects (agent/loop.py hands it the options).

One discovery per sample, shared by the sample and the listener poller; each namespace's probe files read before
the sample's dumps, so that its LISTEN dump serves the next polls (NetnsListenerPoller.adopt) and a quiet
namespace's sample takes the poller's listeners without a dump (NetnsListenerPoller.known) or its last sample
serves again (agent/quiet.py); owners attached once, to the fresh and the served samples; and the key of every
namespace on the host, for the alerts of those gone (engine.retire_vanished).
"""

from __future__ import annotations

from collections.abc import Callable

from connwatch.agent.quiet import QuietSamples
from connwatch.clock import Clock
from connwatch.collect import NETLINK, REUSED_LISTENERS, CollectOptions
from connwatch.collect_netns import (
    NetnsListenerPoller,
    collect_selected,
    discover,
    parse_selector,
    present_keys,
    select,
)
from connwatch.collect_owners import attach_owners
from connwatch.model import Snapshot
from connwatch.record import replace

LISTENERS_SOURCE = f"{NETLINK} listeners"  # a sample's LISTEN dump (collect._sockets)


class NetnsSampler:
    def __init__(self, proc_root: str, selector: str, clock: Clock, samples: dict[str, int],
                 poller: Callable[[str], NetnsListenerPoller] = NetnsListenerPoller) -> None:
        self.proc_root, self.selector, self.clock, self.samples = proc_root, selector, clock, samples
        self._poller = poller
        self.others: NetnsListenerPoller | None = None  # the other namespaces' listeners (made at the first sample)
        self.quiet: QuietSamples | None = QuietSamples(clock.monotonic)  # (agent/quiet.py; None: never)
        # Every namespace's key on the host at the last discovery (None: not listed, or not completely), and
        # whether the alerts of namespaces gone may need a step (engine.retire_vanished)
        self.present: frozenset[str] | None = None
        self.retire_due = True
        self.served: frozenset[int] = frozenset()  # the namespaces whose last sample served again

    def sample(self, opts: CollectOptions) -> list[Snapshot]:
        """One snapshot per selected namespace, own first."""
        found, listing = discover(opts)  # once per sample: the poller and the sample share it
        present = present_keys(found, listing)
        self.retire_due = self.retire_due or present != self.present
        self.present = present
        chosen = select(found, parse_selector(self.selector), self.proc_root)
        if self.others is None:
            self.others = self._poller(self.proc_root)
        self.others.refresh(ref for ref, _info in chosen if not ref.own)
        probes = self.others.probe_all()  # before the sample's dumps: its listeners then serve the next polls
        known = self.others.known(probes)  # and quiet namespaces' samples take them without a dump
        rests = self.others.rest_all() if self.quiet is not None else {}
        kept = self.quiet.take(chosen, probes, rests, known) if self.quiet is not None else {}
        fresh = [c for c in chosen if c[0].inode not in kept]
        self.served = frozenset(kept)
        if kept:
            self.samples["netns_served_again"] = self.samples.get("netns_served_again", 0) + len(kept)
        # owners are attached below, to the served samples too: the poller and the kept samples hold the
        # listeners as dumped, and one scan names every listener's owner afresh
        bare = replace(opts, owners=False, known_listeners=known or None)
        snaps = collect_selected(self.clock, bare, fresh, listing) if fresh else []
        self._adopt(snaps, probes)
        if self.quiet is not None:
            self.quiet.keep(chosen, snaps, probes, rests, known)
            snaps = self.quiet.in_order(chosen, snaps, kept, self.clock.time(), self.clock.monotonic())
        return attach_owners(snaps, opts.proc_root, opts.destination_owners, opts.owner_hints) if opts.owners \
            else snaps

    def _adopt(self, snaps: list[Snapshot], probes: dict[int, bytes]) -> None:
        """The full sample's LISTEN dumps serve the next listener polls (NetnsListenerPoller.adopt); listeners
        taken from `known` are no dump (collect.REUSED_LISTENERS): adopting them would renew their time."""
        assert self.others is not None
        for snap in snaps:
            if snap.netns is not None and snap.netns.inode in probes and any(
                    st.name == LISTENERS_SOURCE and st.ok and st.detail != REUSED_LISTENERS for st in snap.statuses):
                self.others.adopt(snap.netns.inode, probes[snap.netns.inode], snap.listeners)

    def close(self) -> None:
        if self.others is not None:
            self.others.close()
