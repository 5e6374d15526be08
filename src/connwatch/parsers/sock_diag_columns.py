"""A run of TIME_WAIT replies counted by columns (parsers/columns.py), without an object per message: what
SocketAggregator's slim loop counts for them (tests/unit/test_sock_diag_run.py), when few of the keys'
bytes differ between the messages, which is the usual churn: a few listening ports, local addresses and
destinations.

The messages (inet_twsk_diag_fill: nlmsghdr, then inet_diag_msg) are keyed, as the slim loop keys them, by
(family, sport, dst) when inbound (the local port a listening one) and (family, src, dst, dport) when
outbound. Each key byte that differs between the messages becomes one byte of a code per message (at most
8; a byte of the other kind's key is zeroed first, and one that then only tells the kinds apart is
dropped, the kind being a byte of the code); each distinct code is turned back into its key once. An
inbound message's age in seconds (ceil(expires / 1000)) is computed for all at once with a port tag.

Measured (35k TIME_WAIT, 70 % inbound on 8 ports from one address, 30 % outbound to 16 destinations,
bench/twload.py; the 104 chunks of a real TIME_WAIT-only dump replayed, CPU, min of 9, Python 3.11):
the decoding and summary 35.9 ms before, 25.8 ms with these columns and time_wait_run's batches (0.72x).
A whole sample dumps TIME_WAIT apart from 16,384 of them unless they outnumber the other sockets 32 to one
(collect._many_time_wait): in one dump of every state the runs of 16 or more between the other replies
come here (35k TIME_WAIT beside 2,000-4,000 other replies: 23k-32k of 33k-35k, as the hash interleaves
them; 300k: 287,538 of 296,000).
Counting per message is what is left: Counter over 16- to 64-bit codes ~120 ns a message, ~50 ns for 8-bit
ones (array.count per distinct value was 15x slower); codes whose byte planes each hold few distinct bytes
are now renumbered into one byte and counted with bytes.count (columns._densely_counted: about half).
"""

from __future__ import annotations

import functools
import sys
from array import array
from collections import Counter
from itertools import compress

from connwatch.parsers import columns
from connwatch.parsers.sock_diag import (
    SocketAggregator,
)
from connwatch.parsers.tw_aggregate import add_ages, add_destinations, add_sources

_BOTH = (16, *range(40, 56))  # family, dst: in both keys
_IN_ONLY = (20, 21)  # sport: the inbound key's
_OUT_ONLY = tuple(range(22, 40))  # dport, src: the outbound key's
_EXPIRES_AT = 68
_SAMPLE = 64  # messages whose codes tell whether keys repeat enough for codes to pay
TO_MASK = bytes([0, 255]) + bytes(254)  # a flag (0/1) to a byte mask
TO_UNMASK = bytes([255, 0]) + bytes(254)
_NATIVE = sys.byteorder  # ports as the slim loop reads them (native "H"); the big-int passes are little-endian


def count_run(agg: SocketAggregator, run: bytes, step: int, n: int, flags: bytes, n_in: int,
              expires: array[int]) -> bool:
    """Count the run's n messages (flags: 1 per inbound message, 0 per outbound; n_in of them inbound) into
    agg by columns; False, with nothing counted, where it cannot (too many differing bytes, the inbound
    port differing in both bytes, an expiry time past 61 s, a big-endian host)."""
    found = kinded(run, step, n, flags, n_in)
    if found is None:
        return False
    cols, at, masks = found
    port_at = [pos for pos in at if pos in _IN_ONLY]
    if len(cols) > columns.MAX_VARYING or len(port_at) > 1:
        return False
    code = columns.codes(cols, n) if cols else b"\0" * n
    if len(set(code[:_SAMPLE])) > _SAMPLE // 2:
        return False  # (many distinct keys, e.g. a source each: key by key, where sources are added at C speed)
    by_age, ups = None, None
    if n_in:  # (the ages only once the codes are known to pay)
        ups = columns.ceil_seconds(run, step, n, _EXPIRES_AT, expires)
        by_age = None if ups is None else _tagged_ages(ups, port_at, cols[at.index(port_at[0])] if port_at else b"",
                                                       masks)
        if by_age is None:
            return False
    templates = kind_templates(run, step, n, flags, n_in)
    if n_in < n and ups is None:  # (an outbound run: its ages tell the young ones at C speed too, see _youngs)
        ups = columns.ceil_seconds(run, step, n, _EXPIRES_AT, expires)
    _keys(agg, columns.counted(code), templates, at, _youngs(agg, code, expires, ups) if n_in < n else {})
    if by_age is not None:
        _ages(agg, templates[1], port_at, *by_age)
    return True



