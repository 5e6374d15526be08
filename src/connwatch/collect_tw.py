"""TIME_WAIT dumped when it is due, not every sample: how the agent samples 100k+ sockets cheaply.

On a busy client host most sockets are outbound TIME_WAIT, and each one lives 60 s
(TCP_TIMEWAIT_LEN, include/net/tcp.h), so between two full samples 5 s apart that population
barely changes, and /proc/net/sockstat's `TCP: ... tw N` (read in microseconds) says when it does.
The state filter is kernel-side (inet_diag_req_v2.idiag_states), so a sample dumps every other
state and reuses the TIME_WAIT aggregate of an earlier dump unless the TIME_WAIT dump is due:

- there is no earlier dump for this namespace, or the listening ports changed (they decide which
  TIME_WAIT sockets are inbound and which hold an ephemeral port toward a destination);
- the earlier dump is `max_age_s` old (60 s, one TIME_WAIT lifetime: every 12th sample at the agent's
  5 s; by then every socket of the dump has expired and the aggregate stood for its successors);
- sockstat's tw moved since the dump by more than min(`min_jump`, `range_fraction` of the usable
  ephemeral ports) or, when larger, `jump_fraction` of the dumped count: a churn starting or
  stopping shows there within one sample;
- the TIME_WAIT entry rate (TcpExt TW per second over the last interval) rose since the dump by more
  than `range_fraction` of the usable ports per TIME_WAIT lifetime (a new churn that alone could
  take that share of one destination's ports) or, when larger, `rate_fraction` of the rate then;
- the caller forces it (`force`): an ephemeral-port or TIME_WAIT measurement is at half its lowest
  threshold or more, or alerting, so every sample judges fresh per-destination counts;
- more than MAX_RANGES ranges of listening ports (see below).

Only the outbound TIME_WAIT (local port not a listening port: it holds an ephemeral port toward a
destination) is kept and reused. The inbound (server-side) TIME_WAIT counts a port's accepted-and-
closed connections (AcceptActivity) and must be this sample's: a reusing sample dumps it in the same
walk as every other state, with a kernel-side program that passes every full socket and a TIME_WAIT one
only on a listening port (sources/diag_filter.full_or_inbound_program; Linux 5.9+). A kernel refusing
that program gets the state-filtered dump and, when the last full dump held inbound TIME_WAIT, a port-
filtered dump of it, which walks the kernel's socket hash a second time (measured at 100k sockets: the
walk alone is most of a dump's kernel time); when it held none (this host's servers let the clients
close first), that second walk is skipped: servers starting to close first are seen at the next due
dump (a jump of sockstat's tw, or 60 s).

What a dump costs the kernel whatever is asked: every dump walks the host-wide established hash
(every namespace's sockets, unless the namespace has its own: net.ipv4.tcp_child_ehash_entries), so
a sample costs at least one walk; reusing TIME_WAIT saves the copying and decoding of it.

What a reused aggregate cannot see: a TIME_WAIT rate moving from one destination to another with
the host's tw count unchanged and no destination near a threshold is seen at the next due dump
(within `max_age_s`) instead of the next sample. Reused counts (time_wait_young included) are those
of the dump, the steady-state estimate that an unchanged tw count stands for.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from connwatch.model import DestinationUsage, Listener, PortAccepts, SocketSummary, SourceTable

if TYPE_CHECKING:
    from connwatch.collect_quiet import QuietSignals
    from connwatch.sources.procfs import ParseMemo

QUIET = "quiet"  # TimeWaitCache.reason of a sample that dumped nothing (collect_quiet.py)
TIME_WAIT_S = 60.0  # TCP_TIMEWAIT_LEN
DEFAULT_USABLE = 28_232  # the default ip_local_port_range 32768-60999


@dataclass(frozen=True, slots=True)
class TimeWaitPolicy:
    max_age_s: float = 60.0  # TIME_WAIT_S (was 30 s: a churn starting or stopping is seen by sockstat's
    # tw and TcpExt TW within one sample either way; tests/live/test_time_wait_live.py)
    min_jump: int = 256
    jump_fraction: float = 0.05
    range_fraction: float = 0.05
    rate_fraction: float = 0.10


@dataclass(frozen=True, slots=True)
class TimeWaitSignals:
    """What a sample reads before its dump to decide (all cheap /proc reads)."""

    now: float  # monotonic
    tw: int | None  # sockstat TCP.tw
    entered: int | None  # TcpExt TW: sockets that entered TIME_WAIT since boot
    usable: int | None  # ports in ip_local_port_range


@dataclass(slots=True)
class TimeWaitCache:
    """One namespace's last TIME_WAIT aggregate and whether the next sample must dump TIME_WAIT again."""

    policy: TimeWaitPolicy = field(default_factory=TimeWaitPolicy)
    part: SocketSummary | None = None
    taken_at: float = 0.0  # monotonic time of the dump
    tw: int | None = None  # sockstat TCP.tw when dumped
    rate: float | None = None  # TIME_WAIT entered per second over the interval before the dump
    ports: frozenset[int] = frozenset()
    last: TimeWaitSignals | None = None  # the previous sample's signals (for the current rate)
    force: bool = False  # set by the caller: dump every sample while an alert is near
    planned: tuple[object, object] | None = None  # (judgement, rules) `force` was last set from (agent/tw_plan.py)
    filter_refused: str = ""  # why the kernel refused the inbound port filter (then: dump all TIME_WAIT)
    merged_refused: str = ""  # why the kernel refused the one-walk program (collect_filtered._one_walk)
    inbound_seen: bool = False  # the last full dump held inbound (server-side) TIME_WAIT
    dumps: int = 0
    reuses: int = 0
    # collect_quiet.py: the signals read just before this namespace's last dump when it was empty (no
    # socket but listeners); while they stand, the namespace is not dumped again. None: dump.
    quiet: QuietSignals | None = None
    quiet_skips: int = 0
    reason: str = ""  # why the last sample dumped TIME_WAIT, or "reused", or QUIET
    parsed: ParseMemo = field(default_factory=dict)  # the namespace's counter files as last parsed (ProcFS.memo)
    # The namespace's last LISTEN dump's replies (MemoListenerDecoder): a listener whose reply is byte for byte
    # the last sample's is the last sample's Listener object (collect._first_dump).
    listener_replies: dict[bytes, Listener] = field(default_factory=dict)

    def observe(self, sig: TimeWaitSignals, ports: frozenset[int]) -> str | None:
        """This sample's signals in; why TIME_WAIT must be dumped now, or None when the last aggregate
        stands. Call once per sample."""
        rate = _rate(self.last, sig)
        self.last = sig
        why = self._due(sig, rate, ports)
        if why is not None:
            self.rate = rate
        return why

    def _due(self, sig: TimeWaitSignals, rate: float | None, ports: frozenset[int]) -> str | None:
        p = self.policy
        if self.part is None:
            return "first sample"
        if self.force:
            return "an ephemeral-port or TIME_WAIT measurement is near its threshold"
        if ports != self.ports:
            return "the listening ports changed"
        if sig.now - self.taken_at >= p.max_age_s:
            return f"the last TIME_WAIT dump is {sig.now - self.taken_at:.0f} s old"
        if sig.tw is None or self.tw is None or rate is None or self.rate is None:
            return "sockstat tw or TcpExt TW unavailable"
        share = p.range_fraction * (sig.usable or DEFAULT_USABLE)
        if abs(sig.tw - self.tw) > max(min(p.min_jump, share), p.jump_fraction * self.tw):
            return f"sockstat tw moved from {self.tw} to {sig.tw}"
        if rate - self.rate > max(share / TIME_WAIT_S, p.rate_fraction * self.rate):
            return f"TIME_WAIT entry rate rose from {self.rate:.1f}/s to {rate:.1f}/s"
        return None

    def store(self, part: SocketSummary, sig: TimeWaitSignals, ports: frozenset[int], why: str) -> None:
        """Keep the outbound TIME_WAIT of a dump that held all of it (with the other states, or alone)."""
        self.inbound_seen = has_inbound(part)
        self.part, self.taken_at, self.tw, self.ports, self.reason = outbound(part), sig.now, sig.tw, ports, why
        self.dumps += 1

    def reuse(self) -> SocketSummary:
        assert self.part is not None
        self.reuses += 1
        self.reason = "reused"
        return self.part


