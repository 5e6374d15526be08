"""TIME_WAIT dumped only when due (collect_tw.py): the merge of a TIME_WAIT-only aggregate with one of
every other state equals one aggregate of everything (recorded replies, tests/fixtures/netlink), and
the policy dumps again exactly when its documented reasons say so."""

from __future__ import annotations

import struct
from pathlib import Path

from connwatch.collect_tw import TimeWaitCache, TimeWaitCaches, TimeWaitPolicy, TimeWaitSignals, merge
from connwatch.model import SocketSummary
from connwatch.parsers.sock_diag import SocketAggregator
from connwatch.sources.diag_filter import full_or_inbound_program, port_ranges, sport_program

FIX = Path(__file__).parents[1] / "fixtures" / "netlink"
TIME_WAIT = 6
LISTEN_PORTS = frozenset({8080, 8081})  # the recorded scenario's listeners (tests/fixtures/netlink/README.md)


def _messages() -> list[bytes]:
    """Every inet_diag message of sockets.hex, one per item (NLMSG_DONE left out)."""
    out = []
    for line in (FIX / "sockets.hex").read_text().split():
        chunk = bytes.fromhex(line)
        offset = 0
        while offset + 16 <= len(chunk):
            length, kind = struct.unpack_from("=IH", chunk, offset)
            if kind == 20:
                out.append(chunk[offset:offset + length])
            offset += (length + 3) & ~3
    return out


def _summary(messages: list[bytes], ports: frozenset[int] = LISTEN_PORTS) -> SocketSummary:
    agg = SocketAggregator(ports)
    for m in messages:
        agg(m)
    return agg.summary()


def _normal(s: SocketSummary) -> tuple[object, ...]:
    return (s.total, dict(s.by_state), sorted(map(repr, s.destinations)), sorted(map(repr, s.sources)),
            sorted(map(repr, s.accepts or ())))


def test_split_dumps_merge_into_the_single_dump() -> None:
    messages = _messages()
    tw = [m for m in messages if m[17] == TIME_WAIT]
    rest = [m for m in messages if m[17] != TIME_WAIT]
    assert tw and rest  # the recording holds both (one server-side TIME_WAIT on [::1]:8081)
    whole, merged = _summary(messages), merge(_summary(rest), _summary(tw))
    assert _normal(merged) == _normal(whole)
    assert merged.by_state.get("TIME_WAIT") == whole.by_state["TIME_WAIT"] == len(tw)


POLICY = TimeWaitPolicy(max_age_s=30, min_jump=256, jump_fraction=0.05, range_fraction=0.05, rate_fraction=0.1)


def _sig(now: float, tw: int | None = 10_000, entered: int | None = 0, usable: int | None = 28_232
         ) -> TimeWaitSignals:
    return TimeWaitSignals(now, tw, entered, usable)


def _cache(tw: int = 10_000, ports: frozenset[int] | None = None, rate: float = 100.0,
           usable: int = 28_232) -> TimeWaitCache:
    """A cache whose dump at t=100 saw `tw` TIME_WAIT entering at `rate`/s (TcpExt TW 0 at t=99)."""
    cache = TimeWaitCache(POLICY)
    part = _summary([m for m in _messages() if m[17] == TIME_WAIT], ports) if ports else SocketSummary(0, {})
    assert cache.observe(_sig(99.0, tw, 0, usable), ports or LISTEN_PORTS) == "first sample"
    dump = _sig(100.0, tw, int(rate), usable)
    assert cache.observe(dump, ports or LISTEN_PORTS) == "first sample"
    cache.store(part, dump, ports or LISTEN_PORTS, "first sample")
    assert cache.rate == rate
    return cache


def _next(cache: TimeWaitCache, tw: int = 10_000, rate: float = 100.0, ports: frozenset[int] = LISTEN_PORTS,
          after: float = 5.0, usable: int = 28_232) -> str | None:
    """observe() a sample `after` s past the previous one, with this rate since it."""
    last = cache.last
    assert last is not None and last.entered is not None
    return cache.observe(_sig(last.now + after, tw, last.entered + int(rate * after), usable), ports)


