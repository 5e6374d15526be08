"""The agent's listeners with their owners: who holds each listener, from the last owner scan, and the copies
of the sampled and polled listeners that name them (agent/loop.py).

A scan (a readlink of every fd of every process) is the costly part of a sample, so it runs only when it can
tell something new (needs()); in between, each listener takes its owner from the last scan. The copies are
kept per listener object and per tuple, so that a namespace standing still hands the same objects every sample
and poll (compared by identity in agent/steady.py and the /metrics listener families).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from connwatch.model import Listener, Snapshot
from connwatch.record import replace

Identity = tuple[int, int, int, str]
OwnedTuple = tuple[tuple[Listener, ...], dict[Identity, Listener], tuple[Listener, ...]]
OWNER_REFRESH_S = 60.0


class KnownOwners:
    """The owners of the last scan, per listener identity, and the owned copies made from them."""

    def __init__(self) -> None:
        self.owners: dict[Identity, Listener] = {}
        self.at = 0.0  # (monotonic) when they were scanned
        # identity -> (listener, its owner's listener, the owned copy made): the copy again for the same objects
        self._copies: dict[Identity, tuple[Listener, Listener, Listener]] = {}
        self._tuples: dict[int, OwnedTuple] = {}  # id -> (a sample's listeners, the owners, their owned copy)

    def needs(self, first: bool, raised: bool, listening: Iterable[Listener], now: float) -> str | None:
        """Scan /proc/*/fd for owners (~10 ms per 1,000 open fds) only when it can tell something new: "all"
        on the first sample, when a listener appeared or the last judgement raised an alert (the next explanation
        names owners afresh), "refresh" when only OWNER_REFRESH_S passed (the known owners' details again: open
        fds, fd limit, state). None: the owners known per listener stay (outbound-connection owners are then
        those of the last scan's alerts)."""
        if first or raised or any(x.identity not in self.owners for x in listening):
            return "all"
        return "refresh" if now - self.at >= OWNER_REFRESH_S else None

    def hints(self) -> dict[int, int]:
        """A refresh's hints: each known listener's socket inode -> its owner's pid, read first. A refresh
        also asks no destination owners unless an alert that names them is active (the ephemeral-port ones,
        whose facts list the processes connecting: attributes/ephemeral.py record_of); a raised alert scans
        everything afresh. Measured on bench_agent.py's load (100k sockets, 10k fds held, a ConnectionsPerSource
        alert active): a refresh 6.4 ms of CPU instead of 36-37 ms (medians of 7; listing the server's 5k fds
        is most of what is left), where the churn's ESTABLISHED sockets named as the busiest destinations' had
        closed by the scan, which then read every fd of every process."""
        return {x.inode: x.owner.pid for x in self.owners.values() if x.owner is not None and x.inode}

    def scanned(self, snaps: Sequence[Snapshot], now: float) -> None:
        """A sample that scanned owners: its listeners name them from now on."""
        self.at = now
        self.owners = {x.identity: x for s in snaps for x in s.listeners}
        self._copies = {}

    def owned_samples(self, snaps: Sequence[Snapshot]) -> list[Snapshot]:
        """A sample that scanned none: each snapshot's listeners with their known owners."""
        last, self._tuples = self._tuples, {}
        return [with_listeners(s, self._owned_all(s.listeners, last)) for s in snaps]

    def _owned_all(self, listeners: tuple[Listener, ...], last: dict[int, OwnedTuple]) -> tuple[Listener, ...]:
        """Each listener with its known owner: the tuple made last sample for the same tuple while the owners stand
        (a namespace whose sample is served again hands the same tuple every sample, agent/quiet.py)."""
        got = last.get(id(listeners))
        if got is None or got[0] is not listeners or got[1] is not self.owners:
            got = (listeners, self.owners, tuple(self.owned(x) for x in listeners))
        self._tuples[id(listeners)] = got
        return got[2]

    def owned(self, lst: Listener) -> Listener:
        """The listener with its known owner: the same copy as last time for the same listener object (a LISTEN
        reply byte for byte the last one's is the last Listener object, collect._first_dump and the polls), so
        that the samples' and polls' listeners of a namespace standing still stay the same objects."""
        known = self.owners.get(lst.identity)
        if known is None or known.owner is None:
            return lst
        made = self._copies.get(lst.identity)
        if made is not None and made[0] is lst and made[1] is known:
            return made[2]
        owned = replace(lst, owner=known.owner)
        self._copies[lst.identity] = (lst, known, owned)
        return owned


def with_listeners(snap: Snapshot, listeners: tuple[Listener, ...]) -> Snapshot:
    """The snapshot with these listeners; itself when they are its own (no copy of an unchanged sample)."""
    if listeners is snap.listeners or all(a is b for a, b in zip(listeners, snap.listeners, strict=True)):
        return snap
    return replace(snap, listeners=listeners)


def with_peaks(snap: Snapshot, peaks: dict[Identity, int]) -> Snapshot:
    """The snapshot as judged: each listener's queue the largest polled since the previous full sample
    (only the listeners whose peak is above their queue copied: 5,000 idle ones cost ~20 ms per sample; none
    looked at when no peak is above 0, as polls of idle namespaces leave them)."""
    if not peaks:
        return snap
    listeners = tuple(x if (p := peaks.get(x.identity, 0)) <= x.queue else replace(x, queue=p)
                      for x in snap.listeners)
    return with_listeners(snap, listeners)