@dataclass(slots=True)
class TimeWaitCaches:
    """One TimeWaitCache per network namespace (key: nsfs inode; 0 = collect()'s own namespace)."""

    policy: TimeWaitPolicy = field(default_factory=TimeWaitPolicy)
    caches: dict[int, TimeWaitCache] = field(default_factory=dict)

    def get(self, key: int) -> TimeWaitCache:
        cache = self.caches.get(key)
        if cache is None:
            cache = self.caches[key] = TimeWaitCache(self.policy)
        return cache

    def keep(self, keys: set[int]) -> None:
        """Forget the namespaces not sampled any more."""
        for key in [k for k in self.caches if k not in keys]:
            del self.caches[key]


def outbound(summary: SocketSummary) -> SocketSummary:
    """The outbound TIME_WAIT of a summary (of every state, or of TIME_WAIT alone): per destination,
    its TIME_WAIT count and how many of them are younger than tcp_tw_reuse_delay."""
    dests = tuple(DestinationUsage(d.local_address, d.remote_address, d.remote_port, {"TIME_WAIT": n},
                                   time_wait_young=d.time_wait_young)
                  for d in summary.destinations if (n := d.states.get("TIME_WAIT", 0)))
    count = sum(d.states["TIME_WAIT"] for d in dests)
    return SocketSummary(total=count, by_state={"TIME_WAIT": count} if count else {}, destinations=dests,
                         sources=SourceTable(), accepts=())


