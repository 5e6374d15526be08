"""Column-wise counting of a chunk of full-socket replies (every state but TIME_WAIT; pure: bytes in,
SocketAggregator's counts out).

A full socket's reply (net/ipv4/inet_diag.c, inet_sk_diag_fill, no extension asked) is nlmsghdr +
inet_diag_msg + the attributes sent whatever is asked (INET_DIAG_SHUTDOWN, INET_DIAG_CGROUP_ID,
INET_DIAG_SOCKOPT, INET_DIAG_MARK to CAP_NET_ADMIN...): one length per family whatever the state, so the
chunks of the agent's dump of every state but TIME_WAIT on an IPv4 (or an IPv6) host are runs of messages of
one length (124 bytes for IPv4 on kernel 6.18):

    7c000000 12000200 01000000 6b220000 02010000 e9c41b58 7f000001 ... 9fc80b00 05000800 00 ... 08000f00 ...
    (length 124, TCPDIAG_GETSOCK; AF_INET, ESTABLISHED, 127.0.0.1:59675 -> 127.0.0.1:7000; inode 771231;
     INET_DIAG_SHUTDOWN, INET_DIAG_MARK, INET_DIAG_CGROUP_ID, INET_DIAG_SOCKOPT; bench/bench_agent.py's load)

Such a run is counted as parsers/sock_diag_columns.py counts a TIME_WAIT run: the key bytes that differ
between the messages (the state among them) gathered into one small code per message, each distinct code
turned back into its key once; the inodes of accepted connections (AcceptActivity) and of the first
ESTABLISHED connections per destination (owners) taken from the inode column at C speed. What it counts is
exactly what the slim loop counts (tests/unit/test_sock_diag_full.py on fuzzed chunks, the live comparison
in tests/live/test_tw_run_live.py). Left to the slim loop: runs with a TIME_WAIT reply (the TIME_WAIT paths
count those), an unknown state, a SYN_SENT socket on a listening port, a connection waiting in an accept
queue (inode 0: it is keyed by its cookie), more differing key bytes than a code holds, or many distinct
keys (one peer per connection: the codes would not pay).

Measured (bench/bench_agent.py's load at 100k sockets: 10,000 ESTABLISHED, half accepted on one port, half
toward it; the 41 chunks of a real dump of every state but LISTEN and TIME_WAIT replayed, decoding and
summary, min of 15, Python 3.11): 6.9 ms with the slim loop, 3.8 ms with these columns (0.55x); ~75 us per
chunk of ~260 replies against ~170 us. Not covered: one walk's dump on a host with both IPv4 and IPv6 sockets
(their replies interleave in hash order, two lengths: short runs, the slim loop).
"""

from __future__ import annotations

import sys
from array import array
from collections import defaultdict
from itertools import compress, islice

from connwatch.model import STATE_UNIT
from connwatch.parsers import columns
from connwatch.parsers.sock_diag import (
    _DIAG_REPLIES,
    _NSTATES,
    _OWNER_SAMPLE,
    _QUEUE_STATES,
    _SLIM,
    _ST_CLOSE,
    _ST_ESTABLISHED,
    _ST_SYN_SENT,
    _ST_TIME_WAIT,
    _V4MAPPED,
    ACCEPT_SAMPLE,
    SocketAggregator,
)
from connwatch.parsers.sock_diag_columns import kind_templates, kinded
from connwatch.parsers.sock_diag_run import _unlike

