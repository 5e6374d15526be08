"""The column-wise decoding of runs of full-socket replies (parsers/sock_diag_full.py, SocketAggregator._full_run)
against the slim per-socket loop (SocketAggregator._slim from offset 0: the decoder as it was), on synthetic
chunks: runs of one length in any state but TIME_WAIT, from few or many peers, mixed with TIME_WAIT, SYN_SENT
on a listening port, connections waiting in an accept queue (inode 0), unconnected CLOSE sockets, other
lengths and message types, cut short. Both must end in the same aggregates (insertion order included) and the
same answer, or raise the same error."""

from __future__ import annotations

import socket
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connwatch.parsers import sock_diag_full
from connwatch.parsers.sock_diag import ACCEPT_SAMPLE, SocketAggregator
from tests.unit.diag_outcome import outcome

HDR = struct.Struct("=IHHII")
MSG = struct.Struct("=BBBBHH16s16sIIIIIIII")
LISTENING = frozenset({7100, 7101})
ATTRS = bytes.fromhex("05000800000000000c001500010000000000000006001600520000000000000000000000")  # 36 bytes
DONE = HDR.pack(20, 3, 2, 1, 0) + bytes(4)

V4 = [socket.inet_aton(a) + bytes(12) for a in ("127.0.0.1", "127.0.0.2", "10.1.2.3")]
V6 = [socket.inet_pton(socket.AF_INET6, a) for a in ("::1", "2001:db8::7", "::ffff:127.0.0.9", "::ffff:10.1.2.3")]
STATES = st.sampled_from([1, 1, 1, 1, 8, 2, 3, 4, 5, 9, 11, 7, 6, 13])  # (6: TIME_WAIT, 13: unknown)


def reply(family: int, state: int, sport: int, dport: int, src: bytes, dst: bytes, inode: int, cookie: int = 0,
          size: int = 124, kind: int = 18) -> bytes:
    body = MSG.pack(family, state, 0, 0, socket.htons(sport), socket.htons(dport), src, dst, 0, cookie, 0, 0, 0, 0,
                    0, inode)
    return HDR.pack(size, kind, 2, 1, 0) + body + ATTRS[:size - 88] + bytes(max(0, size - 88 - len(ATTRS)))


@st.composite
def messages(draw: Any, size: int, family: int, states: Any, keys: Any, many: bool = False) -> bytes:
    srcs, dsts, sports, dports = keys
    peer = (st.integers(0, 2**32 - 1).map(lambda i: struct.pack("=I", i) + bytes(12)) if many
            else st.sampled_from(dsts))
    return reply(family, draw(states), draw(sports), draw(dports), draw(st.sampled_from(srcs)), draw(peer),
                 draw(st.sampled_from([0, 1, 5, 77, 2**32 - 1, 1000]) | st.integers(1, 2**32 - 1)),
                 draw(st.integers(0, 3)), size)


def _some(draw: Any, pool: list[Any]) -> list[Any]:
    some: list[Any] = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2, unique=True))
    return some


@st.composite
def runs(draw: Any) -> bytes:
    """A run of full-socket replies of one length (mostly counted by columns): few keys (one or two sources,
    peers, ports), mostly ESTABLISHED, sometimes other states, many peers, or what the columns leave to the
    slim loop (TIME_WAIT, SYN_SENT on a listening port, inode 0, an unknown state)."""
    size = draw(st.sampled_from([124, 136, 88, 92]))
    family = draw(st.sampled_from([socket.AF_INET, socket.AF_INET6]))
    pool = V4 if family == socket.AF_INET else V6
    states = draw(st.sampled_from([st.just(1), st.sampled_from([1, 8, 4, 9, 7]), STATES]))
    ports = [7100, 7101, 40_000, 40_001, 443, 0]
    keys = (_some(draw, pool), _some(draw, [*pool, bytes(16)]), st.sampled_from(_some(draw, ports)),
            st.sampled_from(_some(draw, ports)))
    count = draw(st.integers(0, 60))
    return b"".join(draw(st.lists(messages(size, family, states, keys, draw(st.integers(0, 5)) == 0),
                                  min_size=count, max_size=count)))


CONTROL = st.sampled_from([
    DONE,
    HDR.pack(36, 2, 0, 1, 0) + struct.pack("=i", 0) + bytes(16),  # NLMSG_ERROR 0: an ack, ends the dump
    HDR.pack(36, 2, 0, 1, 0) + struct.pack("=i", -1) + bytes(16),  # NLMSG_ERROR -EPERM
    HDR.pack(20, 16, 0, 1, 0) + bytes(4),  # another message type
])


