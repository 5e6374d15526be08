"""Sources + parsers -> Snapshot. Records each source's success and duration; interprets nothing."""

from __future__ import annotations

import _socket  # (not socket: see sources/netlink.py)
import time
from collections.abc import Callable, Mapping

from connwatch.clock import Clock
from connwatch.collect_owners import attach_owners
from connwatch.errors import ParseError, SourceUnavailable
from connwatch.model import (
    HostInfo,
    Listener,
    Snapshot,
    SocketSummary,
    SourceStatus,
    Sysctls,
)
from connwatch.parsers.sock_diag import SocketAggregator
from connwatch.parsers.sock_diag_listeners import ListenerDecoder, MemoListenerDecoder
from connwatch.parsers.sockstat import parse_sockstat
from connwatch.record import Record, field, record, replace
from connwatch.sources import netlink
from connwatch.sources.hostlimits import read_host_limits
from connwatch.sources.procfs import ProcFS, read_counters, read_host, read_parsed, read_sockstat, read_sysctls

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:  # the agent's TIME_WAIT plan and the port filter load only where the agent uses them
    from typing import TypeVar

    from connwatch.collect_filtered import _TimeWaitPlan
    from connwatch.collect_quiet import QuietSignals
    from connwatch.collect_tw import TimeWaitCache, TimeWaitCaches

    T = TypeVar("T")
NETLINK = "netlink sock_diag"
SKMEMINFO_EXT = 1 << (netlink.INET_DIAG_SKMEMINFO - 1)
TCPF_TIME_WAIT = 1 << 6  # include/net/tcp_states.h: TCP_TIME_WAIT = 6
SPLIT_TIME_WAIT_AT = 16_384  # TIME_WAIT sockets from which a sample dumps them apart (_many_time_wait)
TIME_WAIT_PER_OTHER = 32  # ...unless they outnumber the other sockets this many to one (_many_time_wait)
TCPF_SYN_SENT = 1 << 2  # TCP_SYN_SENT = 2
# What SocketAggregator counts as inbound: a socket on a listening port in any state but SYN_SENT
INBOUND_STATES = netlink.TCPF_ALL_BUT_LISTEN & ~TCPF_SYN_SENT
FAMILIES = ((4, _socket.AF_INET), (6, _socket.AF_INET6))