def test_due_reasons() -> None:
    assert _next(_cache(), tw=10_100) is None  # 100 moved: under max(min(256, 1411), 500)
    assert _next(_cache(), tw=10_501) == "sockstat tw moved from 10000 to 10501"
    assert _next(_cache(), tw=9_499) is not None  # a drop counts too
    assert _next(_cache(), after=30.0) == "the last TIME_WAIT dump is 30 s old"
    assert _next(_cache(), ports=frozenset({8080})) == "the listening ports changed"
    assert _next(_cache(), rate=109.0) is None
    assert _next(_cache(), rate=125.0) == "TIME_WAIT entry rate rose from 100.0/s to 125.0/s"  # > 1411/60
    assert _next(_cache(rate=1000.0), rate=1090.0) is None and _next(_cache(rate=1000.0), rate=1110.0)
    unavailable = _cache()
    assert unavailable.observe(_sig(105.0, None), LISTEN_PORTS) == "sockstat tw or TcpExt TW unavailable"
    forced = _cache()
    forced.force = True
    assert _next(forced) is not None


def test_thresholds_scale_with_the_port_range() -> None:
    """With 200 usable ports, 10 more TIME_WAIT (5 %) or 1/6 s more entering is already due."""
    narrow = _cache(tw=0, rate=0.0, usable=200)
    assert _next(narrow, tw=10, rate=0.0, usable=200) is None
    assert _next(narrow, tw=11, rate=0.0, usable=200) is not None
    narrow = _cache(tw=0, rate=0.0, usable=200)
    assert _next(narrow, tw=0, rate=0.2, usable=200) is not None


def test_only_outbound_time_wait_is_kept() -> None:
    """Server-side TIME_WAIT counts the port's accepted-and-closed connections: never reused, dumped
    fresh (kernel-side port filter) by every sample. The recorded TIME_WAIT socket is the client's
    ([::1]:46910 -> [::1]:8081): outbound, kept; with 46910 listening it is inbound, and not kept."""
    kept = _cache(ports=LISTEN_PORTS).part
    assert kept is not None and kept.total == 1 and kept.by_state == {"TIME_WAIT": 1} and len(kept.destinations) == 1
    inbound = _cache(ports=LISTEN_PORTS | {46910}).part
    assert inbound is not None and inbound.total == 0 and not inbound.destinations and not inbound.sources
    assert _next(_cache(ports=LISTEN_PORTS | {46910}), ports=LISTEN_PORTS | {46910}) is None


def test_port_filter_program() -> None:
    """The bytecode inet_diag_bc_run() interprets, run here by the same rules: end reached exactly =
    accepted; past the end = rejected (net/ipv4/inet_diag.c)."""
    ranges = port_ranges([443, 80, 81, 82, 8080])
    assert ranges == [(80, 82), (443, 443), (8080, 8080)]
    program = sport_program(ranges)
    assert [p for p in range(0, 9000) if run_program(program, p, 1)] == [80, 81, 82, 443, 8080]


def test_reuse_counts_and_caches_per_namespace() -> None:
    caches = TimeWaitCaches()
    a, b = caches.get(1), caches.get(2)
    assert a is caches.get(1) and a is not b
    a.store(_summary([m for m in _messages() if m[17] == TIME_WAIT]), _sig(0.0, 1), LISTEN_PORTS, "first sample")
    assert a.reuse().total == 1 and a.reuses == 1 and a.reason == "reused"
    caches.keep({2})
    assert set(caches.caches) == {2}


class FakeDiag:
    """A sock_diag socket answering dump requests from the recorded replies by the states asked for
    (IPv4: every recorded message; IPv6: none); subclasses decide what a request is answered with."""

    def __init__(self) -> None:
        self.replies: list[bytes] = []

    def answer(self, family: int, states: int) -> None:
        chosen = [m for m in _messages() if states >> m[17] & 1] if family == 2 else []
        self.replies.append(b"".join(chosen) + struct.pack("=IHHIIi", 20, 3, 2, 1, 0, 0))

    def refuse(self, data: bytes) -> None:
        """EINVAL, as a kernel answers a request it will not run."""
        self.replies.append(struct.pack("=IHHIIi", 36, 2, 0, 1, 0, -22) + data[:16])

    def recv(self, bufsize: int, /) -> bytes:
        return self.replies.pop(0)

    def close(self) -> None:
        pass


