"""TIME_WAIT dumped only when due (collect_tw.py): the merge of a TIME_WAIT-only aggregate with one of
every other state equals one aggregate of everything (recorded replies, tests/fixtures/netlink), and
the policy dumps again exactly when its documented reasons say so."""

from __future__ import annotations

import struct
from pathlib import Path

from connwatch.collect_tw import TimeWaitCache, TimeWaitCaches, TimeWaitPolicy, merge
from connwatch.model import SocketSummary
from connwatch.parsers.sock_diag import SocketAggregator

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


def _cache(tw: int = 10_000, ports: frozenset[int] | None = None) -> TimeWaitCache:
    cache = TimeWaitCache(TimeWaitPolicy(max_age_s=30, min_jump=256, jump_fraction=0.05))
    part = _summary([m for m in _messages() if m[17] == TIME_WAIT], ports) if ports else SocketSummary(0, {})
    cache.store(part, 100.0, tw, ports or LISTEN_PORTS, "first sample")
    return cache


def test_due_reasons() -> None:
    assert TimeWaitCache().due(0.0, 5, frozenset()) == "first sample"
    cache = _cache()
    assert cache.due(105.0, 10_100, LISTEN_PORTS) is None  # 100 moved: under max(256, 500)
    assert cache.due(105.0, 10_501, LISTEN_PORTS) == "sockstat tw moved from 10000 to 10501"
    assert cache.due(105.0, 9_499, LISTEN_PORTS) is not None  # a drop counts too
    assert cache.due(130.0, 10_000, LISTEN_PORTS) == "the last TIME_WAIT dump is 30 s old"
    assert cache.due(105.0, 10_000, frozenset({8080})) == "the listening ports changed"
    assert cache.due(105.0, None, LISTEN_PORTS) == "sockstat tw unavailable"
    cache.force = True
    assert cache.due(105.0, 10_000, LISTEN_PORTS) is not None
    small = _cache(tw=100)
    assert small.due(105.0, 356, LISTEN_PORTS) is None and small.due(105.0, 357, LISTEN_PORTS) is not None


def test_inbound_time_wait_is_dumped_every_sample() -> None:
    """Server-side TIME_WAIT counts the port's accepted-and-closed connections: never reused. The recorded
    TIME_WAIT socket is the client's ([::1]:46910 -> [::1]:8081): it is outbound, and reusable, unless its
    local port is a listening one, which makes it inbound."""
    assert _cache(ports=LISTEN_PORTS).due(105.0, 10_000, LISTEN_PORTS) is None
    inbound = LISTEN_PORTS | {46910}
    assert _cache(ports=inbound).due(105.0, 10_000, inbound) == "inbound TIME_WAIT (accept activity is " \
        "counted from it)"


def test_reuse_counts_and_caches_per_namespace() -> None:
    caches = TimeWaitCaches()
    a, b = caches.get(1), caches.get(2)
    assert a is caches.get(1) and a is not b
    a.store(SocketSummary(3, {"TIME_WAIT": 3}), 0.0, 3, frozenset(), "first sample")
    assert a.reuse().total == 3 and a.reuses == 1 and a.reason == "reused"
    caches.keep({2})
    assert set(caches.caches) == {2}
