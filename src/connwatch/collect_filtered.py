"""The sample's dumps that use the kernel-side port filter (sources/diag_filter.py), loaded only where they
are asked for: a pair's first sample of the sockets on listening ports (`check`: CollectOptions.inbound_only)
and the agent's TIME_WAIT plan (CollectOptions.time_wait: collect_tw.py). The rest of a sample: collect.py."""

from __future__ import annotations

from connwatch.collect import (
    FAMILIES,
    INBOUND_STATES,
    TCPF_TIME_WAIT,
    _all_sockets,
    _netlink_sockets,
)
from connwatch.errors import SourceUnavailable
from connwatch.parsers.sock_diag import SocketAggregator
from connwatch.record import Record, record, replace
from connwatch.sources import netlink

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from connwatch.collect_tw import TimeWaitCache, TimeWaitSignals
    from connwatch.model import SocketSummary


def _inbound_sockets(sock: netlink.DiagSocket, ports: frozenset[int], tw_delay: int | None, limits: list[str],
                     one_walk: bool, split: bool) -> SocketSummary:
    """The sockets SocketAggregator counts as inbound (local port a listening one, not SYN_SENT) but TIME_WAIT,
    dumped with the kernel-side port and state filter (CollectOptions.inbound_only): the kernel still walks its
    socket hash, but nothing else is copied or decoded. Every socket (_all_sockets, `split` as asked) when the
    listening ports make too many ranges or the kernel refuses the filter before any reply.

    No TIME_WAIT: of a pair's first sample the judging reads the accept queues (waiting and accepted
    connections: ESTABLISHED and the closing states), the half-open handshakes and the sources per port
    (PortsPerSource's union), never its server-side TIME_WAIT, and the second sample's TIME_WAIT holds every
    connection closed in the 60 s before it (TCP_TIMEWAIT_LEN): all of the first sample's but those that
    expired in the interval, which closed a TIME_WAIT lifetime before the interval began. Measured
    (bench/twload.py's 35k TIME_WAIT, ~20k of them server-side; `check` CPU): the first sample 13-19 ms
    against 23-38 ms with its TIME_WAIT decoded (the kernel skips those sockets by state, before the filter)."""
    from connwatch.sources import diag_filter

    ranges = diag_filter.port_ranges(ports)
    if len(ranges) > diag_filter.MAX_RANGES:
        return _all_sockets(sock, ports, tw_delay, limits, one_walk, split)
    aggregator = SocketAggregator(ports, tw_delay)
    if ranges:  # (no listener: no inbound socket, nothing to dump)
        try:
            _dump_filtered(sock, diag_filter.sport_program(ranges), aggregator, limits, one_walk,
                           INBOUND_STATES & ~TCPF_TIME_WAIT)
        except SourceUnavailable:
            if aggregator.total:  # (a failure after replies came: not a refused request)
                raise
            return _all_sockets(sock, ports, tw_delay, limits, one_walk, split)
    return replace(aggregator.summary(), inbound_only=True)


@record
class _TimeWaitPlan(Record):
    cache: TimeWaitCache
    signals: TimeWaitSignals  # read before the dump


