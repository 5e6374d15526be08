"""The column-wise decoding of TIME_WAIT runs (SocketAggregator._time_wait_run) against the slim per-socket
loop (SocketAggregator._slim from offset 0: the decoder as it was), on synthetic chunks (fuzzing only; the
real-kernel comparison is tests/live/test_tw_run_live.py): runs of 88- and 96-byte TIME_WAIT replies mixed
with other lengths, states and message types, NLMSG_DONE/NLMSG_ERROR in the middle, truncated chunks. Both
must end in the same aggregates (insertion order included) and the same answer, or raise the same error."""

from __future__ import annotations

import socket
import struct
from array import array
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connwatch.parsers.sock_diag import SocketAggregator
from connwatch.parsers.sock_diag_run import _column, flush
from tests.unit.diag_outcome import aggregate_state, outcome

HDR = struct.Struct("=IHHII")
MSG = struct.Struct("=BBBBHH16s16sIIIIIIII")
LISTENING = frozenset({7100, 7101})
MARK = struct.pack("=HHI", 8, 15, 0)  # INET_DIAG_MARK, sent with TIME_WAIT replies to CAP_NET_ADMIN

V4 = [socket.inet_aton(a) + bytes(12) for a in ("127.0.0.1", "127.0.0.2", "10.1.2.3")]
V6 = [socket.inet_pton(socket.AF_INET6, a) for a in ("::1", "2001:db8::7", "::ffff:127.0.0.9", "::ffff:10.1.2.3",
                                                       "::")]
EXPIRES = st.one_of(st.sampled_from([0, 1, 999, 1000, 1001, 58_999, 59_000, 59_001, 60_000, 61_000, 2**32 - 1]),
                    st.integers(0, 60_000))
PORTS = st.sampled_from([7100, 7101, 40_000, 40_001, 0, 443])


@st.composite
def messages(draw: Any, length: int | None = None, state: int | None = None, kind: int | None = None,
             family: int | None = None, sports: Any = PORTS) -> bytes:
    family = family if family is not None else draw(st.sampled_from([socket.AF_INET, socket.AF_INET6]))
    pool = V4 if family == socket.AF_INET else V6
    body = MSG.pack(family, state if state is not None else draw(st.sampled_from([6, 6, 6, 5, 1, 7, 8, 2])),
                    3, 0, socket.htons(draw(sports)), socket.htons(draw(PORTS)), draw(st.sampled_from(pool)),
                    draw(st.sampled_from(pool)), 0, draw(st.integers(0, 3)), 0, draw(EXPIRES), 0, 0, 0,
                    draw(st.integers(0, 2)))
    size = length if length is not None else draw(st.sampled_from([88, 96, 104]))
    kind = kind if kind is not None else draw(st.sampled_from([20, 20, 20, 18]))
    return HDR.pack(size, kind, 2, 1, 0) + body + (MARK + bytes(8))[:size - 88]


@st.composite
def runs(draw: Any, size: int | None = None, min_size: int = 0) -> bytes:
    """A run of TIME_WAIT replies of one length (what a TIME_WAIT-only dump sends): of one family or both,
    on one listening port, on one and other ports, or on any."""
    size = size if size is not None else draw(st.sampled_from([88, 96]))
    kind = draw(st.sampled_from([20, 18]))  # (one reply type per dump)
    family = draw(st.sampled_from([socket.AF_INET, socket.AF_INET6, None]))
    sports = draw(st.sampled_from([st.just(7100), st.sampled_from([7100, 40_000]), PORTS]))
    return b"".join(draw(st.lists(messages(size, 6, kind, family, sports), min_size=min_size, max_size=40)))


CONTROL = st.sampled_from([
    HDR.pack(20, 3, 2, 1, 0) + bytes(4),  # NLMSG_DONE
    HDR.pack(36, 2, 0, 1, 0) + struct.pack("=i", 0) + bytes(16),  # NLMSG_ERROR 0: an ack, ends the dump
    HDR.pack(36, 2, 0, 1, 0) + struct.pack("=i", -1) + bytes(16),  # NLMSG_ERROR -EPERM
    HDR.pack(20, 16, 0, 1, 0) + bytes(4),  # another message type
])


