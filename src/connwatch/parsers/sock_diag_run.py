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
    SocketAggregator,
)
from connwatch.parsers.tw_aggregate import add_ages, add_destinations, add_sources

# Columns of such a run (struct.iter_unpack; the rest of a message skipped): the
# outbound key (family; dport, src, dst as 34 raw bytes), the inbound key (family, sport, dst).
_PLAIN = _HDR.size + _MSG.size
_RUN_MAX = 256  # longer messages: the slim loop
_BATCH = 4096  # messages keyed together at most (time_wait_run)
_RUN_MIN = 16  # fewer messages in a chunk: the slim loop (the columns' set-up costs ~10 messages)
_RUN_DEST = "=16xB5x34s32x{}x"
_RUN_SOURCE = "=16xB3xH18x16s32x{}x"
_RUN_V4_SOURCE = "=40x4s44x{}x"  # (IPv4: the 4 bytes of dst)
_NATIVE = sys.byteorder


def time_wait_run(agg: SocketAggregator, chunk: bytes) -> int:
    """Aggregate the chunk's leading run column-wise (C-speed passes, Python work per distinct key only):
    its first messages as long as they are TIME_WAIT replies of the first one's length L (88 or 96 bytes:
    what inet_twsk_diag_fill sends), at least _RUN_MIN of them; returns the offset where the slim loop goes
    on (0: no such run). Counts exactly what the slim loop counts for them (tests/unit/test_sock_diag_run.py).
    The keying waits in agg.pending for up to _BATCH messages of runs of one length (chunks are at most
    32 KiB, ~340 replies: the columns' set-up per chunk was half their time), until another reply comes
    (then it is keyed first) or summary() is asked."""
    step = int.from_bytes(chunk[:4], _NATIVE)
    if step < _PLAIN or step > _RUN_MAX or step % 4 or len(chunk) < _RUN_MIN * step:
        flush(agg)
        return 0
    n = len(chunk) // step
    end = n * step
    head = chunk[:step]  # a run's messages are `step` bytes long (so each starts at a multiple of it)
    if int.from_bytes(head[4:6], _NATIVE) not in _DIAG_REPLIES or head[17] != _ST_TIME_WAIT:
        flush(agg)
        return 0
    for at, value in ((0, head[0]), (1, head[1]), (2, head[2]), (3, head[3]), (4, head[4]), (5, head[5]),
                      (17, _ST_TIME_WAIT)):  # length, type and state of each slot alike (C-speed counts)
        column = chunk[at:end:step]
        if column.count(value) != n:  # the run ends at the first slot that differs (and is no message after)
            n = column.translate(_unlike(value)).find(1)
            end = n * step
    if n < _RUN_MIN:
        flush(agg)
        return 0
    if agg.pending and int.from_bytes(agg.pending[0][:4], _NATIVE) != step:
        flush(agg)
    agg.pending.append(chunk if end == len(chunk) else chunk[:end])
    agg.total += n
    agg.by_state[_ST_TIME_WAIT] += n
    if end < len(chunk) or sum(map(len, agg.pending)) >= _BATCH * step:
        flush(agg)
    return end


@functools.cache
def _unlike(value: int) -> bytes:
    """A translation table: 0 for `value`, 1 for any other byte."""
    return bytes(int(b != value) for b in range(256))


def flush(agg: SocketAggregator) -> None:
    """Key the runs waiting in agg.pending (time_wait_run), all of one message length."""
    if not agg.pending:
        return
    run = agg.pending[0] if len(agg.pending) == 1 else b"".join(agg.pending)
    agg.pending.clear()
    step = int.from_bytes(run[:4], _NATIVE)
    n = len(run) // step
    # The two columns read through strided views of the run, not arrays of all of it (two copies of the batch,
    # ~390 KB each, a fresh mapping of pages every batch): a 35k-socket sample's TIME_WAIT dump took ~2,300
    # page faults; decoding 15k TIME_WAIT replies (replayed, CPU, medians of 9) 4.7-7.1 -> 3.1 ms, 1,029 -> 209
    # page faults the first time.
    view = memoryview(run)
    sports, expires = array("H"), array("I")
    sports.frombytes(view.cast("H")[10::step // 2].tobytes())
    expires.frombytes(view.cast("I")[17::step // 4].tobytes())
    view.release()
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

