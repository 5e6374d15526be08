"""Column-wise counting of a chunk of TIME_WAIT replies (pure: bytes in, SocketAggregator's counts out).

A TIME_WAIT socket's reply (net/ipv4/inet_diag.c, inet_twsk_diag_fill) is nlmsghdr + inet_diag_msg, 88
bytes, plus INET_DIAG_MARK (8 bytes) when the dumper has CAP_NET_ADMIN (kernel 6.x), and nothing else, so
the chunks of a TIME_WAIT-only dump (kernel-side state filter) are runs of messages of one length:

    60000000 14000200 01000000 910a0000 02060300 b7241b59 7f000001 ... 285c0000 ... 08000f00 00000000
    (length 96, SOCK_DIAG_BY_FAMILY; AF_INET, TIME_WAIT, 127.0.0.1:46884 -> 127.0.0.1:7001;
     expires 23,592 ms; INET_DIAG_MARK; captured from bench/twload.py's load, kernel 6.18)

Such a run is counted with C-level passes over columns of the chunk (byte slices with a step, array
slices, struct.iter_unpack, Counter) and Python work per distinct key only. What it counts is exactly what
SocketAggregator's slim loop counts for the same messages (tests/unit/test_sock_diag_run.py on fuzzed
chunks, tests/live/test_tw_run_live.py on real dumps); anything else (another state or length among the
messages, too few of them, another message type) is left to the slim loop.
"""

from __future__ import annotations

import functools
import struct
import sys
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable
from itertools import chain, compress
from operator import not_

from connwatch.model import STATE_UNIT
from connwatch.parsers import sock_diag_columns
from connwatch.parsers.sock_diag import (
    _AF_INET,
    _DIAG_REPLIES,
    _HDR,
    _MSG,
    _ST_TIME_WAIT,
    RUN_MIN,
    SocketAggregator,
)
from connwatch.parsers.tw_aggregate import add_ages, add_destinations, add_sources

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import Literal

# Columns of such a run (struct.iter_unpack; the rest of a message skipped): the
# outbound key (family; dport, src, dst as 34 raw bytes), the inbound key (family, sport, dst).
_PLAIN = _HDR.size + _MSG.size
_RUN_MAX = 256  # longer messages: the slim loop
_BATCH = 4096  # messages keyed together at most (time_wait_run)
_RUN_DEST = "=16xB5x34s32x{}x"
_RUN_SOURCE = "=16xB3xH18x16s32x{}x"
_RUN_V4_SOURCE = "=40x4s44x{}x"  # (IPv4: the 4 bytes of dst)
_NATIVE = sys.byteorder


def time_wait_run(agg: SocketAggregator, chunk: bytes, offset: int = 0) -> int:
    """Aggregate column-wise the run of TIME_WAIT replies that starts at `offset` (C-speed passes, Python work
    per distinct key only): the messages from there as long as they are TIME_WAIT replies of the first one's
    length L (88 or 96 bytes: what inet_twsk_diag_fill sends), at least RUN_MIN of them; returns the offset
    where the slim loop goes on (`offset`: no such run). Counts exactly what the slim loop counts for them
    (tests/unit/test_sock_diag_run.py). The keying waits in agg.pending for up to _BATCH messages of runs of
    one length (chunks are at most 32 KiB, ~340 replies: the columns' set-up per chunk was half their time),
    until the slim loop meets a reply with a key not yet in the tables (keyed first, so that keys are added
    in the order of the replies; SocketAggregator._loop) or summary() is asked."""
    step = int.from_bytes(chunk[offset:offset + 4], _NATIVE)
    if step < _PLAIN or step > _RUN_MAX or step % 4 or len(chunk) - offset < RUN_MIN * step:
        return offset
    n = (len(chunk) - offset) // step
    end = offset + n * step
    head = chunk[offset:offset + step]  # a run's messages are `step` bytes long (so each starts a multiple on)
    # The RUN_MIN-th slot unlike the first: no run (~1 us, where the columns of the rest of the chunk took ~30)
    last = offset + (RUN_MIN - 1) * step
    if int.from_bytes(head[4:6], _NATIVE) not in _DIAG_REPLIES or head[17] != _ST_TIME_WAIT or \
            chunk[last:last + 6] != head[:6] or chunk[last + 17] != _ST_TIME_WAIT:
        return offset
    for at, value in ((0, head[0]), (1, head[1]), (2, head[2]), (3, head[3]), (4, head[4]), (5, head[5]),
                      (17, _ST_TIME_WAIT)):  # length, type and state of each slot alike (C-speed counts)
        column = chunk[offset + at:end:step]
        if column.count(value) != n:  # the run ends at the first slot that differs (and is no message after)
            n = column.translate(_unlike(value)).find(1)
            end = offset + n * step
    if n < RUN_MIN:
        return offset
    if agg.pending and int.from_bytes(agg.pending[0][:4], _NATIVE) != step:
        flush(agg)
    agg.pending.append(chunk if offset == 0 and end == len(chunk) else chunk[offset:end])
    agg.pending_size += n
    agg.total += n
    agg.by_state[_ST_TIME_WAIT] += n
    if agg.pending_size >= _BATCH:
        flush(agg)
    return end


