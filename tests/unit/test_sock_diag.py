"""Decode recorded sock_diag replies (tests/fixtures/netlink) and compare with what ss said."""

from __future__ import annotations

import contextlib
import itertools
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connwatch.errors import ParseError, SourceUnavailable
from connwatch.model import DestinationUsage, Listener
from connwatch.parsers.sock_diag import SocketAggregator, format_address
from connwatch.parsers.sock_diag_listeners import ListenerDecoder

FIX = Path(__file__).parents[1] / "fixtures" / "netlink"


def _chunks(name: str) -> list[bytes]:
    return [bytes.fromhex(line) for line in (FIX / name).read_text().split()]


def _feed(decoder: Callable[[bytes], bool], chunks: list[bytes]) -> int:
    """Feed chunks like sources/netlink.dump does; return how many dumps ended (one per family)."""
    return sum(1 for c in chunks if decoder(c))


def _ss_listen() -> dict[str, tuple[int, int, int]]:
    text = (FIX / "ss.txt").read_text()
    out = {}
    for m in re.finditer(r"LISTEN\s+(\d+)\s+(\d+)\s+(\S+)\s+\S+\n\s+skmem:\(.*?d(\d+)\)", text):
        out[m.group(3)] = (int(m.group(1)), int(m.group(2)), int(m.group(4)))
    return out


def test_listeners_match_ss() -> None:
    found: list[Listener] = []
    assert _feed(ListenerDecoder(found), _chunks("listeners.hex")) == 2
    ss = _ss_listen()
    assert {x.endpoint for x in found} == set(ss)
    for lst in found:
        queue, backlog, drops = ss[lst.endpoint]
        assert (lst.queue, lst.backlog, lst.drops) == (queue, backlog, drops)
        assert lst.inode > 0 and lst.cookie > 0
    hot = next(x for x in found if x.port == 8080)
    assert hot.backlog is not None  # narrows the type; the line below fails on None as well
    assert hot.queue == hot.backlog + 1 == 6 and hot.drops and hot.drops > 0


def test_socket_aggregates_match_ss() -> None:
    agg = SocketAggregator(frozenset({8080, 8081}), tw_reuse_delay_ms=1000)
    assert _feed(agg, _chunks("sockets.hex")) == 2
    summary = agg.summary()
    ss_lines = [ln for ln in (FIX / "ss.txt").read_text().split("# ss -tanH\n")[1].splitlines()
                if not ln.startswith("LISTEN")]
    assert summary.total == len(ss_lines)
    ss_names = {"ESTAB": "ESTABLISHED", "SYN-SENT": "SYN_SENT", "TIME-WAIT": "TIME_WAIT"}
    expected: dict[str, int] = {}
    for ln in ss_lines:
        name = ss_names[ln.split()[0]]
        expected[name] = expected.get(name, 0) + 1
    assert summary.by_state == expected == {"ESTABLISHED": 14, "SYN_SENT": 4, "TIME_WAIT": 1}
    # Inbound: 6 accepted-queue connections from 127.0.0.1 to 8080, one from ::1 to 8081.
    sources = {(s.source, s.port): dict(s.states) for s in summary.sources}
    assert sources[("127.0.0.1", 8080)] == {"ESTABLISHED": 6}
    assert sources[("::1", 8081)] == {"ESTABLISHED": 1}
    # Outbound: each client socket holds an ephemeral port toward its destination.
    dests = {d.destination: d for d in summary.destinations}
    assert dict(dests["127.0.0.1:8080"].states) == {"ESTABLISHED": 6, "SYN_SENT": 4}
    six = dests["[::1]:8081"]
    assert dict(six.states) == {"ESTABLISHED": 1, "TIME_WAIT": 1}
    assert six.local_address == "::1" and len(six.owner_inodes) == 1


def test_time_wait_age_classification() -> None:
    young = SocketAggregator(frozenset({8080, 8081}), tw_reuse_delay_ms=59_999)
    _feed(young, _chunks("sockets.hex"))
    old = SocketAggregator(frozenset({8080, 8081}), tw_reuse_delay_ms=0)
    _feed(old, _chunks("sockets.hex"))

    def pick(agg: SocketAggregator) -> DestinationUsage:
        return next(d for d in agg.summary().destinations if d.remote_port == 8081)

    assert pick(young).time_wait_young == 1  # recorded within a second of closing
    assert pick(old).time_wait_young == 0