_RUN_MIN = 16  # fewer messages: the slim loop (the columns' set-up costs ~10 messages)
_RUN_MAX = 512  # longer messages: the slim loop
_DECLINES = 2  # runs the columns could not count, after which a dump's other chunks go to the slim loop
_SAMPLE = 64  # messages whose codes tell whether keys repeat enough for codes to pay
_BOTH = (16, 17, *range(40, 56))  # family, state, dst: in both keys
_IN_ONLY = (20, 21)  # sport: the inbound key's
_OUT_ONLY = tuple(range(22, 40))  # dport, src: the outbound key's
_INODE = 84 // 4  # idiag_inode, in 32-bit words
_SPORT = 20 // 2  # id.idiag_sport, in 16-bit words (network order, read native as the slim loop reads it)
_NATIVE = sys.byteorder
_HOLD = 8  # whole-run chunks counted together at most (hold)
_PLANES = 8  # listening ports up to which the inbound messages are found by their port's bytes (_inbound)
# 1 for the states a run may hold (SocketAggregator counts any of them as the slim loop does), else 0
_KNOWN = bytes(int(0 < s < _NSTATES and s != _ST_TIME_WAIT) for s in range(256))
_QUEUED = bytes(int(s in _QUEUE_STATES) for s in range(256))
_SYN = bytes(int(s == _ST_SYN_SENT) for s in range(256))


def full_run(agg: SocketAggregator, chunk: bytes, may_hold: bool = False) -> int:
    """Count the chunk's leading run of full-socket replies of one length column-wise; returns the offset
    where the slim loop goes on (0: no such run, nothing counted). See the module's docstring. `may_hold`: a
    chunk that is one run whole is held (agg.held) to be counted with the chunks of the run after it (hold)."""
    step = int.from_bytes(chunk[:4], _NATIVE)
    if step < _SLIM.size or step > _RUN_MAX or step % 4 or len(chunk) < _RUN_MIN * step \
            or agg.full_declines >= _DECLINES:
        return 0
    head = chunk[:step]
    if int.from_bytes(head[4:6], _NATIVE) not in _DIAG_REPLIES or any(
            chunk[at:_RUN_MIN * step:step].count(head[at]) != _RUN_MIN for at in (0, 1)):
        return 0  # (a short run, e.g. IPv4 and IPv6 replies interleaved in one walk: ~1 us to tell)
    n = len(chunk) // step
    end = n * step
    for at in range(6):  # length and type of each slot alike (C-speed counts)
        column = chunk[at:end:step]
        if column.count(head[at]) != n:  # the run ends at the first slot that differs
            n = column.translate(_unlike(head[at])).find(1)
            end = n * step
    if n < _RUN_MIN:
        return 0
    run = chunk[:end]
    states = run[17::step]
    if states.translate(_KNOWN).count(1) != n:
        return 0
    if may_hold and end == len(chunk):  # (the whole chunk: held, counted with the chunks of the run that follow it)
        agg.held.append(chunk)
        agg.total += n
        return end
    if _count(agg, run, step, n, states):
        return end
    agg.full_declines += 1
    return 0


def hold(agg: SocketAggregator, chunk: bytes) -> bool:
    """Hold the chunk with agg.held when it is one more whole run of their messages (length and type alike,
    states the columns count) and there is room (_HOLD); else count the held chunks (release) and False.

    The columns' cost is mostly per chunk (a slice and a count per key byte, whatever the run's length): the
    non-TIME_WAIT dump at 100k sockets, 40 chunks of 261 replies, was decoded in 6.8 ms a chunk at a time,
    4.3 ms with up to 8 chunks counted together (recorded chunks, medians of 200 in 8 interleaved rounds,
    load 1.1). The held chunks count in agg.total at once (a dump that fails after them is not one that no
    reply came from, collect.py); nothing else reads agg before the next chunk or summary() releases them."""
    first = agg.held[0]
    step = int.from_bytes(first[:4], _NATIVE)
    n = len(chunk) // step
    if len(agg.held) < _HOLD and n and len(chunk) == n * step and chunk[:6] == first[:6] and \
            all(chunk[at::step].count(first[at]) == n for at in range(6)) and \
            chunk[17::step].translate(_KNOWN).count(1) == n:
        agg.held.append(chunk)
        agg.total += n
        return True
    release(agg)
    return False