@st.composite
def chunks(draw: Any) -> list[bytes]:
    out = []
    for _ in range(draw(st.integers(1, 3))):
        parts = draw(st.lists(st.one_of(runs(), runs(), messages(), CONTROL), min_size=1, max_size=4))
        chunk = b"".join(parts)
        if draw(st.integers(0, 4)) == 0 and chunk:  # cut short, or a length word changed
            if draw(st.booleans()):
                chunk = chunk[:draw(st.integers(0, len(chunk) - 1))]
            else:
                at = draw(st.integers(0, len(chunk) // 4 - 1)) * 4
                word = struct.pack("=I", draw(st.sampled_from([0, 20, 88, 92, 96, 10_000])))
                chunk = chunk[:at] + word + chunk[at + 4:]
        out.append(chunk)
    return out


def _outcome(parts: list[bytes], slim: bool) -> tuple[Any, ...]:
    return outcome(parts, slim, LISTENING)


@settings(max_examples=300, deadline=None)
@given(chunks())
def test_runs_decode_as_the_slim_loop(parts: list[bytes]) -> None:
    assert _outcome(parts, slim=False) == _outcome(parts, slim=True)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([88, 96]), st.lists(messages(None, 6), min_size=0, max_size=3), st.data())
def test_a_run_takes_the_column_path(size: int, tail: list[bytes], data: Any) -> None:
    """A chunk of one run (and NLMSG_DONE, shorter than a message) goes the column path; a run with other
    messages after it too, up to the first that differs (the slim loop takes the rest); both count the same."""
    run = data.draw(runs(size, 16))
    done = HDR.pack(20, 3, 2, 1, 0) + bytes(4)
    assert SocketAggregator(LISTENING, 1000)._time_wait_run(run + done) == len(run)
    chunk = run + b"".join(tail) + done
    assert SocketAggregator(LISTENING, 1000)._time_wait_run(chunk) >= len(run)
    assert _outcome([chunk], slim=False) == _outcome([chunk], slim=True)
    assert _outcome([run + done], slim=False) == _outcome([run + done], slim=True)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([88, 96]), st.data())