@st.composite
def chunks(draw: Any) -> list[bytes]:
    out = []
    for _ in range(draw(st.integers(1, 3))):
        parts = draw(st.lists(st.one_of(runs(), runs(), CONTROL), min_size=1, max_size=3))
        chunk = b"".join(parts)
        if draw(st.integers(0, 4)) == 0 and chunk:  # cut short, or a length word changed
            if draw(st.booleans()):
                chunk = chunk[:draw(st.integers(0, len(chunk) - 1))]
            else:
                at = draw(st.integers(0, len(chunk) // 4 - 1)) * 4
                word = struct.pack("=I", draw(st.sampled_from([0, 20, 88, 124, 10_000])))
                chunk = chunk[:at] + word + chunk[at + 4:]
        out.append(chunk)
    return out


def _outcome(parts: list[bytes], slim: bool, listening: frozenset[int] = LISTENING) -> tuple[Any, ...]:
    return outcome(parts, slim, listening)


@settings(max_examples=400, deadline=None)
@given(chunks())
def test_runs_decode_as_the_slim_loop(parts: list[bytes]) -> None:
    assert _outcome(parts, slim=False) == _outcome(parts, slim=True)


# listening ports: one; several sharing bytes (7100 is 0x1bbc, 443 0x01bb) with port 0; more than
# sock_diag_full._PLANES (one membership test per message); none
LISTENERS = st.sampled_from([frozenset({7100}), frozenset({7100, 7101, 443, 40_000, 0}),
                             frozenset({7100, 7101, *range(40_000, 40_010)}), frozenset()])


@settings(max_examples=300, deadline=None)
@given(chunks(), LISTENERS)
def test_runs_decode_as_the_slim_loop_whatever_listens(parts: list[bytes], listening: frozenset[int]) -> None:
    """The inbound messages found by their port's bytes (up to _PLANES listening ports) or by a test per
    message (more), accepted connections split per port in the order of their first, as the slim loop."""
    assert _outcome(parts, False, listening) == _outcome(parts, True, listening)


def _held(count: int, start: int, family: int = socket.AF_INET, mapped: bool = False) -> bytes:
    """bench_agent's held pairs: accepted on 7100 from two peers, and toward 7100 or 7101 from here (ports
    spread), inodes growing; now and then a CLOSE_WAIT, a FIN_WAIT2 or an unconnected CLOSE socket."""
    here = V6[2] if mapped else V4[0] if family == socket.AF_INET else V6[0]
    other = here[:15] + bytes([here[15] ^ 1]) if family == socket.AF_INET6 else V4[1]
    out = []
    for i in range(start, start + count):
        state = 8 if i % 37 == 0 else 5 if i % 41 == 0 else 1
        if i % 2:
            out.append(reply(family, state, 7100, 40_000 + i % 20_000, here, here if i % 3 else other, 10_000 + i))
        elif i % 53 == 0 and not mapped:
            out.append(reply(family, 7, 40_000 + i % 20_000, 0, here, bytes(16), 10_000 + i))
        else:
            out.append(reply(family, state, 40_000 + i % 20_000, 7100 + i % 2, here, here, 10_000 + i))
    return b"".join(out)


def test_held_connections_take_the_column_path() -> None:
    """Chunks of accepted and outgoing connections (IPv4, IPv6, IPv4-mapped) are counted by columns, past the
    owner sample (8 per destination) and the accept sample (4,096 per port), as the slim loop counts them."""
    for family, mapped in ((socket.AF_INET, False), (socket.AF_INET6, False), (socket.AF_INET6, True)):
        parts = [_held(250, k * 250, family, mapped) for k in range(40)] + [DONE]
        agg = SocketAggregator(LISTENING, 1000)
        assert sock_diag_full.full_run(agg, parts[0]) == len(parts[0])
        assert sock_diag_full.full_run(agg, parts[1] + DONE) == len(parts[1])
        outcome = _outcome(parts, slim=False)
        assert outcome == _outcome(parts, slim=True)
        accepts = outcome[2][6]
        assert accepts and accepts[0][1][1] > ACCEPT_SAMPLE and accepts[0][1][3] is False  # (the sample is full)
        assert all(len(v) == 8 for _k, v in outcome[2][3])


def test_accepts_on_several_ports_by_columns() -> None:
    """Connections accepted on three listening ports (met first: 443, then 7100, then 7101), with
    connections toward them: counted by columns, per port in the order the slim loop meets them; with more
    listening ports than _PLANES too."""
    here, peer = V4[0], V4[1]
    order = (7101, 443, 7100)
    run = b"".join(reply(2, 1, order[i % 3] if i % 4 else 40_000 + i, 7100 if i % 4 == 0 else 50_000 + i, here,
                         peer, 5_000 + i) for i in range(300))
    for listening in (frozenset({7100, 7101, 443, 9}), frozenset({7100, 7101, 443, *range(1, 9)})):
        agg = SocketAggregator(listening, 1000)
        assert sock_diag_full.full_run(agg, run + DONE) == len(run)
        assert list(agg.accepts) == [socket.htons(p) for p in (443, 7100, 7101)]
        assert [agg.accepts[socket.htons(p)][1] for p in order] == [75, 75, 75]
        assert _outcome([run + DONE], False, listening) == _outcome([run + DONE], True, listening)


def test_chunks_of_one_run_held_and_counted_together() -> None:
    """Whole-run chunks are held (up to _HOLD), counted in agg.total at once, and counted together by columns
    when a chunk unlike them, the end of the dump or summary() comes; what the slim loop counts, also where the
    columns then decline (many distinct keys: each held chunk by the slim loop)."""
    parts = [_held(250, k * 250) for k in range(11)] + [DONE]
    agg = SocketAggregator(LISTENING, 1000)
    for k in range(sock_diag_full._HOLD):
        assert agg(parts[k]) is False and len(agg.held) == k + 1 and agg.total == 250 * (k + 1)
    assert agg(parts[8]) is False and len(agg.held) == 1 and agg.total == 9 * 250  # (the 8 counted, 1 held)
    assert _outcome(parts, slim=False) == _outcome(parts, slim=True)
    assert _outcome(parts[:5], slim=False) == _outcome(parts[:5], slim=True)  # (released by flush: no DONE)
    many = [b"".join(reply(2, 1, 40_000 + i, 443, V4[0], bytes([10, k, i // 256, i % 256]) + bytes(12), 500 + i)
                     for i in range(40)) for k in range(4)]
    agg = SocketAggregator(LISTENING, 1000)
    assert [agg(chunk) for chunk in many] == [False] * 4 and len(agg.held) == 4
    assert agg(DONE) is True and not agg.held and agg.full_declines == 1
    assert _outcome([*many, DONE], slim=False) == _outcome([*many, DONE], slim=True)
    mixed = [parts[0], many[0], parts[1] + DONE]  # (a run of another key shape, then a chunk with the end)
    assert _outcome(mixed, slim=False) == _outcome(mixed, slim=True)


def test_what_the_columns_leave_to_the_slim_loop() -> None:
    """A TIME_WAIT reply, a SYN_SENT socket on a listening port, a connection waiting for accept() (inode 0),
    a peer per connection, too few messages: not counted by columns (0), and counted as the slim loop counts."""
    base = [reply(2, 1, 7100, 40_000 + i, V4[0], V4[1], 500 + i) for i in range(40)]
    many = [reply(2, 1, 7100, 40_000 + i, V4[0], struct.pack("=I", 7 * i + 3) + bytes(12), 500 + i)
            for i in range(40)]
    cases = {
        "time-wait": [*base[:20], reply(2, 6, 40_000, 443, V4[0], V4[1], 0), *base[20:]],
        "syn-sent on a listening port": [*base[:20], reply(2, 2, 7100, 443, V4[0], V4[1], 9), *base[20:]],
        "waiting in the accept queue": [*base[:20], reply(2, 1, 7100, 41_000, V4[0], V4[1], 0, 5), *base[20:]],
        "a peer each": many,
        "too few": base[:15],
    }
    for name, msgs in cases.items():
        chunk = b"".join(msgs) + DONE
        assert sock_diag_full.full_run(SocketAggregator(LISTENING, 1000), chunk) == 0, name
        assert _outcome([chunk], slim=False) == _outcome([chunk], slim=True), name
    chunk = b"".join(base) + DONE
    assert sock_diag_full.full_run(SocketAggregator(LISTENING, 1000), chunk) == len(chunk) - len(DONE)


def test_declined_runs_stop_the_column_attempts() -> None:
    """After two runs the columns could not count, a dump's later chunks go straight to the slim loop."""
    many = b"".join(reply(2, 1, 7100, 40_000 + i, V4[0], struct.pack("=I", 7 * i + 3) + bytes(12), 500 + i)
                    for i in range(40))
    plain = b"".join(reply(2, 1, 40_000 + i, 443, V4[0], V4[1], 500 + i) for i in range(40))
    agg = SocketAggregator(LISTENING, 1000)
    assert sock_diag_full.full_run(agg, plain) == len(plain)
    for _ in range(2):
        assert sock_diag_full.full_run(agg, many) == 0
    assert sock_diag_full.full_run(agg, plain) == 0
    assert _outcome([many, many, plain, DONE], slim=False) == _outcome([many, many, plain, DONE], slim=True)