@record
class CollectOptions(Record):
    proc_root: str = "/proc"
    use_netlink: bool = True  # False forces the /proc/net/tcp fallback (tests, broken kernels)
    sockets: bool = True  # dump non-listening sockets too (costs time with 100k+ sockets)
    owners: bool = True
    # Also name the owners of the busiest destinations' connections (the fd scan then runs until it met
    # them too); `sources` shows listener owners only and sets this off.
    destination_owners: bool = True
    # Socket inode -> the pid that held it at the caller's earlier scan: those processes are read first
    # (the agent's refresh of known listener owners; collect_owners.attach_owners). None: no hint.
    owner_hints: Mapping[int, int] | None = field(default=None, compare=False)
    replay: str | None = None  # a directory of recorded sock_diag replies to read instead of the kernel (tests)
    # One kernel walk for IPv4+IPv6 (the legacy TCPDIAG_GETSOCK request) instead of one per family:
    # the kernel walks its host-wide socket hashes for every dump, whatever the namespace, so this
    # halves a sample's kernel time. A live sample always tries it first (see _first_dump; a kernel that
    # refuses the legacy request is asked per family); this flag asks for it from a recording too.
    one_walk: bool = False
    # The agent's TIME_WAIT aggregates, one per namespace: TIME_WAIT is then dumped only when due
    # (collect_tw.py). None (commands): every state in one dump, every sample.
    time_wait: TimeWaitCaches | None = field(default=None, compare=False)
    # A sample's TIME_WAIT dumped apart from the other states (kernel-side state filter), each dump one walk
    # for both families (the legacy request; per-family dumps also walk the socket hash twice): TIME_WAIT
    # replies then come in chunks of one length that the decoder counts column-wise
    # (SocketAggregator._time_wait_run), where one dump interleaves them with other states. Measured
    # (README, Benchmarks; 2-core VM shared, load 3-9, CPU time / `ss -tan`'s, medians of pair ratios): it
    # pays where most TIME_WAIT is inbound on few ports, so `sources` sets it (105k sources: text 1.97x
    # against 2.23x with one dump per family, json 1.68x against 2.03x); not measurably on outbound churn
    # toward few destinations (bench_process snapshot: 300k sockets 0.88x against 0.95x, within the
    # noise; 35k 2.20x against 2.18x): off by default, and on by itself from SPLIT_TIME_WAIT_AT TIME_WAIT
    # sockets (_many_time_wait: since TIME_WAIT chunks are keyed by columns it pays there).
    split_time_wait: bool = False
    # A pair's first sample (`check`): of the non-listening sockets only those whose local port is a
    # listening port, TIME_WAIT left out (kernel-side port and state filter), which is all the judging
    # compares between two samples (sources per port, half-open handshakes, accepts: attributes/*; the second
    # sample's TIME_WAIT covers the first's: collect_filtered._inbound_sockets); its SocketSummary says so
    # (inbound_only) and counts those alone (total, by_state; no destinations). Every socket is dumped
    # when the filter cannot be used (too many port ranges, a kernel that refuses it, a recording).
    inbound_only: bool = False
    # The agent's: namespace inode -> its listeners from a LISTEN dump whose probe (collect_quiet.read_probe)
    # still reads the same (NetnsListenerPoller.known): a sample of that namespace that dumps no other socket
    # (collect_quiet.sample_quietly's quiet path) takes them instead of walking the host-wide listening hash.
    known_listeners: Mapping[int, tuple[Listener, ...]] | None = field(default=None, compare=False)
    # A pair's second sample (`check`): namespace inode -> the signals that proved its first sample's dump held
    # no socket but its listeners (collect_quiet.empty_proof); that namespace's socket hash walk is skipped while
    # they read the same (collect_quiet.sample_after_empty).
    empty_before: Mapping[int, QuietSignals] | None = field(default=None, compare=False)


REUSED_LISTENERS = ("reused: the namespace's sockstat, sockstat6 and snmp read as just before its last LISTEN "
                    "dump (no segment moved, no socket hashed or unhashed)")


def _timed(statuses: list[SourceStatus], name: str, call: Callable[[], T]) -> T | None:
    """Run one source; record ok/failed and duration; a failure returns None, never raises."""
    start = time.perf_counter()
    try:
        result = call()
    except (SourceUnavailable, ParseError) as exc:
        statuses.append(SourceStatus(name, False, str(exc), _ms(start)))
        return None
    statuses.append(SourceStatus(name, True, "", _ms(start)))
    return result


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


def _dump(sock: netlink.DiagSocket, states: int, ext: int, consume: Callable[[bytes], bool], limits: list[str],
          one_walk: bool = False) -> None:
    """Dump IPv4 then IPv6. A kernel without IPv6 (diag) support refuses the IPv6 dump: that is a
    limitation to name, not a reason to lose the IPv4 view; an IPv4 failure propagates.
    `one_walk`: both families in one legacy dump (a refusal propagates)."""
    if one_walk:
        netlink.dump_both_families(sock, states, ext, consume)
        return
    for fam, afam in FAMILIES:
        try:
            netlink.dump(sock, afam, states, ext, consume)
        except SourceUnavailable as exc:
            if fam == 4:
                raise
            note = f"IPv6 sockets not visible ({exc}): the kernel has no IPv6 sock_diag support"
            if note not in limits:
                limits.append(note)