def release(agg: SocketAggregator) -> None:
    """Count the held chunks, one run, by columns; where the columns cannot, each chunk by the slim loop."""
    held, agg.held = agg.held, []
    run = held[0] if len(held) == 1 else b"".join(held)
    step = int.from_bytes(run[:4], _NATIVE)
    n = len(run) // step
    agg.total -= n  # (counted again now)
    if _count(agg, run, step, n, run[17::step]):
        return
    agg.full_declines += 1
    for chunk in held:
        agg._slim(chunk, 0)


def _and(a: bytes, b: bytes) -> bytes:
    """a[i] & b[i] for each i (one big-int AND, no object per message)."""
    return (int.from_bytes(a, "little") & int.from_bytes(b, "little")).to_bytes(len(a), "little")


def _count(agg: SocketAggregator, run: bytes, step: int, n: int, states: bytes) -> bool:
    """The run into agg; False, with nothing counted, where the columns cannot count it."""
    flags, ports = _inbound(agg.listen_raw, run, step, n)
    n_in = flags.count(1)
    if n_in and _ST_SYN_SENT in states and _and(flags, states.translate(_SYN)).count(1):
        return False  # (a SYN_SENT socket on a listening port counts as outbound: the slim loop)
    found = _codes(run, step, n, flags, n_in)
    if found is None:
        return False
    code, at = found
    words = array("I")
    words.frombytes(run)
    inodes = words[_INODE::step // 4]
    queued = _and(flags, states.translate(_QUEUED)) if n_in else b""
    accepted = list(compress(inodes, queued)) if n_in else []
    if 0 in accepted:
        return False  # (a connection waiting in an accept queue: keyed by its cookie, the slim loop)
    agg.total += n
    for state in (states[:1] if states.count(states[0]) == n else set(states)):  # (one state: no set)
        agg.by_state[state & 15] += states.count(state)
    _keys(agg, columns.counted(code), kind_templates(run, step, n, flags, n_in), at, code, inodes)
    if accepted:
        _accepts(agg, _accepted_by_port(run, step, ports, queued, inodes, accepted))
    return True


def _inbound(listening: frozenset[int], run: bytes, step: int, n: int) -> tuple[bytes, list[tuple[int, bytes]] | None]:
    """A flag per message, 1 where its local port listens, and (for at most _PLANES listening ports) each
    such port found with its own messages' flags. Up to _PLANES ports, a port is found by its two bytes, each
    a column flagged by one translate (`in` first: a byte absent from a column rules the port out at once):
    bytes(map(listening.__contains__, sports)) over the 16-bit ports, one call per message, was 25 us of each
    ~260-reply chunk (10 us for five ports this way, timeit); with the split of the accepted connections per
    port, the non-TIME_WAIT dump's decoding at 100k sockets 7.6 -> 6.8 ms (its recorded chunks, medians of 200
    in 8 interleaved rounds, load 2.3). More ports: one test per message."""
    if not listening:
        return bytes(n), []
    if len(listening) > _PLANES:
        halves = array("H")
        halves.frombytes(run)
        sports = halves[_SPORT::step // 2]
        return (bytes(n), []) if listening.isdisjoint(sports) else (bytes(map(listening.__contains__, sports)), None)
    low, high = run[20::step], run[21::step]  # (id.idiag_sport's two bytes, as listen_raw reads them)
    found = []
    for port in listening:
        first, second = port.to_bytes(2, _NATIVE)
        if first in low and second in high:
            mine = _and(low.translate(_equal(first)), high.translate(_equal(second)))
            if 1 in mine:
                found.append((port, mine))
    if len(found) < 2:
        return (found[0][1] if found else bytes(n)), found
    flags = 0
    for _, mine in found:
        flags |= int.from_bytes(mine, "little")
    return flags.to_bytes(n, "little"), found


def _equal(byte: int) -> bytes:
    """A translation table: 1 for `byte`, else 0."""
    return bytes(byte) + b"\1" + bytes(255 - byte)


def _accepted_by_port(run: bytes, step: int, ports: list[tuple[int, bytes]] | None, queued: bytes,
                      inodes: array[int], accepted: list[int]) -> list[tuple[int, list[int]]]:
    """The accepted connections' inodes per listening port, ports in the order of their first one."""
    if ports is not None and len(ports) == 1:
        return [(ports[0][0], accepted)]
    if ports is not None:
        masks = [(port, _and(mine, queued)) for port, mine in ports]
        return [(port, list(compress(inodes, mask))) for port, mask in
                sorted(((p, m) for p, m in masks if 1 in m), key=lambda pm: pm[1].find(1))]
    halves = array("H")
    halves.frombytes(run)
    sports = list(compress(halves[_SPORT::step // 2], queued))
    if sports.count(sports[0]) == len(sports):  # (one port: no pass per port)
        return [(sports[0], accepted)]
    return [(port, list(compress(accepted, map(port.__eq__, sports)))) for port in dict.fromkeys(sports)]


def _codes(run: bytes, step: int, n: int, flags: bytes, n_in: int) -> tuple[bytes | array[int], list[int]] | None:
    """One code per message of the key bytes that differ (the kind among them in a mixed run) and their
    offsets (parsers/sock_diag_columns.py); None past 8 bytes or when the first messages' keys are mostly
    distinct (the codes would not pay)."""
    found = kinded(run, step, n, flags, n_in, _BOTH, _IN_ONLY, _OUT_ONLY)
    if found is None:
        return None
    cols, at, _masks = found
    if len(cols) > columns.MAX_VARYING:
        return None
    code = columns.codes(cols, n) if cols else b"\0" * n
    if len(set(code[:_SAMPLE])) > _SAMPLE // 2:
        return None
    return code, at


def _keys(agg: SocketAggregator, groups: dict[int, int], templates: tuple[bytearray, bytearray], at: list[int],
          code: bytes | array[int], inodes: array[int]) -> None:
    """Each distinct code's count into its source and port (inbound) or destination (outbound), in the order
    the slim loop would first meet each key; the first ESTABLISHED inodes of each destination."""
    kind = len(templates[0]) - 1
    sources, dests, owners = agg.sources, agg.destinations, agg.owner_inodes
    for value, count in groups.items():
        template = columns.key(templates[0], at, value)
        if template[kind]:  # (the code's kind byte, or the run's kind)
            template = columns.key(templates[1], at, value)
        family, state, dst = template[16], template[17], bytes(template[40:56])
        if template[kind]:  # inbound: per source address and port, packed counts
            sport = int.from_bytes(template[20:22], _NATIVE)
            addrs = sources.get(sport)
            if addrs is None:
                addrs = sources[sport] = defaultdict(int)
            addrs[dst[:4] if family == 2 else dst[12:] if dst[:12] == _V4MAPPED else dst] += STATE_UNIT[state] * count
            continue
        dport = int.from_bytes(template[22:24], _NATIVE)
        if state == _ST_CLOSE and not dport:
            continue  # bound but unconnected: no destination yet
        dkey = (family, bytes(template[24:40]), dst, dport)
        counts = dests.get(dkey)
        if counts is None:
            counts = dests[dkey] = [0] * (_NSTATES + 1)
        counts[state] += count
        if state == _ST_ESTABLISHED:
            kept = owners.setdefault(dkey, [])
            if len(kept) < _OWNER_SAMPLE:
                kept.extend(islice(compress(inodes, map(value.__eq__, code)), _OWNER_SAMPLE - len(kept)))


def _accepts(agg: SocketAggregator, groups: list[tuple[int, list[int]]]) -> None:
    """Accepted connections (inode set) of the listening ports, as SocketAggregator._accept counts them."""
    for sport, mine in groups:
        acc = agg.accepts.get(sport)
        if acc is None:
            acc = agg.accepts[sport] = [0, 0, 0, True, [], []]
        acc[1] += len(mine)
        acc[2] = max(acc[2], max(mine))
        room = ACCEPT_SAMPLE - len(acc[4])
        if len(mine) > room:
            acc[3] = False
        acc[4].extend(mine[:room] if room > 0 else ())