def kinded(run: bytes, step: int, n: int, flags: bytes, n_in: int, both: tuple[int, ...] = _BOTH,
           in_only: tuple[int, ...] = _IN_ONLY, out_only: tuple[int, ...] = _OUT_ONLY
           ) -> tuple[list[bytes], list[int], tuple[bytes, bytes]] | None:
    """differing()'s columns and offsets, with the kind (the flags: inbound or outbound) one more column of a
    mixed run, and the masks of each kind's messages; None past 8 differing bytes."""
    mixed = 0 < n_in < n
    masks = (flags.translate(TO_MASK), flags.translate(TO_UNMASK)) if mixed else (b"", b"")
    found = differing(run, step, n, flags, n_in, masks, both, in_only, out_only)
    if found is None:
        return None
    cols, at = found
    if mixed:
        cols.append(flags)
        at.append(step)  # (the kind: a byte past the message in the template)
    return cols, at, masks


def kind_templates(run: bytes, step: int, n: int, flags: bytes, n_in: int) -> tuple[bytearray, bytearray]:
    """Per kind (outbound, inbound), one of its messages and its kind byte: a byte that is the same in all
    messages of a kind is taken from it when a code is turned back into its key."""
    first_in, first_out = (flags.find(1), flags.find(0)) if 0 < n_in < n else (0, 0)
    return (bytearray(run[first_out * step:(first_out + 1) * step]) + bytes([n_in == n]),
            bytearray(run[first_in * step:(first_in + 1) * step]) + bytes([n_in > 0]))


def differing(run: bytes, step: int, n: int, flags: bytes, n_in: int, masks: tuple[bytes, bytes],
              both: tuple[int, ...] = _BOTH, in_only: tuple[int, ...] = _IN_ONLY,
              out_only: tuple[int, ...] = _OUT_ONLY) -> tuple[list[bytes], list[int]] | None:
    """The key columns whose bytes differ between the messages (of a mixed run: with the other kind's key
    bytes zeroed, and dropped when they then only tell the kinds apart), and their offsets; None past 8.
    `both`, `in_only`, `out_only`: the offsets of the bytes of both keys, the inbound's, the outbound's."""
    cols, at = [], []
    mixed, first_in, first_out = bool(masks[0]), flags.find(1), flags.find(0)  # (-1: none, and unused)
    for pos in both + (in_only if n_in else ()) + (out_only if n_in < n else ()):
        col = run[pos::step]
        if col.count(col[0]) == n:
            continue
        if mixed and pos not in both:
            inbound_only = pos in in_only
            col = columns.masked(col, masks[0] if inbound_only else masks[1])
            value = col[first_in if inbound_only else first_out]
            if col.count(value) == (n_in if inbound_only else n - n_in) if value else col.count(0) == n:
                continue  # (one value for its kind: the kind tells it)
        cols.append(col)
        at.append(pos)
        if len(cols) > columns.MAX_VARYING:
            return None
    return cols, at