def _split_sockets(sock: netlink.DiagSocket, ports: frozenset[int], tw_delay: int | None, limits: list[str],
                   one_walk: bool, plan: _TimeWaitPlan, split: bool = False) -> SocketSummary:
    """When TIME_WAIT is due: one dump of every state, as without a plan, its outbound TIME_WAIT kept.
    Else every socket but the outbound TIME_WAIT dumped now in one walk (_one_walk) and the outbound
    TIME_WAIT reused. On a kernel without the cgroup op: every state but TIME_WAIT (kernel-side state
    filter), then the inbound TIME_WAIT when the last full dump held any (kernel-side port filter: a
    second walk), and the outbound TIME_WAIT reused."""
    from connwatch.collect_tw import merge
    from connwatch.sources import diag_filter

    cache = plan.cache
    why = cache.observe(plan.signals, ports)
    ranges = diag_filter.port_ranges(ports)
    if why is None and len(ranges) > diag_filter.MAX_RANGES:
        why = f"{len(ranges)} ranges of listening ports"
    if why is None and cache.filter_refused:
        why = f"the kernel refused the port filter ({cache.filter_refused})"
    if why is not None:
        whole = _all_sockets(sock, ports, tw_delay, limits, one_walk, split)
        cache.store(whole, plan.signals, ports, why)
        return whole
    walked = _one_walk(sock, ports, tw_delay, limits, one_walk, ranges, cache)
    if walked is not None:
        return merge(walked, cache.reuse())
    fresh = _netlink_sockets(sock, SocketAggregator(ports, tw_delay), limits, one_walk,
                             netlink.TCPF_ALL_BUT_LISTEN & ~TCPF_TIME_WAIT)
    inbound = SocketAggregator(ports, tw_delay)
    try:
        if ranges and cache.inbound_seen:  # else none at the last full dump: no second walk
            _dump_filtered(sock, diag_filter.sport_program(ranges), inbound, limits, one_walk)
    except SourceUnavailable as exc:  # an old or odd kernel: dump all of TIME_WAIT, now and from now on
        cache.filter_refused = exc.reason
        part = _netlink_sockets(sock, SocketAggregator(ports, tw_delay), limits, one_walk, TCPF_TIME_WAIT)
        cache.store(part, plan.signals, ports, f"the kernel refused the port filter ({exc.reason})")
        return merge(fresh, part)
    return merge(merge(fresh, cache.reuse()), inbound.summary())


def _one_walk(sock: netlink.DiagSocket, ports: frozenset[int], tw_delay: int | None, limits: list[str],
              one_walk: bool, ranges: list[tuple[int, int]], cache: TimeWaitCache) -> SocketSummary | None:
    """Every full socket and the inbound TIME_WAIT (diag_filter.full_or_inbound_program) in one walk of the
    kernel's socket hash, where the state filter and then a port filter took two: the walk is most of a
    dump's kernel time (bench: 100k sockets, 90 % outbound TIME_WAIT: 36 ms of system time per sample
    against 58 ms for the two walks; the same as the state-filtered walk alone, 22-30 ms, within its
    spread). The inbound TIME_WAIT is then this sample's whether or not the last full dump held any.
    None: no listening port (no inbound socket; the state filter alone), or the kernel refused the cgroup
    op before any reply (before Linux 5.9, or no CONFIG_SOCK_CGROUP_DATA: remembered, not asked again)."""
    from connwatch.sources import diag_filter

    if not ranges or cache.merged_refused:
        return None
    aggregator = SocketAggregator(ports, tw_delay)
    try:
        _dump_filtered(sock, diag_filter.full_or_inbound_program(ranges), aggregator, limits, one_walk,
                       netlink.TCPF_ALL_BUT_LISTEN)
    except SourceUnavailable as exc:
        if aggregator.total:  # (a failure after replies came: not a refused request)
            raise
        cache.merged_refused = exc.reason
        return None
    return aggregator.summary()


def _dump_filtered(sock: netlink.DiagSocket, program: bytes, consume: SocketAggregator, limits: list[str],
                   one_walk: bool, states: int = TCPF_TIME_WAIT) -> None:
    """`states` (TIME_WAIT) on the listening ports only (kernel-side filter), like _dump for both families."""
    from connwatch.sources import diag_filter

    if one_walk:
        diag_filter.dump_filtered(sock, states, program, None, consume)
        return
    for fam, afam in FAMILIES:
        try:
            diag_filter.dump_filtered(sock, states, program, afam, consume)
        except SourceUnavailable:
            if fam == 4:
                raise
            if not any(note.startswith("IPv6 sockets not visible") for note in limits):
                limits.append("IPv6 sockets not visible: the kernel has no IPv6 sock_diag support")
