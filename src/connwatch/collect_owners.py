"""Owners of sockets: one scan of every process's fds names the processes holding the listeners and the
busiest destinations' ESTABLISHED connections of one or many snapshots (socket inodes are unique
host-wide), and what could not be inspected is said (limitations), never left silent."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

from connwatch.model import DestinationUsage, Listener, Process, Snapshot, SocketSummary
from connwatch.record import replace
from connwatch.sources import processes


def _with_owners(listeners: list[Listener], scan: processes.OwnerScan,
                 describe: Callable[[int], Process | None], limits: list[str]) -> list[Listener]:
    out = []
    for lst in listeners:  # (thousands: the constructor, not dataclasses.replace; the same listener when unowned)
        pid = scan.owners.get(lst.inode)
        owner = describe(pid) if pid is not None else None
        out.append(lst if owner is None and lst.owner is None else Listener(
            lst.family, lst.address, lst.port, lst.queue, lst.backlog, lst.drops, lst.inode, lst.uid, lst.cookie,
            owner))
    if scan.unreadable and any(x.owner is None for x in out):  # (denied processes that hold none: no loss)
        limits.append(_uninspected(scan.unreadable) + ": their sockets' owners are unknown; " + _remedy())
    limits.extend(_unreadable_limits([x.owner for x in out]))
    orphans = sorted({x.port for x in out if x.owner is None})
    if orphans and not scan.unreadable:
        limits.append(f"no process here holds the listener(s) on port(s) {', '.join(map(str, orphans[:10]))}: "
                      "the owner runs in another PID namespace (a container, or the host seen from one)")
    return out


def _uninspected(count: int) -> str:
    uid, missing = os.geteuid(), processes.missing_capabilities()
    lacking = f" without {' and '.join(missing)}" if missing else ""
    whose = "of other users " if uid != 0 else ""
    return f"{count} processes {whose}could not be inspected (running as uid {uid}{lacking})"


def _remedy() -> str:
    if os.geteuid() != 0:
        return "run as root (or with CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE) to see them"
    if not processes.missing_capabilities():  # full root already: the kernel refused for another reason
        return ("even full root may not read the fds of a process in another user namespace or under a "
                "security module; the listener's own netns and `ss -ltnp` there name it")
    return "grant CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE (or run as full root) to see them"


def _unreadable_limits(owners: Sequence[Process | None]) -> list[str]:
    """Name every owner whose fd limit or open fds could not be read: without both, the "owner at
    its fd limit" check (accept() failing with EMFILE) cannot run for it, and must not look clean."""
    notes = []
    for what, name in (("fd limit", "fd_limit"), ("open fds", "open_fds")):
        pids = sorted({o.pid for o in owners if o is not None and getattr(o, name) is None})
        if pids:
            shown = ", ".join(map(str, pids[:10])) + (f" and {len(pids) - 10} more" if len(pids) > 10 else "")
            notes.append(f"owner {what} unreadable for pid {shown}: the 'owner at its fd limit' check cannot "
                         "run" + (" for it" if len(pids) == 1 else " for them"))
    return notes


OWNED_DESTINATIONS = 20  # busiest destinations whose ESTABLISHED owners are looked up (= destinations --top)


def _busiest(summary: SocketSummary | None) -> list[DestinationUsage]:
    if summary is None:
        return []
    return sorted(summary.destinations, key=lambda d: d.total, reverse=True)[:OWNED_DESTINATIONS]


def _with_destination_owners(summary: SocketSummary, busiest: list[DestinationUsage], scan: processes.OwnerScan,
                             describe: Callable[[int], Process | None]) -> SocketSummary:
    """Name the processes holding ESTABLISHED sockets toward the busiest destinations.

    The attribution is inferred: TIME_WAIT sockets have no owner, so the owners of the ESTABLISHED
    connections to the same destination stand in for whoever left them.
    """
    chosen = {id(d) for d in busiest}
    dests = []
    for d in summary.destinations:
        if id(d) in chosen:
            pids = dict.fromkeys(scan.owners[i] for i in d.owner_inodes if i in scan.owners)
            owners = tuple(p for p in (describe(pid) for pid in pids) if p is not None)
            d = replace(d, owners=owners)
        dests.append(d)
    return replace(summary, destinations=tuple(dests))


def _owned(snap: Snapshot, busiest: list[DestinationUsage], scan: processes.OwnerScan,
           describe: Callable[[int], Process | None]) -> Snapshot:
    """One snapshot with its listeners' and busiest destinations' owners from a shared fd scan."""
    if not snap.listeners and not any(d.owner_inodes for d in busiest):
        return snap
    limits = list(snap.limitations)
    listeners, summary = list(snap.listeners), snap.sockets
    if listeners:
        listeners = _with_owners(listeners, scan, describe, limits)
    elif scan.unreadable and any(i not in scan.owners for d in busiest for i in d.owner_inodes if i):
        limits.append(_uninspected(scan.unreadable) + ": owners of outbound connections may be unknown; "
                      + _remedy())
    if summary is not None and busiest:
        summary = _with_destination_owners(summary, busiest, scan, describe)
    return replace(snap, listeners=tuple(listeners), sockets=summary, limitations=tuple(limits))


def attach_owners(snaps: list[Snapshot], proc_root: str, destinations: bool = True,
                  hints: Mapping[int, int] | None = None) -> list[Snapshot]:
    """One fd scan for every snapshot's listeners and (`destinations`) busiest destinations' connections
    (socket inodes are unique host-wide, so one scan serves every network namespace); each pid described
    once. `hints`: socket inode -> pid that held it at an earlier scan, read first (processes.py)."""
    busiest = [_busiest(s.sockets) if destinations else [] for s in snaps]
    inodes = [x.inode for s in snaps for x in s.listeners] + [i for b in busiest for d in b for i in d.owner_inodes]
    if not inodes:
        return snaps
    own = processes.netns_inode(proc_root)
    netns_of = {}  # each socket's namespace: its holder is looked for there first
    for s, b in zip(snaps, busiest, strict=True):
        ns = s.netns.inode if s.netns is not None else own
        if ns is not None:
            netns_of.update(dict.fromkeys([x.inode for x in s.listeners] + [i for d in b for i in d.owner_inodes], ns))
    scan = processes.scan_socket_owners(inodes, proc_root, netns_of, hints)
    cache: dict[int, Process | None] = {}

    def describe(pid: int) -> Process | None:
        if pid not in cache:
            cache[pid] = processes.describe_process(pid, open_fds=scan.open_fds.get(pid))
        return cache[pid]

    return [_owned(s, b, scan, describe) for s, b in zip(snaps, busiest, strict=True)]
