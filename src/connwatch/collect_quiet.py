"""A namespace holding nothing but its listeners is not walked again while no segment moves (the agent).

Every dump of non-listening sockets walks the kernel's host-wide established hash, whatever the
namespace (net/ipv4/inet_diag.c inet_diag_dump_icsk; unless tcp_child_ehash_entries gave the
namespace its own): with 100k sockets on the host that is ~10-30 ms of kernel time per namespace and
sample, so 100 idle container namespaces cost seconds. A namespace whose last dump was empty is
therefore not dumped again while all of this stands, read before and again after its listener dump:

- every Tcp counter of its /proc/net/snmp (InSegs, OutSegs, ActiveOpens, PassiveOpens, AttemptFails,
  CurrEstab, RetransSegs, ...) is what it was just before that empty dump. A request socket
  (SYN_RECV, not counted by sockstat) is made only when a SYN arrives (tcp_v4_rcv/tcp_v6_rcv count
  every segment in Tcp InSegs, the bad ones too, for both families), a connect() sends a SYN
  (OutSegs, ActiveOpens): so no handshake, half-open or otherwise, began since;
- sockstat's `TCP: inuse` + sockstat6's `TCP6: inuse` (hashed full sockets: listeners and every
  established-hash socket; sock_prot_inuse_add in inet_hash/inet_ehash_nolisten) equals the number of
  listeners dumped now, and `tw` is 0: no full socket exists but the listeners (this also covers a
  socket put into a state without segments, e.g. TCP_REPAIR);

so an empty dump is what a dump would return, and the summary is that of an empty dump with the
current listening ports. Any difference, or a counter that cannot be read, dumps as before.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from connwatch.clock import Clock
from connwatch.collect import NETLINK, CollectOptions, sample
from connwatch.collect_tw import QUIET, TimeWaitCache
from connwatch.model import Snapshot, SourceStatus
from connwatch.parsers.netstat_snmp import parse_netstat_snmp
from connwatch.parsers.sock_diag import SocketAggregator
from connwatch.sources.procfs import ProcFS, read_parsed, read_sockstat

SKIPPED = "not dumped: the namespace holds only its listeners and no TCP segment moved since its last (empty) dump"


@dataclass(frozen=True, slots=True)
class QuietSignals:
    """What proves a namespace unchanged since an empty dump (see the module docstring)."""

    tcp: tuple[tuple[str, int], ...]  # every Tcp.* counter of net/snmp, sorted by name
    inuse: int  # sockstat TCP inuse + sockstat6 TCP6 inuse
    tw: int  # sockstat TCP tw


def signals_of(counters: dict[str, int], sockstat: dict[str, int]) -> QuietSignals | None:
    """The signals in a sample's counters and sockstat; None when any of them is missing."""
    tcp = tuple(sorted((k, v) for k, v in counters.items() if k.startswith("Tcp.")))
    if not tcp or any(k not in sockstat for k in ("TCP.inuse", "TCP6.inuse", "TCP.tw")):
        return None
    return QuietSignals(tcp, sockstat["TCP.inuse"] + sockstat["TCP6.inuse"], sockstat["TCP.tw"])


def read_signals(proc: ProcFS) -> QuietSignals | None:
    snmp, _status = read_parsed(proc, "net/snmp", parse_netstat_snmp)
    sockstat, _statuses = read_sockstat(proc)
    return None if snmp is None else signals_of(snmp, sockstat)


def sample_quietly(clock: Clock, opts: CollectOptions, proc: ProcFS, key: int, cache: TimeWaitCache) -> Snapshot:
    """collect.sample(), without the non-listening dump when the namespace is proven to hold nothing but
    its listeners since its last empty dump. `cache`: the namespace's state in the agent."""
    before = read_signals(proc)
    if before is not None and before == cache.quiet:
        snap = sample(clock, dataclasses.replace(opts, sockets=False), proc, key)
        after = signals_of(dict(snap.counters), dict(snap.sockstat))
        if after == before and before.tw == 0 and before.inuse == len(snap.listeners):
            cache.quiet_skips += 1
            cache.reason = QUIET
            return _empty(snap)
    snap = sample(clock, opts, proc, key)
    empty = snap.sockets is not None and snap.sockets.total == 0
    quiet = before is not None and empty and before.tw == 0 and before.inuse == len(snap.listeners)
    cache.quiet = before if quiet else None
    return snap


def _empty(snap: Snapshot) -> Snapshot:
    """The snapshot with the summary an empty dump gives for its listening ports."""
    ports = frozenset(x.port for x in snap.listeners)
    summary = SocketAggregator(ports, snap.sysctls.tcp_tw_reuse_delay).summary()
    status = SourceStatus(f"{NETLINK} sockets", True, SKIPPED, 0.0)
    return dataclasses.replace(snap, sockets=summary, statuses=(*snap.statuses, status))