def netlink_listeners(sock: netlink.DiagSocket, limits: list[str], one_walk: bool = False,
                      replies: dict[bytes, Listener] | None = None) -> list[Listener]:
    """The LISTEN dump's listeners. `replies`: the last dump's (the agent's, per namespace): a listener whose reply
    is byte for byte one of them is that Listener object, and `replies` holds this dump's afterwards."""
    found: list[Listener] = []
    if replies is None:
        _dump(sock, netlink.TCPF_LISTEN, SKMEMINFO_EXT, ListenerDecoder(found), limits, one_walk)
        return found
    seen: dict[bytes, Listener] = {}
    _dump(sock, netlink.TCPF_LISTEN, SKMEMINFO_EXT, MemoListenerDecoder(found, replies, seen), limits, one_walk)
    replies.clear()
    replies.update(seen)
    return found


def _first_dump(sock: netlink.DiagSocket, limits: list[str], walks: list[bool],
                replies: dict[bytes, Listener] | None = None) -> list[Listener]:
    """The sample's first dump, the listeners, in one walk for both families when walks[0] (the legacy
    request: each dump walks the kernel's host-wide socket hashes whatever it emits, so one walk halves a
    sample's kernel time; the agent measured 0.59x the CPU of two dumps at 100k sockets). A kernel that
    refuses that request refuses it here, before any reply: then walks[0] becomes False and this and the
    sample's other dumps are asked per family. `replies`: see netlink_listeners (the agent: 100 idle
    namespaces' listeners are then the last sample's objects, so comparing samples, agent/steady.py, and
    the /metrics listener families, is mostly identity checks)."""
    if walks[0]:
        try:
            return netlink_listeners(sock, limits, one_walk=True, replies=replies)
        except SourceUnavailable:
            walks[0] = False
    return netlink_listeners(sock, limits, replies=replies)


def _netlink_sockets(sock: netlink.DiagSocket, aggregator: SocketAggregator, limits: list[str],
                     one_walk: bool = False, states: int = netlink.TCPF_ALL_BUT_LISTEN) -> SocketSummary:
    _dump(sock, states, 0, aggregator, limits, one_walk)
    return aggregator.summary()


def _all_sockets(sock: netlink.DiagSocket, ports: frozenset[int], tw_delay: int | None, limits: list[str],
                 one_walk: bool, split: bool) -> SocketSummary:
    """Every state but LISTEN: one dump (per family, or `one_walk`), or (`split`, see
    CollectOptions.split_time_wait) every state but TIME_WAIT then TIME_WAIT alone, each in one walk for
    both families (the legacy request); a kernel that refuses it gets the per-family dumps."""
    if split:
        aggregator = SocketAggregator(ports, tw_delay)
        try:
            for states in (netlink.TCPF_ALL_BUT_LISTEN & ~TCPF_TIME_WAIT, TCPF_TIME_WAIT):
                _dump(sock, states, 0, aggregator, limits, one_walk=True)
            return aggregator.summary()
        except SourceUnavailable:
            if one_walk or aggregator.total:  # (a failure after replies came: not a refused request)
                raise
        aggregator = SocketAggregator(ports, tw_delay)
        for states in (netlink.TCPF_ALL_BUT_LISTEN & ~TCPF_TIME_WAIT, TCPF_TIME_WAIT):
            _dump(sock, states, 0, aggregator, limits)
        return aggregator.summary()
    return _netlink_sockets(sock, SocketAggregator(ports, tw_delay), limits, one_walk)


def _proc_tcp_texts(proc: ProcFS) -> list[tuple[int, str, list[str]]]:
    """(family, path, lines) of /proc/net/tcp and tcp6; a kernel without IPv6 has no tcp6."""
    out = []
    for fam, _afam in FAMILIES:
        rel = "net/tcp6" if fam == 6 else "net/tcp"
        try:
            text = proc.read_text(rel)
        except SourceUnavailable:
            if fam == 6:
                continue
            raise
        out.append((fam, proc.where(rel), text.splitlines()))  # (str(proc.path(rel)), without pathlib)
    return out