def test_columns_of_a_run(size: int, data: Any) -> None:
    """flush's port and expiry columns (a strided view copied) are the whole run's array sliced, as before."""
    run = data.draw(runs(size, 1))
    halves, words = array("H"), array("I")
    halves.frombytes(run)
    words.frombytes(run)
    assert _column(run, "H", 20, size) == halves[10::size // 2]
    assert _column(run, "I", 68, size) == words[17::size // 4]
    assert len(_column(run, "I", 68, size)) == len(run) // size


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([0, 1000, 1500, 2000, 60_000, 70_000]), st.data())
def test_young_counts_of_mixed_runs_for_any_reuse_delay(delay: int, data: Any) -> None:
    """Runs of inbound and outbound TIME_WAIT (the young outbound ones found from the inbound ages' seconds
    where the delay is whole seconds, else compared one by one) count what the slim loop counts."""
    done = HDR.pack(20, 3, 2, 1, 0) + bytes(4)
    expires = st.one_of(st.sampled_from([0, 1, 999, 1000, 1001, 58_000, 58_001, 58_500, 58_501, 59_000, 59_001,
                                         60_000]), st.integers(0, 60_000))
    rows = data.draw(st.lists(st.tuples(st.booleans(), st.sampled_from([7001, 7002]), expires), min_size=40,
                              max_size=120))  # (inbound?, the outbound's destination port, expires)
    run = b"".join(
        HDR.pack(96, 20, 2, 1, 0) + MSG.pack(2, 6, 3, 0, socket.htons(7100 if inbound else 40_000 + i),
                                            socket.htons(port), V4[0], V4[1], 0, i, 0, exp, 0, 0, 0, 0) + MARK
        for i, (inbound, port, exp) in enumerate(rows))
    outcomes = []
    for slim in (False, True):
        agg = SocketAggregator(LISTENING, delay)
        ended = agg._slim(run + done, 0) if slim else agg(run + done)
        flush(agg)
        outcomes.append((ended, aggregate_state(agg), agg.summary()))
    assert outcomes[0] == outcomes[1]


def test_not_a_run() -> None:
    """What the column path leaves to the slim loop: another state among the messages, mixed lengths, too
    few messages, a message type that is no diag reply."""
    def tw(state: int = 6, size: int = 88, kind: int = 20) -> bytes:
        body = MSG.pack(2, state, 3, 0, socket.htons(40_000), socket.htons(443), V4[0], V4[1], 0, 0, 0, 30_000,
                        0, 0, 0, 0)
        return HDR.pack(size, kind, 2, 1, 0) + body + (MARK + bytes(8))[:size - 88]

    agg = SocketAggregator(LISTENING, 1000)
    assert agg._time_wait_run(tw() * 20) == 20 * 88
    assert agg._time_wait_run(tw() * 10 + tw(5) + tw() * 10) == 0
    assert agg._time_wait_run(tw() * 16 + tw(5) + tw() * 10) == 16 * 88  # (a leading run: the slim loop goes on)
    assert agg._time_wait_run(tw() * 10 + tw(size=96) + tw() * 10) == 0
    assert agg._time_wait_run(tw() * 15) == 0
    assert agg._time_wait_run(tw(kind=16) * 20) == 0
    assert agg._time_wait_run(tw(size=104) * 20) == 20 * 104  # (a TIME_WAIT reply with more rtattrs: a run too)


def test_later_runs_of_a_mixed_chunk_take_the_column_path(monkeypatch: Any) -> None:
    """In a dump of every state, the runs of TIME_WAIT between other replies (RUN_MIN or more) are handed
    back to the column path, shorter ones stay in the slim loop; what is counted, and the order keys go
    in (a run's keys wait in agg.pending until a reply with a new key comes), are the slim loop's."""
    import connwatch.parsers.sock_diag_run as run_module

    def tw(port: int, dst: bytes = V4[1], sport: int = 40_000) -> bytes:
        return HDR.pack(96, 20, 2, 1, 0) + MSG.pack(2, 6, 3, 0, socket.htons(sport), socket.htons(port), V4[0], dst,
                                                   0, 0, 0, 30_000, 0, 0, 0, 0) + MARK

    def est(port: int, dst: bytes = V4[1]) -> bytes:  # (ESTABLISHED, 104 bytes: more rtattrs)
        return HDR.pack(104, 20, 2, 1, 0) + MSG.pack(2, 1, 0, 0, socket.htons(40_001), socket.htons(port), V4[0],
                                                    dst, 0, 7, 0, 0, 0, 0, 0, 99) + bytes(16)

    runs: list[int] = []
    real = run_module.time_wait_run

    def counting(agg: SocketAggregator, chunk: bytes, offset: int = 0) -> int:
        end = real(agg, chunk, offset)
        if end > offset:
            runs.append((end - offset) // 96)
        return end

    monkeypatch.setattr(run_module, "time_wait_run", counting)
    done = HDR.pack(20, 3, 2, 1, 0) + bytes(4)
    chunk = (est(443) + tw(7001) * 20 + est(444) + tw(7002) * 5 + est(443) + tw(7003) * 30 + est(445, V4[2])
             + b"".join(tw(7001 + i % 3, sport=7100) for i in range(16)) + tw(7004) + done)  # (7100: inbound)
    assert _outcome([chunk], slim=False) == _outcome([chunk], slim=True)
    assert runs == [20, 30, 17]  # (the last: 16 inbound, then an outbound one)
    runs.clear()
    assert _outcome([tw(7001) * 15 + est(443) + tw(7001) * 15 + done], slim=False)[0] == "ended" and runs == []


def _outbound_run(count: int, destinations: list[tuple[bytes, int]], family: int = socket.AF_INET) -> bytes:
    """`count` outbound TIME_WAIT replies (96 bytes) toward the destinations in turn, ages spread over 60 s
    (some younger than the 1 s reuse delay)."""
    src = V4[0] if family == socket.AF_INET else V6[0]
    return b"".join(
        HDR.pack(96, 20, 2, 1, 0) + MSG.pack(family, 6, 3, 0, socket.htons(40_000 + i), socket.htons(port), src, dst,
                                            0, i, 0, (i * 997) % 60_000, 0, 0, 0, 0) + MARK
        for i, (dst, port) in ((i, destinations[i % len(destinations)]) for i in range(count)))


def test_outbound_runs_are_counted_by_columns(monkeypatch: Any) -> None:
    """Outbound TIME_WAIT toward few destinations (at most 8 of the key's 35 bytes differ: one, two or 16
    destinations, or all to one) is counted without a key object per message (_outbound not called); toward
    many IPv6 destinations, by _outbound. Both as the slim loop counts, insertion order included."""
    import connwatch.parsers.sock_diag_run as run_module

    done = HDR.pack(20, 3, 2, 1, 0) + bytes(4)
    few = [[(V4[1], 7001)], [(V4[1], 7001), (V4[0], 7002)],
           [(dst, port) for dst in V4[:2] for port in range(7001, 7009)]]
    many = [(bytes((i * 17 + k) % 256 for k in range(16)), 443 + i) for i in range(12)]  # every byte differs
    calls: list[int] = []
    real = run_module._outbound

    def counting(agg: SocketAggregator, keys: Any, expires: Any) -> None:
        calls.append(1)
        real(agg, keys, expires)

    monkeypatch.setattr(run_module, "_outbound", counting)
    for destinations in few:
        chunk = _outbound_run(340, destinations) + done
        assert _outcome([chunk], slim=False) == _outcome([chunk], slim=True)
    assert calls == []
    chunk = _outbound_run(340, many, socket.AF_INET6) + done
    assert _outcome([chunk], slim=False) == _outcome([chunk], slim=True)
    assert calls


def _inbound_run(count: int, ports: list[int], sources: list[bytes], family: int = socket.AF_INET,
                 longest: int = 60_000) -> bytes:
    """`count` inbound TIME_WAIT replies (96 bytes) on the listening ports in turn, from the sources in turn,
    expiring at spread times up to `longest` ms (the boundaries of whole seconds among them)."""
    span = [0, 1, 999, 1000, 1001, 59_999, 60_000, longest]
    return b"".join(
        HDR.pack(96, 20, 2, 1, 0) + MSG.pack(family, 6, 3, 0, socket.htons(ports[i % len(ports)]),
                                            socket.htons(40_000 + i), V4[0] if family == socket.AF_INET else V6[0],
                                            sources[i % len(sources)], 0, i, 0,
                                            span[i % len(span)] if i % 3 else (i * 997) % (longest + 1), 0, 0, 0, 0)
        + MARK for i in range(count))


def test_inbound_runs_are_counted_by_columns(monkeypatch: Any) -> None:
    """Inbound TIME_WAIT from few sources (at most 8 of the key's bytes differ, the port in one byte) is
    counted without an object per message (_inbound not called) on 1, 2, 4 or 8 listening ports, IPv4 or
    IPv6; expiry times past 61 s, many IPv6 sources, ports differing in both bytes, or a source for each
    message (more distinct keys than the columns pay for) go to _inbound. All
    as the slim loop counts, insertion order and ages by second included."""
    import connwatch.parsers.sock_diag_run as run_module

    done = HDR.pack(20, 3, 2, 1, 0) + bytes(4)
    listening = [7001 + i for i in range(8)] + [7100, 7101, 8000]
    calls: list[int] = []
    real = run_module._inbound

    def counting(*args: Any) -> None:
        calls.append(1)
        real(*args)

    def same(chunk: bytes) -> None:
        outcomes = []
        for slim in (False, True):
            agg = SocketAggregator(frozenset(listening), 1000)
            ended = agg._slim(chunk, 0) if slim else agg(chunk)
            flush(agg)  # (the runs still waiting to be keyed: summary() keys them)
            outcomes.append((ended, aggregate_state(agg), agg.summary()))
        assert outcomes[0] == outcomes[1]

    monkeypatch.setattr(run_module, "_inbound", counting)
    for ports in ([7100], [7100, 7101], listening[:4], listening[:8]):
        for family, sources in ((socket.AF_INET, V4[:2]), (socket.AF_INET6, V6[:2])):
            same(_inbound_run(340, ports, sources, family) + done)
    assert calls == []
    many = [bytes((i * 17 + k) % 256 for k in range(16)) for i in range(12)]
    distinct = [socket.inet_aton(f"10.0.{i // 256}.{i % 256}") + bytes(12) for i in range(340)]  # a source each
    for chunk in (_inbound_run(340, [7100], V4[:2], longest=61_001), _inbound_run(340, [7100], many, socket.AF_INET6),
                  _inbound_run(340, [7100, 8000], V4[:1]), _inbound_run(340, [7100], distinct)):
        calls.clear()
        same(chunk + done)
        assert calls