def _youngs(agg: SocketAggregator, code: bytes | array[int], expires: array[int], ups: bytes | None) -> dict[int, int]:
    """Per code, the messages younger than the reuse delay (expires > young_expires). Where every message's
    ceil(expires / 1000) is known (`ups`: a mixed run's inbound ages, or an outbound run's, count_run) and
    young_expires is whole seconds k (the usual 1 s delay: 59,000 ms), they are the messages whose up exceeds
    k: flagged by one translate and found by bytes.find, each code then read alone (~1/60 of them: measured
    12.7 of a 300k dump's 116 ms decoding went to the per-message map and compress; an outbound-only dump
    of 90k at 100k sockets: 11.4 ms of its 46 ms with the map, ~1.5 ms this way)."""
    limit = agg.young_expires
    if ups is not None and limit % 1000 == 0 and 0 <= limit < 255_000:
        young = ups.translate(_above(limit // 1000))
        if young.count(1) <= len(young) // 8:
            found, at = [], young.find(1)
            while at >= 0:
                found.append(code[at])
                at = young.find(1, at + 1)
            return Counter(found)
    return Counter(compress(code, map(limit.__lt__, expires)))


@functools.cache
def _above(k: int) -> bytes:
    """A translation table: 1 for a byte above k, else 0."""
    return bytes(int(b > k) for b in range(256))


def _keys(agg: SocketAggregator, groups: dict[int, int], templates: tuple[bytearray, bytearray], at: list[int],
          youngs: dict[int, int]) -> None:
    """Each distinct code's count into its destination (outbound) or source and port (inbound)."""
    kind = len(templates[0]) - 1
    sources: list[tuple[int, int, bytes, int]] = []
    dests: list[tuple[tuple[int, bytes, bytes, int], int, int]] = []
    for value, count in groups.items():
        template = columns.key(templates[0], at, value)
        if template[kind]:  # (the code's kind byte, or the run's kind)
            template = columns.key(templates[1], at, value)
        family, dst = template[16], bytes(template[40:56])
        if template[kind]:  # inbound: per source address and port
            sources.append((family, int.from_bytes(template[20:22], _NATIVE), dst, count))
        else:
            dests.append(((family, bytes(template[24:40]), dst, int.from_bytes(template[22:24], _NATIVE)), count,
                          youngs.get(value, 0)))
    add_sources(agg, sources)
    add_destinations(agg, dests)


def _tagged_ages(ups: bytes, port_at: list[int], ports: bytes, masks: tuple[bytes, bytes]
                 ) -> tuple[bytes | array[int], list[int], int, int] | None:
    """Each message's age (ceil(expires / 1000) s, below 64) with a tag: the index of its port's differing
    byte, or `other` for an outbound message. The codes, the port byte values by index, `other`, and the
    tag's shift; None past 254 port byte values (with the outbound tag, more than a byte)."""
    order = list(dict.fromkeys(ports))  # (of a mixed run, 0 may be an outbound message's: indexed, not used)
    if len(order) > 254:
        return None
    index = bytearray(256)
    for i, value in enumerate(order):
        index[value] = i
    other = len(order) if port_at else 1
    tags = ports.translate(index) if port_at else bytes(len(ups))
    if masks[0]:
        tags = columns.merged(tags, bytes([other]) * len(ups), masks[0])
    shift = 6 if other < 4 else 8  # (up to 3 ports and the outbound tag: in the top bits of the age byte)
    if not tags.strip(b"\0"):
        return ups, order, other, shift
    return (columns.tagged(ups, tags) if shift == 6 else columns.paired(ups, tags)), order, other, shift


def _ages(agg: SocketAggregator, template: bytearray, port_at: list[int], by_age: bytes | array[int],
          order: list[int], other: int, shift: int) -> None:
    """The inbound messages by age in s, per port: (60000 - expires) // 1000 = 60 - ceil(expires / 1000)."""
    low = (1 << shift) - 1
    rows = []
    for value, count in columns.counted(by_age).items():
        tag = value >> shift
        if tag == other:
            continue  # (an outbound message)
        if port_at:
            template[port_at[0]] = order[tag]
        rows.append((int.from_bytes(template[20:22], _NATIVE), value & low, count))
    add_ages(agg, rows)