def has_inbound(summary: SocketSummary) -> bool:
    """Any server-side TIME_WAIT (on a listening port) in the summary: the decoder counts each one by
    age under its port (PortAccepts.closed_by_age)."""
    return any(any(a.closed_by_age) for a in summary.accepts or ())


def _rate(before: TimeWaitSignals | None, now: TimeWaitSignals) -> float | None:
    if before is None or before.entered is None or now.entered is None or now.now <= before.now:
        return None
    return max(now.entered - before.entered, 0) / (now.now - before.now)


def merge(fresh: SocketSummary, tw: SocketSummary) -> SocketSummary:
    """The summary of one dump of every state but TIME_WAIT plus one of TIME_WAIT alone."""
    by_state = Counter(fresh.by_state)
    by_state.update(tw.by_state)
    return SocketSummary(
        total=fresh.total + tw.total, by_state=dict(by_state),
        destinations=_merge_destinations(fresh.destinations, tw.destinations),
        sources=_merge_sources(fresh.sources, tw.sources),
        accepts=_merge_accepts(fresh.accepts, tw.accepts),
    )


def _added(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    out = dict(a)
    for k, n in b.items():
        out[k] = out.get(k, 0) + n
    return out


def _merge_destinations(fresh: tuple[DestinationUsage, ...], tw: tuple[DestinationUsage, ...]
                        ) -> tuple[DestinationUsage, ...]:
    out = {(d.local_address, d.remote_address, d.remote_port): d for d in fresh}
    for d in tw:
        key = (d.local_address, d.remote_address, d.remote_port)
        have = out.get(key)
        out[key] = d if have is None else dataclasses.replace(
            have, states=_added(have.states, d.states), time_wait_young=have.time_wait_young + d.time_wait_young)
    return tuple(out.values())


def _merge_sources(fresh: SourceTable, tw: SourceTable) -> SourceTable:
    """Per port and source address, the packed state counts added (they add as integers, SourceTable.of)."""
    if not tw.by_port:
        return fresh
    by_port = {port: dict(addrs) for port, addrs in fresh.by_port.items()}
    for port, addrs in tw.by_port.items():
        mine = by_port.setdefault(port, {})
        for key, packed in addrs.items():
            mine[key] = mine.get(key, 0) + packed
    return SourceTable(by_port)


def _merge_accepts(fresh: tuple[PortAccepts, ...] | None, tw: tuple[PortAccepts, ...] | None
                   ) -> tuple[PortAccepts, ...] | None:
    if fresh is None or not tw:
        return fresh
    out = {a.port: a for a in fresh}
    for a in tw:
        have = out.get(a.port)
        out[a.port] = a if have is None else dataclasses.replace(have, closed_by_age=a.closed_by_age)
    return tuple(out[p] for p in sorted(out))