def run_program(program: bytes, sport: int, cgroup_id: int) -> bool:
    """inet_diag_bc_run() by its rules (net/ipv4/inet_diag.c): end reached exactly = accepted, past it =
    rejected; JMP, S_GE, S_LE and CGROUP_COND (its u64 right after the op)."""
    pos, left = 0, len(program)
    while left > 0:
        code, yes, no = struct.unpack_from("=BBH", program, pos)
        if code == 13:
            ok = struct.unpack_from("=Q", program, pos + 4)[0] == cgroup_id
        else:
            arg = struct.unpack_from("=BBH", program, pos + 4)[2] if code in (2, 3) else 0
            ok = {1: False, 2: sport >= arg, 3: sport <= arg}[code]
        step = yes if ok else no
        pos, left = pos + step, left - step
    return left == 0


class _Kernel(FakeDiag):
    """Runs a request's program on each recorded socket as inet_diag_bc_sk() does (a TIME_WAIT or
    request socket's cgroup id is 0, a full socket's 1, the root cgroup's), or refuses it with EINVAL, as
    a kernel whose inet_diag_bc_audit() rejects an op would: those in `refused` (every op by default; 13,
    CGROUP_COND, for a kernel before 5.9)."""

    def __init__(self, refused: frozenset[int] = frozenset(range(256))) -> None:
        super().__init__()
        self.refused = refused
        self.filtered = 0  # requests carrying a program
        self.requests = 0

    def send(self, data: bytes, /) -> int:
        family, states = data[16], struct.unpack_from("=I", data, 20)[0]
        self.requests += 1
        if len(data) <= 16 + 56:
            self.answer(family, states)
            return len(data)
        self.filtered += 1
        program = data[16 + 56 + 4:]
        codes, pos = set(), 0
        while pos < len(program):  # each op once: its `yes` steps over its operand (inet_diag_bc_audit's walk)
            codes.add(program[pos])
            pos += program[pos + 1]
        if codes & self.refused:
            self.refuse(data)
            return len(data)
        chosen = [m for m in _messages() if states >> m[17] & 1 and family == 2
                  and run_program(program, struct.unpack_from(">H", m, 20)[0], 0 if m[17] in (3, TIME_WAIT) else 1)]
        self.replies.append(b"".join(chosen) + struct.pack("=IHHIIi", 20, 3, 2, 1, 0, 0))
        return len(data)


def test_a_refused_port_filter_falls_back_to_dumping_all_time_wait() -> None:
    from connwatch.collect_filtered import _split_sockets, _TimeWaitPlan  # the collect step under test

    ports = LISTEN_PORTS | {46910}  # the recorded TIME_WAIT socket's port listening: inbound TIME_WAIT seen
    kernel, cache = _Kernel(), _cache(ports=ports)
    assert cache.inbound_seen
    whole = _summary(_messages(), ports)
    got = _split_sockets(kernel, ports, None, [], False, _TimeWaitPlan(cache, _sig(105.0, 10_000, 500)))
    assert kernel.filtered == 2 and _normal(got) == _normal(whole)  # the one-walk program, then the port filter
    assert cache.merged_refused == cache.filter_refused == "kernel refused the dump: EINVAL"
    assert cache.reason.endswith("(kernel refused the dump: EINVAL)")
    again = _split_sockets(kernel, ports, None, [], False, _TimeWaitPlan(cache, _sig(110.0, 10_000, 1000)))
    assert kernel.filtered == 2 and _normal(again) == _normal(whole)  # not asked again: all TIME_WAIT dumped


