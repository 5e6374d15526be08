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

`check` does the same for its pair: a namespace whose first sample's dump held nothing but its listeners
(empty_proof) is not walked again at the second while its signals read the same (sample_after_empty): with
`--netns all` every walk is the whole host's hash, and idle namespaces were half of `check`'s walks.
"""

from __future__ import annotations

from connwatch.clock import Clock
from connwatch.collect import NETLINK, CollectOptions, sample
from connwatch.model import HostInfo, Snapshot, SourceStatus
from connwatch.parsers.netstat_snmp import parse_netstat_snmp
from connwatch.parsers.sock_diag import SocketAggregator
from connwatch.record import Record, record, replace
from connwatch.sources.procfs import ProcFS, read_parsed, read_sockstat

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:  # (the agent's; commands that sample other namespaces load only the probe)
    from collections.abc import Sequence

    from connwatch.collect_tw import TimeWaitCache
    from connwatch.model import Listener

SKIPPED = "not dumped: the namespace holds only its listeners and no TCP segment moved since its last (empty) dump"


@record
class QuietSignals(Record):
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


def sample_quietly(clock: Clock, opts: CollectOptions, proc: ProcFS, key: int, cache: TimeWaitCache,
                   host: HostInfo | None = None) -> Snapshot:
    """collect.sample(), without the non-listening dump when the namespace is proven to hold nothing but
    its listeners since its last empty dump. `cache`: the namespace's state in the agent."""
    before = read_signals(proc)
    if before is not None and before == cache.quiet:
        skipped = _without_dump(clock, opts, proc, key, before, host)
        if skipped is not None:
            from connwatch.collect_tw import QUIET

            cache.quiet_skips += 1
            cache.reason = QUIET
            return skipped
    snap = sample(clock, opts, proc, key, host)
    empty = snap.sockets is not None and snap.sockets.total == 0
    quiet = before is not None and empty and before.tw == 0 and before.inuse == len(snap.listeners)
    cache.quiet = before if quiet else None
    return snap


def empty_proof(snap: Snapshot) -> QuietSignals | None:
    """What proves a sample's dump (of every state, or a pair's first, inbound-only one) found no socket but its
    listeners, for a pair's second sample (`check`, CollectOptions.empty_before): its signals, when the dump was made
    and found nothing, sockstat's tw is 0 and TCP+TCP6 inuse equals its listeners. The Tcp counters come from right
    after the listener dump, before the other dumps (collect.sample), so a SYN that came before the dump left a
    request socket the dump saw (the inbound-only dump keeps SYN_RECV on listening ports) or moved Tcp InSegs since;
    sockstat, read after the dump, counts every full socket and TIME_WAIT. None otherwise.
    A sample that skipped its dump (SKIPPED) proves as well: it was skipped only because its signals read as an
    earlier empty dump's proof, so they are that proof (`check --watch` carries it from sample to sample)."""
    done = any(st.name == f"{NETLINK} sockets" and st.ok for st in snap.statuses)
    if snap.sockets is None or snap.sockets.total or not done:
        return None
    found = signals_of(dict(snap.counters), dict(snap.sockstat))
    if found is None or found.tw or found.inuse != len(snap.listeners):
        return None
    return found


def sample_after_empty(clock: Clock, opts: CollectOptions, proc: ProcFS, key: int, proof: QuietSignals,
                       host: HostInfo | None = None) -> Snapshot:
    """collect.sample(), without the non-listening dump when the namespace's Tcp counters, inuse and tw read as
    `proof` (empty_proof of the pair's first sample) and inuse still equals its listeners: no segment moved, no
    socket was hashed or unhashed since that empty dump, so a dump now is empty too (the module's docstring).
    Anything else: the full sample. As in sample_quietly, the signals are read before the listener dump too, so a
    namespace where something moved is sampled once, not once without its dump and then again."""
    if read_signals(proc) == proof:
        skipped = _without_dump(clock, opts, proc, key, proof, host)
        if skipped is not None:
            return skipped
    return sample(clock, opts, proc, key, host)


def _without_dump(clock: Clock, opts: CollectOptions, proc: ProcFS, key: int, proof: QuietSignals,
                  host: HostInfo | None) -> Snapshot | None:
    """The sample without its non-listening dump, with an empty dump's summary, when `proof` (read just before, the
    signals of an earlier empty dump) still stands after its listener dump and its listeners are all of inuse;
    None otherwise (the caller samples in full). sample_quietly and sample_after_empty share it."""
    snap = sample(clock, replace(opts, sockets=False), proc, key, host)
    after = signals_of(dict(snap.counters), dict(snap.sockstat))
    if after == proof and proof.tw == 0 and proof.inuse == len(snap.listeners):
        return _empty(snap)
    return None


def _empty(snap: Snapshot) -> Snapshot:
    """The snapshot with the summary an empty dump gives for its listening ports."""
    ports = frozenset(x.port for x in snap.listeners)
    summary = SocketAggregator(ports, snap.sysctls.tcp_tw_reuse_delay).summary()
    status = SourceStatus(f"{NETLINK} sockets", True, SKIPPED, 0.0)
    return replace(snap, sockets=summary, statuses=(*snap.statuses, status))