def _proc_tcp(texts: list[tuple[int, str, list[str]]], aggregator: SocketAggregator | None) -> list[Listener]:
    from connwatch.parsers.proc_tcp import parse_proc_tcp  # (the fallback: not imported where netlink works)

    found: list[Listener] = []
    for fam, path, lines in texts:
        parse_proc_tcp(lines, path, fam, found, aggregator)
    return found


def _sockets(opts: CollectOptions, proc: ProcFS, statuses: list[SourceStatus], limits: list[str],
             tw_delay: int | None, plan: Callable[[], _TimeWaitPlan] | None = None,
             after_listeners: Callable[[], None] = lambda: None, replies: dict[bytes, Listener] | None = None
             ) -> tuple[list[Listener], SocketSummary | None]:
    """`after_listeners`: called as soon as the listeners are read, before any other socket is dumped.
    `replies`: the namespace's last LISTEN replies (_first_dump).
    `plan`: the TIME_WAIT plan, made after that call (from what it read), before the other dumps."""
    sock: netlink.DiagSocket | None = None
    if opts.use_netlink:
        replay = opts.replay
        opener: Callable[[], netlink.DiagSocket] = netlink.open_socket
        if replay is not None:  # (tests: recorded replies)
            from connwatch.sources import recorded

            opener = lambda: recorded.open_recorded(replay)  # noqa: E731
        sock = _timed(statuses, NETLINK, opener)
    if sock is not None:
        try:  # (contextlib.closing without contextlib: see sources/netlink.py)
            walks = [opts.one_walk or opts.replay is None]  # (a recording holds what it was asked)
            listeners = _timed(statuses, f"{NETLINK} listeners", lambda: _first_dump(sock, limits, walks, replies))
            if listeners is not None:
                after_listeners()
                one_walk = walks[0]
                summary = None
                ports = frozenset(x.port for x in listeners)
                split = opts.split_time_wait and opts.replay is None  # (a recording holds one dump)
                if opts.sockets and plan is not None:
                    from connwatch.collect_filtered import _split_sockets  # (loaded only where used, as below)
                    made = plan()
                    summary = _timed(statuses, f"{NETLINK} sockets", lambda: _split_sockets(
                        sock, ports, tw_delay, limits, one_walk, made, split))
                elif opts.sockets and opts.inbound_only and opts.replay is None:  # (a recording holds one dump)
                    from connwatch.collect_filtered import _inbound_sockets
                    summary = _timed(statuses, f"{NETLINK} sockets", lambda: _inbound_sockets(
                        sock, ports, tw_delay, limits, one_walk, split))
                elif opts.sockets:
                    summary = _timed(statuses, f"{NETLINK} sockets",
                                     lambda: _all_sockets(sock, ports, tw_delay, limits, one_walk, split))
                return listeners, summary
        finally:
            sock.close()
    limits.append("netlink sock_diag unavailable: read /proc/net/tcp instead, which shows no listen "
                  "backlog and no per-listener drop counter (BacklogRejectsByPort falls back to host "
                  "counters, AcceptQueueFill is not measured)")
    texts = _timed(statuses, "/proc/net/tcp", lambda: _proc_tcp_texts(proc)) or []
    plain = _timed(statuses, "/proc/net/tcp listeners", lambda: _proc_tcp(texts, None)) or []
    after_listeners()
    if not opts.sockets:
        return plain, None
    agg = SocketAggregator(frozenset(x.port for x in plain), tw_delay)
    summary = _timed(statuses, "/proc/net/tcp sockets", lambda: (_proc_tcp(texts, agg), agg.summary())[1])
    return plain, summary


