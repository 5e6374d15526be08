"""Another namespace where nothing moved is not sampled again: its last snapshot serves, with this sample's time.

With `--netns all` and 100 idle namespaces of 50 listeners, each namespace's sample cost ~1.7 ms of CPU per
sample (bench/profile_agent.py --small 100: ~170 ms per 5 s in the sampling threads), reading again what had
not changed: 13 sysctls, netstat, snmp, snmp6, sockstat, conntrack. A namespace's last full snapshot serves
again, re-timed, while all of this holds:

- that sample found it quiet: no socket but its listeners (its dump, or the quiet gate, found none), sockstat
  tw 0, TCP + TCP6 inuse equal to its listeners (so no accept-queue entry: a queued connection is a hashed
  socket), every queue 0, every source answered;
- its listener probe (collect_quiet.read_probe: sockstat's TCP inuse and tw, TCP6 inuse, all of snmp) reads
  as just before that sample, and the poller still gives it that sample's listeners without a dump
  (NetnsListenerPoller.known: at most REUSE_MAX_S after the dump that made them);
- the rest of what can move with no TCP segment reads as just before that sample too (collect_quiet.read_rest:
  sockstat's other own values, sockstat6, snmp6). With snmp's Ip lines that is every IPv4 and IPv6 packet:
  none came or went, so netstat's counters and conntrack's entries (made by packets) stand;
- the snapshot is less than REUSE_MAX_S old: what no counter shows (a sysctl written, conntrack entries
  expiring, `sockets: used`, which counts unix sockets too) is read again at least that often.

A sample that scans owners serves kept snapshots too: the scan (one over every process, whatever the
namespaces) names the served listeners' owners afresh (agent/loop.py _sample attaches owners after serving).
Until then the owner scans, once a minute, sampled every namespace afresh: 8 of the ~15 namespaces sampled
per 5 s with 100 idle ones.

Its host-wide values (sockstat's TCP orphan, alloc and mem, UDP mem; allocated file handles) are taken from the
own namespace's sample of this round, when there is one. Its namespace status says that it was reused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from connwatch.collect import REUSED_LISTENERS
from connwatch.collect_netns import NETNS_SOURCE, REUSE_MAX_S
from connwatch.collect_quiet import idle_listeners, probe_tw
from connwatch.model import Listener, NetnsInfo, Snapshot, SourceStatus
from connwatch.record import replace
from connwatch.sources.netns import NetnsRef

REUSED_SAMPLE = (f"sample reused: no packet came or went and no socket was opened or closed since it was taken "
                 f"(at most {REUSE_MAX_S:.0f} s ago)")
HOST_WIDE_SOCKSTAT = ("TCP.orphan", "TCP.alloc", "TCP.mem", "UDP.mem")


def quiet(snap: Snapshot, probe: bytes | None) -> bool:
    """Whether a fresh sample of another namespace found it quiet (see the module docstring)."""
    if probe is None or snap.netns is None or snap.netns.own or snap.sockets is None or snap.sockets.total:
        return False
    return (probe_tw(probe) == 0 and idle_listeners(probe, snap.listeners)
            and all(s.ok for s in snap.statuses))


class QuietSamples:
    """Each quiet namespace's last fresh snapshot, with the probes read just before it and when it was taken."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        # inode -> (probe, rest, snap, at, the poller's listeners it took: its own, or those `known` gave it, which
        # its own may be a copy of, with owners attached)
        self._kept: dict[int, tuple[bytes, bytes, Snapshot, float, tuple[Listener, ...]]] = {}
        self.reused = 0  # snapshots served again
        self.clock = clock

    def take(self, chosen: Sequence[tuple[NetnsRef, NetnsInfo]], probes: Mapping[int, bytes],
             rests: Mapping[int, bytes], known: Mapping[int, tuple[Listener, ...]]) -> dict[int, Snapshot]:
        """inode -> the kept snapshot of each chosen namespace it may serve now (re-timed by serve_again())."""
        now = self.clock()
        out: dict[int, Snapshot] = {}
        for ref, _info in chosen:
            kept = self._kept.get(ref.inode)
            if kept is None or now - kept[3] >= REUSE_MAX_S:
                continue
            probe, rest, snap, _at, listeners = kept
            i = ref.inode
            if probes.get(i) == probe and rests.get(i) == rest and known.get(i) is listeners:
                out[i] = snap
        return out

    def keep(self, chosen: Sequence[tuple[NetnsRef, NetnsInfo]], fresh: Sequence[Snapshot],
             probes: Mapping[int, bytes], rests: Mapping[int, bytes],
             known: Mapping[int, tuple[Listener, ...]]) -> None:
        """After a sample: keep each freshly sampled quiet namespace's snapshot, forget the other fresh ones and
        the namespaces no longer chosen; a served one keeps its time. `known`: the listeners the sample was given
        (collect.REUSED_LISTENERS), which a later sample's must be."""
        wanted = {ref.inode for ref, _ in chosen}
        self._kept = {i: k for i, k in self._kept.items() if i in wanted}
        now = self.clock()
        for snap in fresh:
            if snap.netns is None or snap.netns.own:
                continue
            inode = snap.netns.inode
            probe, rest = probes.get(inode), rests.get(inode)
            took = any(st.detail == REUSED_LISTENERS for st in snap.statuses)
            listeners = known.get(inode) if took else snap.listeners
            if rest is not None and probe is not None and listeners is not None and quiet(snap, probe):
                if snap.listeners is not listeners:  # (an owner scan's copies: served, they would not be
                    # the poller's tuple, and the agent would take every poll's listeners for new ones)
                    snap = replace(snap, listeners=listeners)
                self._kept[inode] = (probe, rest, snap, now, listeners)
            else:
                self._kept.pop(inode, None)

    def in_order(self, chosen: Sequence[tuple[NetnsRef, NetnsInfo]], fresh: Sequence[Snapshot],
                 kept: Mapping[int, Snapshot], taken_at: float, monotonic: float) -> list[Snapshot]:
        """The sample's snapshots in `chosen`'s order: the fresh ones, and the kept ones served again."""
        if not kept:
            return list(fresh)
        self.reused += len(kept)
        own = next((s for s in fresh if s.netns is not None and s.netns.own), None)
        by_inode = {s.netns.inode: s for s in fresh if s.netns is not None}
        return [serve_again(kept[ref.inode], info, own, taken_at, monotonic) if ref.inode in kept
                else by_inode[ref.inode] for ref, info in chosen]


def serve_again(snap: Snapshot, info: NetnsInfo, own: Snapshot | None, taken_at: float, monotonic: float) -> Snapshot:
    """A kept snapshot as this sample's: its time, the namespace as discovered now, the host-wide values of the
    own namespace's fresh sample, and its namespace status saying it was reused."""
    sockstat = snap.sockstat
    files = snap.files_allocated
    if own is not None:
        host = {k: own.sockstat[k] for k in HOST_WIDE_SOCKSTAT if k in own.sockstat and k in sockstat}
        sockstat = {**sockstat, **host}
        files = own.files_allocated
    note = f"{info.label}; {REUSED_SAMPLE}"
    statuses = tuple(SourceStatus(s.name, s.ok, note, 0.0) if s.name == NETNS_SOURCE else s for s in snap.statuses)
    return replace(snap, taken_at=taken_at, monotonic=monotonic, netns=info, sockstat=sockstat, statuses=statuses,
                   files_allocated=files)