# -- the listener poll across namespaces ----------------------------------------------------------------
# Between full samples a namespace's listeners are polled for their queue peaks. Its sockstat, sockstat6
# and snmp, opened once inside it (an open /proc/thread-self/net file keeps its namespace) and re-read with
# pread, say when a LISTEN dump can tell nothing new: all three byte-for-byte as they were just before the
# last dump means no packet came or went (snmp's Ip/Tcp counters: no SYN, no ACK, so no new connection and
# no listener drop) and no socket was hashed or unhashed (inuse); when, in addition, inuse equals the
# number of listeners that dump found, no accept-queue entry exists (a queued connection is a hashed full
# socket), so every queue is 0 now, as that dump found. The poller then reuses that dump's listeners. snmp6,
# opened with them, is read only before full samples (read_rest: whether a quiet sample may serve again).
PROBE_FILES = ("sockstat", "sockstat6", "snmp", "snmp6")  # read_probe reads the first three, read_rest the others
HOST_WIDE = (b"orphan", b"alloc", b"mem")  # sockstat values that are the host's, whatever the namespace


def open_probe(proc_root: str) -> tuple[int, ...] | None:
    """The probe files of the calling thread's namespace, opened (call on a thread inside it); None
    when any cannot be opened (then that namespace is always dumped)."""
    import os

    fds: list[int] = []
    try:
        for name in PROBE_FILES:
            fds.append(os.open(f"{proc_root}/thread-self/net/{name}", os.O_RDONLY | os.O_CLOEXEC))
    except OSError:
        close_probe(tuple(fds))
        return None
    return tuple(fds)


def read_probe(fds: tuple[int, ...]) -> bytes | None:
    """What the probe files say now, reduced to this namespace's own values: sockstat's `TCP: inuse N ...
    tw N` (its orphan, alloc and mem are host-wide: they move with every other namespace's traffic),
    sockstat6's TCP6 inuse, and all of snmp (per namespace). None when a file cannot be read or lacks them."""
    import os

    try:
        sockstat, sockstat6, snmp = (os.pread(fd, 65536, 0) for fd in fds[:3])
    except (OSError, ValueError):
        return None
    tcp = next((line.split() for line in sockstat.split(b"\n") if line.startswith(b"TCP: ")), [])
    tcp6 = next((line.split() for line in sockstat6.split(b"\n") if line.startswith(b"TCP6: ")), [])
    if tcp[1:2] != [b"inuse"] or tcp[5:6] != [b"tw"] or tcp6[1:2] != [b"inuse"]:
        return None
    return b"inuse %s %s tw %s\n" % (tcp[2], tcp6[2], tcp[6]) + snmp


def read_rest(fds: tuple[int, ...]) -> bytes | None:
    """What else a sample reads of the namespace that can move with no TCP segment (agent/quiet.py): every own
    value of sockstat (UDP, UDPLITE, RAW and FRAG sockets; not `sockets: used`, which counts every socket, unix
    ones too, nor the host-wide orphan, alloc and mem), sockstat6, and snmp6 (every IPv6 packet: snmp's Ip lines,
    in read_probe, count IPv4's). None when a file cannot be read.

        sample line (sockstat, net/ipv4/proc.c sockstat_seq_show): "UDP: inuse 0 mem 0"
    """
    import os

    try:
        sockstat, sockstat6, snmp6 = (os.pread(fds[i], 65536, 0) for i in (0, 1, 3))
    except (OSError, ValueError, IndexError):
        return None
    own = []
    for line in sockstat.split(b"\n"):
        words = line.split()
        if words and words[0] != b"sockets:":
            pairs = zip(words[1::2], words[2::2], strict=False)  # (a malformed odd word is dropped)
            own += [words[0], *(w for k, v in pairs if k not in HOST_WIDE for w in (k, v))]
    return b" ".join(own) + b"\n" + sockstat6 + snmp6


def close_probe(fds: tuple[int, ...] | None) -> None:
    import os

    for fd in fds or ():
        os.close(fd)


def probe_inuse(probe: bytes) -> int:
    """TCP inuse + TCP6 inuse of a probe (read_probe's first line: b"inuse TCP TCP6 tw TW")."""
    first = probe.split(b"\n", 1)[0].split()
    return int(first[1]) + int(first[2])


def probe_tw(probe: bytes) -> int:
    """sockstat's TCP tw of a probe (read_probe's first line)."""
    return int(probe.split(b"\n", 1)[0].split()[4])


def idle_listeners(probe: bytes, listeners: Sequence[Listener]) -> bool:
    """Whether a dump's listeners, with `probe` read before it, were all the namespace's hashed TCP sockets
    and had nothing queued: then no accept-queue entry exists while the probe stands (a queued connection is
    a hashed full socket), so every queue is still 0. The listener poller's reuse (adopt) and a quiet
    sample's (agent/quiet.py) both rest on it."""
    return probe_inuse(probe) == len(listeners) and all(x.queue == 0 for x in listeners)