def sample(clock: Clock, opts: CollectOptions, proc: ProcFS, tw_key: int = 0, host: HostInfo | None = None) -> Snapshot:
    """Everything but the owners, read through `proc` (the live /proc, a copied tree, or the view of a
    thread inside another network namespace) and the namespace of the calling thread. `tw_key` names
    the namespace's TIME_WAIT aggregate in opts.time_wait (then sockstat's tw is also read after the
    listener dump, and with the counters read then, decides whether TIME_WAIT is dumped: _plan). `host`:
    read_host(proc) when the caller read it already (hostname, kernel and boot time are the host's: one
    read serves every namespace of one sample)."""
    statuses: list[SourceStatus] = []
    limits: list[str] = []
    taken_at, mono = clock.time(), clock.monotonic()
    sysctls, st = read_sysctls(proc)
    statuses += st
    if opts.sockets and opts.time_wait is None and not opts.split_time_wait and opts.replay is None and \
            _many_time_wait(proc):
        opts = replace(opts, split_time_wait=True)  # (an inbound-only dump asks no TIME_WAIT: this serves its
        # fallback to every socket, collect_filtered._inbound_sockets)
    # The namespace's counters are read right after the listener dump, before the other sockets are dumped:
    # per-listener drops and the counters they are reconciled with (attributes/rejects.py) then come from
    # one moment, where a burst of re-sent SYNs during the other dumps once left 16 rejections unattributed
    read: list[tuple[dict[str, int], list[SourceStatus]]] = []

    def counters_now() -> None:
        if not read:
            read.append(read_counters(proc))

    plan = None
    cache = opts.time_wait.get(tw_key) if opts.time_wait is not None else None
    if cache is not None and opts.sockets:
        plan = lambda: _plan(proc, cache, read[0][0], mono, sysctls)  # noqa: E731
    known = opts.known_listeners.get(tw_key) if opts.known_listeners and opts.use_netlink and not opts.sockets \
        else None
    listeners: list[Listener] | tuple[Listener, ...]
    if known is not None:  # (see CollectOptions.known_listeners; the tuple itself, sorted already: the poller
        # tells by identity that no dump refreshed it, NetnsListenerPoller.adopt)
        listeners, summary = known, None  # (both statuses a dump gives: agent/steady.py compares them)
        statuses += [SourceStatus(name, True, REUSED_LISTENERS, 0.0) for name in (NETLINK, f"{NETLINK} listeners")]
    else:
        listeners, summary = _sockets(opts, proc, statuses, limits, sysctls.tcp_tw_reuse_delay, plan,
                                      counters_now, cache.listener_replies if cache is not None else None)
    counters_now()  # (when no listener dump was made)
    counters, st = read[0]
    statuses += st
    sockstat, st = read_sockstat(proc)
    statuses += st
    hl, st1 = read_host_limits(proc)
    statuses.append(st1)
    sysctls = replace(sysctls, nf_conntrack_max=hl.conntrack_max, tcp_mem=hl.tcp_mem,
                                  file_max=hl.file_max)
    ordered = listeners if isinstance(listeners, tuple) else tuple(sorted(listeners, key=listener_order))
    return Snapshot(
        taken_at=taken_at, monotonic=mono, host=host or read_host(proc), counters=counters, sockstat=sockstat,
        sysctls=sysctls, listeners=ordered, sockets=summary, statuses=tuple(statuses),
        limitations=tuple(limits), conntrack_count=hl.conntrack_count, conntrack_stats=hl.conntrack_stats,
        files_allocated=hl.files_allocated,
    )


def _plan(proc: ProcFS, cache: TimeWaitCache, counters: dict[str, int], mono: float, sysctls: Sysctls
          ) -> _TimeWaitPlan:
    """The agent's TIME_WAIT plan (collect_tw.py), made right after the listener dump, before the other dumps
    decide on TIME_WAIT: TcpExt TW from the counters read then (the sample's own, read once where the plan
    once read net/netstat again before any dump: 0.6 ms of CPU per sample at 100k sockets), sockstat's tw
    read now (the sample's sockstat is read after the dumps, as without a plan)."""
    from connwatch.collect_filtered import _TimeWaitPlan
    from connwatch.collect_tw import TimeWaitSignals

    tw_now, _ = read_parsed(proc, "net/sockstat", parse_sockstat)
    return _TimeWaitPlan(cache, TimeWaitSignals(mono, (tw_now or {}).get("TCP.tw"), counters.get("TcpExt.TW"),
                                                _range_size(sysctls)))