def test_before_linux_5_9_no_inbound_time_wait_at_the_last_dump_no_second_walk() -> None:
    from connwatch.collect_filtered import _split_sockets, _TimeWaitPlan

    kernel, cache = _Kernel(refused=frozenset({13})), _cache(ports=LISTEN_PORTS)
    assert not cache.inbound_seen
    got = _split_sockets(kernel, LISTEN_PORTS, None, [], False, _TimeWaitPlan(cache, _sig(105.0, 10_000, 500)))
    assert kernel.filtered == 1 and cache.merged_refused and cache.reason == "reused"
    assert _normal(got) == _normal(_summary(_messages()))
    again = _split_sockets(kernel, LISTEN_PORTS, None, [], False, _TimeWaitPlan(cache, _sig(110.0, 10_000, 1000)))
    assert kernel.filtered == 1 and _normal(again) == _normal(got)  # the refused program is not sent again


def test_before_linux_5_9_inbound_time_wait_takes_a_second_walk() -> None:
    from connwatch.collect_filtered import _split_sockets, _TimeWaitPlan

    ports = LISTEN_PORTS | {46910}
    kernel, cache = _Kernel(refused=frozenset({13})), _cache(ports=ports)
    _split_sockets(kernel, ports, None, [], False, _TimeWaitPlan(cache, _sig(105.0, 10_000, 500)))
    kernel.requests = 0
    got = _split_sockets(kernel, ports, None, [], False, _TimeWaitPlan(cache, _sig(110.0, 10_000, 1000)))
    # per family: every state but TIME_WAIT, then the inbound TIME_WAIT with the port filter
    assert kernel.requests == 4 and cache.reason == "reused" and _normal(got) == _normal(_summary(_messages(), ports))


def test_one_walk_holds_every_socket_but_the_outbound_time_wait() -> None:
    """The cgroup op lets one walk emit every full socket and only the inbound TIME_WAIT; with the reused
    outbound TIME_WAIT that is what one dump of everything gives, whether the recorded TIME_WAIT socket is
    inbound (its port listening) or outbound, and whatever the last full dump held."""
    from connwatch.collect_filtered import _split_sockets, _TimeWaitPlan

    for ports in (LISTEN_PORTS, LISTEN_PORTS | {46910}):
        kernel, cache = _Kernel(refused=frozenset()), _cache(ports=ports)
        cache.inbound_seen = False  # (not asked: the one walk holds the inbound TIME_WAIT in any case)
        got = _split_sockets(kernel, ports, None, [], False, _TimeWaitPlan(cache, _sig(105.0, 10_000, 500)))
        assert kernel.requests == kernel.filtered == 2 and not cache.merged_refused  # one per family
        assert cache.reason == "reused" and _normal(got) == _normal(_summary(_messages(), ports))
        tw = got.by_state.get("TIME_WAIT")
        assert tw == 1, got  # the recorded one, dumped now (inbound) or reused (outbound): never twice


def test_one_walk_program_accepts_full_sockets_and_inbound_non_full_ones() -> None:
    program = full_or_inbound_program(port_ranges([80, 81, 443]))
    assert program[:4] == struct.pack("=BBH", 13, 12, len(program))
    assert [p for p in range(0, 1000) if run_program(program, p, 0)] == [80, 81, 443]
    assert all(run_program(program, p, cgroup) for p in (0, 80, 444, 65535) for cgroup in (1, 2, 7777))


def test_the_default_policy_dumps_again_after_one_time_wait_lifetime() -> None:
    """Every socket of a dump has expired 60 s later (TCP_TIMEWAIT_LEN): the default max age is that, so
    with nothing else moving the agent at 5 s dumps TIME_WAIT every 12th sample."""
    cache = TimeWaitCache()
    part = SocketSummary(0, {})
    sig = _sig(100.0)
    assert cache.observe(_sig(95.0, entered=0), LISTEN_PORTS) == "first sample"
    assert cache.observe(sig, LISTEN_PORTS) == "first sample"
    cache.store(part, sig, LISTEN_PORTS, "first sample")
    reasons = []
    for step in range(1, 13):
        reasons.append(cache.observe(_sig(100.0 + 5 * step), LISTEN_PORTS))
        if reasons[-1] is not None:
            cache.store(part, _sig(100.0 + 5 * step), LISTEN_PORTS, reasons[-1])
    assert reasons == [None] * 11 + ["the last TIME_WAIT dump is 60 s old"]