@functools.cache
def _unlike(value: int) -> bytes:
    """A translation table: 0 for `value`, 1 for any other byte."""
    return bytes(int(b != value) for b in range(256))


def flush(agg: SocketAggregator) -> None:
    """Key the runs waiting in agg.pending (time_wait_run), all of one message length (the full-socket
    chunks held, sock_diag_full.hold, first: they came before)."""
    if agg.held:
        from connwatch.parsers.sock_diag_full import release  # (it imports this module)

        release(agg)
    if not agg.pending:
        return
    run = agg.pending[0] if len(agg.pending) == 1 else b"".join(agg.pending)
    agg.pending.clear()
    agg.pending_size = 0
    step = int.from_bytes(run[:4], _NATIVE)
    n = len(run) // step
    sports, expires = _column(run, "H", 10 * 2, step), _column(run, "I", 17 * 4, step)
    listening = agg.listen_raw
    if not listening or listening.isdisjoint(sports):
        flags, n_in = bytes(n), 0
    elif listening.issuperset(sports):
        flags, n_in = b"\1" * n, n
    else:
        flags = bytes(map(listening.__contains__, sports))
        n_in = flags.count(1)
    if not sock_diag_columns.count_run(agg, run, step, n, flags, n_in, expires):
        _by_keys(agg, run, step, flags, n_in, sports, expires)


def _column(run: bytes, code: Literal["H", "I"], at: int, step: int) -> array[int]:
    """The native `code` integer at offset `at` of each `step`-byte message: a strided view of the run copied
    to an array, 2 or 4 bytes per message. Not array.frombytes(run)[at::step]: that copied the whole run
    (390 KB a batch) twice into fresh memory, 1,360 of a 35k-socket snapshot's 3,900 page faults."""
    size = array(code).itemsize
    out = array(code)
    out.frombytes(memoryview(run).cast(code)[at // size::step // size].tobytes())
    return out


def _by_keys(agg: SocketAggregator, run: bytes, step: int, flags: bytes, n_in: int, sports: array[int],
             expires: array[int]) -> None:
    """The run counted key by key (a tuple per message): where sock_diag_columns cannot."""
    n = len(flags)
    inbound = list(map(bool, flags)) if 0 < n_in < n else None
    if n_in < n:
        keys: Iterable[tuple[int, bytes]] = struct.iter_unpack(_RUN_DEST.format(step - _PLAIN), run)
        outbound_expires: Iterable[int] = expires
        if inbound is not None:
            keys = compress(keys, map(not_, inbound))
            outbound_expires = compress(expires, map(not_, inbound))
        _outbound(agg, list(keys), outbound_expires)
    if n_in:
        if inbound is not None:
            sports, expires = array("H", compress(sports, inbound)), array("I", compress(expires, inbound))
        _inbound(agg, run, step, inbound, sports, expires)


def _outbound(agg: SocketAggregator, keys: list[tuple[int, bytes]], expires: Iterable[int]) -> None:
    """Outbound TIME_WAIT of a run: per destination key, the count and the young count."""
    young = Counter(compress(keys, map(agg.young_expires.__lt__, expires)))  # expires > young_expires
    add_destinations(agg, (((family, raw[2:18], raw[18:], int.from_bytes(raw[:2], _NATIVE)), count,
                             young.get((family, raw), 0)) for (family, raw), count in Counter(keys).items()))

def _inbound(agg: SocketAggregator, run: bytes, step: int, inbound: list[bool] | None, sports: array[int],
             expires: array[int]) -> None:
    """Inbound TIME_WAIT of a run (the messages `inbound` selects, else all): per source address and port
    (packed counts), and by age per port: (60000 - expires) // 1000 s, which is 60 - ceil(expires / 1000)."""
    sources, unit, first = agg.sources, STATE_UNIT[_ST_TIME_WAIT], sports[0]
    one_port = sports.count(first) == len(sports)
    if one_port and run[16::step].count(_AF_INET) == len(run) // step:  # IPv4, one port: 4-byte keys
        keys: Iterable[bytes] = chain.from_iterable(struct.iter_unpack(_RUN_V4_SOURCE.format(step - _PLAIN), run))
        found = list(keys if inbound is None else compress(keys, inbound))
        counts = dict.fromkeys(found, 1)  # (each source once in the chunk: the common case, no counting)
        if len(counts) < len(found):
            counts = Counter(found)
        addrs = sources.get(first)
        if addrs is None:
            addrs = sources[first] = defaultdict(int)
        if unit == 1 and (not addrs or addrs.keys().isdisjoint(counts)):
            addrs.update(counts)  # (C speed: 100k sources of one TIME_WAIT each)
        else:
            for key, count in counts.items():
                addrs[key] += unit * count
    else:
        rows: Iterable[tuple[int, int, bytes]] = struct.iter_unpack(_RUN_SOURCE.format(step - _PLAIN), run)
        if inbound is not None:
            rows = compress(rows, inbound)
        add_sources(agg, ((family, sport, dst, count) for (family, sport, dst), count in Counter(rows).items()))
    ups = map((1000).__rfloordiv__, map((999).__add__, expires))  # ceil(expires / 1000)
    add_ages(agg, ((first, up, count) for up, count in Counter(ups).items()) if one_port else
             ((sport, up, count) for (sport, up), count in Counter(zip(sports, ups, strict=True)).items()))