def _many_time_wait(proc: ProcFS) -> bool:
    """Whether the namespace holds so much TIME_WAIT (sockstat's tw, read before the dump) that dumping it
    apart pays: its chunks are then keyed by columns (parsers/sock_diag_columns.py), where one dump of
    every state mixes them with the other sockets in hash order. Measured (a whole sample's CPU, owners off,
    min of 3-7, load 1-5, bench/twload.py): 35k TIME_WAIT with 6k other sockets interleaved (74 of 113 chunks
    mixed) 66.8 ms in one dump against 52.4 ms apart; the same load where the others happened to cluster in
    the hash (18 mixed) 49.5 against 52.5 ms (the second walk costs ~3 ms more than it saves); 100k 170
    against 150 ms; 280k 455 against 368 ms. Below the threshold the second walk (~1-3 ms here) outweighs
    keying ~0.5 us less per TIME_WAIT socket.

    Not where TIME_WAIT outnumbers the other sockets (sockstat's inuse) TIME_WAIT_PER_OTHER to one: one dump then
    keys nearly all of it by columns too (the runs between the other replies: SocketAggregator._loop hands them
    back), and the walk saved is the larger part (each dump walks the host-wide hash, ~130 ns a socket: 62 ms of
    sys time for the non-TIME_WAIT dump beside 300k). bench_process (2-core VM shared, load 1-3, CPU /
    `ss -tan`'s, medians of pair ratios; 2,016 other sockets): 300k 0.63x in one dump against 0.77x apart; 35k
    (ratio 17) 1.43x against 1.39x and 1.40x against 1.35x (a short run of TIME_WAIT between two others goes to
    the slim loop: +12 ms of user time against ~8 ms of walk), but 1.01x against 1.21x with another namespace's
    300k TIME_WAIT in the host's hash. TCP.inuse counts IPv4 sockets only (TCP6's are in sockstat6) and tw also
    counts the FIN_WAIT2 sockets an application closed (dumped as FIN_WAIT2): the ratio is an estimate."""
    found = read_parsed(proc, "net/sockstat", parse_sockstat)[0] or {}  # ({} when unreadable)
    tw, others = found.get("TCP.tw", 0), found.get("TCP.inuse", 0)
    return tw >= SPLIT_TIME_WAIT_AT and tw < TIME_WAIT_PER_OTHER * others


def listener_order(x: Listener) -> tuple[int, int, str, int]:
    """A snapshot's order of listeners; the listener polls give theirs in it too, so that a poll of
    unchanged listeners equals the full sample's and the /metrics listener families are kept (with 5,000
    listeners in 100 namespaces, rebuilding them was ~35 ms of CPU per sample)."""
    return x.port, x.family, x.address, x.inode


def _range_size(sysctls: Sysctls) -> int | None:
    r = sysctls.ip_local_port_range
    return r[1] - r[0] + 1 if r is not None and r[1] >= r[0] else None


def collect(clock: Clock, opts: CollectOptions | None = None) -> Snapshot:
    """Take one sample of everything connwatch reads (in the caller's own network namespace)."""
    opts = opts or CollectOptions()
    memo = opts.time_wait.get(0).parsed if opts.time_wait is not None else None  # (the agent's: kept across samples)
    snap = sample(clock, opts, ProcFS(opts.proc_root, memo=memo))
    return attach_owners([snap], opts.proc_root, opts.destination_owners, opts.owner_hints)[0] if opts.owners else snap