def test_truncated_message_is_a_parse_error() -> None:
    chunk = _chunks("listeners.hex")[0]
    cut = chunk[:40]
    with pytest.raises(ParseError, match="truncated"):
        ListenerDecoder([])(cut)


def test_kernel_error_reply_is_unavailable() -> None:
    err = struct.pack("=IHHII", 36, 2, 0, 1, 0) + struct.pack("=i", -2) + b"\0" * 16
    with pytest.raises(SourceUnavailable, match="ENOENT"):
        SocketAggregator(frozenset())(err)


def test_v4_mapped_addresses_become_ipv4() -> None:
    mapped = b"\0" * 10 + b"\xff\xff" + bytes([10, 1, 2, 3])
    assert format_address(10, mapped) == "10.1.2.3"
    assert format_address(2, bytes([127, 0, 0, 2]) + b"\0" * 12) == "127.0.0.2"


@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_project_errors(data: bytes) -> None:
    for decoder in (ListenerDecoder([]), SocketAggregator(frozenset({80}))):
        with contextlib.suppress(ParseError, SourceUnavailable):
            decoder(data)


_MSG = struct.Struct("=BBBBHH16s16sIIIIIIII")
_ADDRS = [bytes([127, 0, 0, 1]) + b"\0" * 12, bytes([10, 0, 0, 9]) + b"\0" * 12,
          b"\0" * 10 + b"\xff\xff" + bytes([10, 0, 0, 9]), bytes(15) + b"\x01"]
_message = st.tuples(
    st.sampled_from([2, 10]), st.integers(1, 12), st.sampled_from([80, 443, 40000, 0]),
    st.sampled_from([80, 5432, 0]), st.sampled_from(_ADDRS), st.sampled_from(_ADDRS), st.integers(0, 2**32 - 1),
    st.one_of(st.sampled_from([58_999, 59_000, 59_001]), st.integers(0, 61_000)), st.integers(0, 9))
_extra = st.sampled_from([b"", b"\x05\x00\x08\x00\x01\x00\x00\x00"])  # no attribute, or INET_DIAG_SHUTDOWN


@given(st.lists(st.tuples(_message, _extra), max_size=60), st.integers(1, 3))
def test_the_inlined_decoder_counts_as_add_does(messages: list[tuple[Any, bytes]], splits: int) -> None:
    """Fuzzing (synthetic messages): the hot path of SocketAggregator.__call__ aggregates exactly as
    add(), which the /proc/net/tcp and capture paths use, message by message."""
    fields: list[tuple[Any, ...]] = []
    raw: list[bytes] = []
    for (fam, state, sport, dport, src, dst, cookie, expires, inode), extra in messages:
        f = (fam, state, 0, 0, struct.unpack("=H", sport.to_bytes(2, "big"))[0],
             struct.unpack("=H", dport.to_bytes(2, "big"))[0], src, dst, 0, cookie, 0, expires, 0, 0, 0, inode)
        body = _MSG.pack(*f) + extra
        raw.append(struct.pack("=IHHII", 16 + len(body), 20, 2, 1, 0) + body)
        fields.append(f)
    done = struct.pack("=IHHII", 20, 3, 2, 1, 0) + b"\0" * 4
    stream = b"".join(raw)
    cut = [0, *sorted({sum(len(m) for m in raw[:k]) for k in range(0, len(raw) + 1, max(1, len(raw) // splits))}),
           len(stream)]
    fast = SocketAggregator(frozenset({80, 443}), 1000)
    for a, b in itertools.pairwise(cut):
        if b > a:
            assert not fast(stream[a:b])
    assert fast(done)
    slow = SocketAggregator(frozenset({80, 443}), 1000)
    for f in fields:
        slow.add(*f)
    assert fast.summary() == slow.summary()
    assert (fast.total, fast.by_state) == (slow.total, slow.by_state)
