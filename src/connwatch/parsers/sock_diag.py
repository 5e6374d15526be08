"""Decode sock_diag replies (pure: bytes in, model out), aggregating while decoding.

Layouts follow include/uapi/linux/inet_diag.h and include/uapi/linux/sock_diag.h:

    struct inet_diag_msg {            /* 72 bytes */
        __u8 idiag_family, idiag_state, idiag_timer, idiag_retrans;
        struct inet_diag_sockid id;   /* __be16 sport, dport; __be32 src[4], dst[4]; __u32 if;
                                         __u32 cookie[2] */
        __u32 idiag_expires, idiag_rqueue, idiag_wqueue, idiag_uid, idiag_inode;
    };

followed by struct rtattr attributes; INET_DIAG_SKMEMINFO (7) carries __u32[SK_MEMINFO_VARS] whose
index SK_MEMINFO_DROPS (8) is the listener's drop counter (`d` in `ss -ltnm`). For LISTEN sockets
idiag_rqueue is the accept-queue length and idiag_wqueue the backlog in force
(net/ipv4/tcp_diag.c, tcp_diag_get_info).

Hot path: one struct unpack per socket, counts kept in lists keyed by raw address bytes, addresses
formatted once per distinct destination key at the end; runs of TIME_WAIT replies (a
TIME_WAIT-only dump's chunks, the runs between other replies in a dump of every state) are counted
column-wise instead (parsers/sock_diag_run.py). Inbound sockets are
counted per source address as one packed int per (address bytes, port) (model.SourceTable): no object
per socket or per source survives the sample. LISTEN sockets: parsers/sock_diag_listeners.py.
"""

from __future__ import annotations

import _socket  # (not socket: see sources/netlink.py)
import errno
import struct
from collections import defaultdict
from collections.abc import Hashable

from connwatch.errors import ParseError, SourceUnavailable
from connwatch.model import (
    STATE_NAMES,
    STATE_UNIT,
    DestinationUsage,
    PortAccepts,
    SocketSummary,
    SourceTable,
    SourceUsage,
)
from connwatch.perf import gc_paused

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import Any, TypeVar

    K = TypeVar("K", bound=Hashable)

    from connwatch.parsers.sock_diag_listeners import ListenerDecoder as ListenerDecoder
    from connwatch.parsers.sock_diag_listeners import MemoListenerDecoder as MemoListenerDecoder

SOURCE = "netlink sock_diag"
NLMSG_ERROR = 2
NLMSG_DONE = 3
SOCK_DIAG_BY_FAMILY = 20
TCPDIAG_GETSOCK = 18  # the legacy request type; its replies carry the same inet_diag_msg
_DIAG_REPLIES = (SOCK_DIAG_BY_FAMILY, TCPDIAG_GETSOCK)
INET_DIAG_SKMEMINFO = 7
SK_MEMINFO_DROPS = 8
TIME_WAIT_LEN_MS = 60_000  # TCP_TIMEWAIT_LEN, include/net/tcp.h

_HDR = struct.Struct("=IHHII")
_MSG = struct.Struct("=BBBBHH16s16sIIIIIIII")
# nlmsghdr + inet_diag_msg, only what the aggregation reads: length, type; family, state, sport, dport
# (network order, as "H" of the raw bytes), dst, cookie[2], expires, inode (src is sliced as bytes)
_SLIM = struct.Struct("=IH10xBBxxHH16x16s4xIII12xI")
_V4MAPPED = b"\x00" * 10 + b"\xff\xff"
_AF_INET = _socket.AF_INET
_NSTATES = 13
_OWNER_SAMPLE = 8  # ESTABLISHED inodes kept per destination to name the owners (bounded)
ACCEPT_SAMPLE = 4096  # inodes (and waiting peers) kept per listening port to tell new accepts (bounded)
_TW_SLOTS, _TW_MASK = 64, 63  # server-side TIME_WAIT by age in whole seconds, 0..60 (TCP_TIMEWAIT_LEN)
RUN_MIN = 16  # TIME_WAIT replies in a run keyed by columns at least (their set-up costs ~10 messages)
_DONE, _MORE = -2, -1  # SocketAggregator._loop: NLMSG_DONE met; the chunk's end reached

# TcpState's numbers (model.STATE_NAMES: the enum is not loaded by a sample)
_ST_ESTABLISHED = STATE_NAMES.index("ESTABLISHED")
_ST_SYN_SENT = STATE_NAMES.index("SYN_SENT")
_ST_TIME_WAIT = STATE_NAMES.index("TIME_WAIT")
_ST_CLOSE = STATE_NAMES.index("CLOSE")
_ST_CLOSE_WAIT = STATE_NAMES.index("CLOSE_WAIT")
_QUEUE_STATES = (_ST_ESTABLISHED, _ST_CLOSE_WAIT)  # what an accept queue holds (a client may close first)


def format_address(family: int, raw: bytes) -> str:
    """16 raw address bytes as text; IPv4-mapped IPv6 addresses become plain IPv4."""
    if family == _socket.AF_INET:
        return _socket.inet_ntop(_socket.AF_INET, raw[:4])
    if raw[:12] == _V4MAPPED:
        return _socket.inet_ntop(_socket.AF_INET, raw[12:16])
    return _socket.inet_ntop(_socket.AF_INET6, raw)


def _check_header(chunk: bytes, offset: int, length: int, kind: int) -> bool:
    """True when the message ends the dump; raises on an error reply or a truncated message."""
    if length < _HDR.size or offset + length > len(chunk):
        raise ParseError(SOURCE, f"truncated netlink message at offset {offset} (length {length})")
    if kind == NLMSG_DONE:
        return True
    if kind == NLMSG_ERROR:
        code = -struct.unpack_from("=i", chunk, offset + _HDR.size)[0]
        if code == 0:
            return True
        raise SourceUnavailable(SOURCE, f"kernel refused the dump: {errno.errorcode.get(code, code)}")
    return False


def __getattr__(name: str) -> object:
    """ListenerDecoder and MemoListenerDecoder, now in parsers/sock_diag_listeners.py, still importable from
    here; loaded when first asked for, not with every import of this module (e.g. analyze's)."""
    if name in ("ListenerDecoder", "MemoListenerDecoder"):
        from connwatch.parsers import sock_diag_listeners

        return getattr(sock_diag_listeners, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class SocketAggregator:
    """Aggregates non-listening sockets while decoding.

    A socket whose local port is a listening port is inbound: counted per (source address, port).
    Any other socket holds a local (ephemeral) port: counted per (local address, destination).
    """

    def __init__(self, listen_ports: frozenset[int], tw_reuse_delay_ms: int | None = None) -> None:
        self.listen_ports = listen_ports
        self.listen_raw = frozenset(_socket.htons(p) for p in listen_ports)  # network order: no ntohs per socket
        # TIME_WAIT sockets with more than this left to live are younger than the reuse delay.
        self.young_expires = TIME_WAIT_LEN_MS - (tw_reuse_delay_ms if tw_reuse_delay_ms is not None else 1000)
        self.by_state = [0] * 16
        self.total = 0
        self.destinations: dict[tuple[int, bytes, bytes, int], list[int]] = {}
        # per listening port (raw network-order key): {address key (model.address_key) -> packed state
        # counts (model.STATE_UNIT)}: ints, no object per source
        self.sources: dict[int, defaultdict[bytes, int]] = {}
        self.owner_inodes: dict[tuple[int, bytes, bytes, int], list[int]] = {}
        # per listening port (raw network-order key): [waiting, accepted, max inode, complete,
        # inodes, waiting peers]; server-side TIME_WAIT by age in s; see model.PortAccepts
        self.accepts: dict[int, list[Any]] = {}
        self.closed: dict[int, list[int]] = {}
        # Runs of TIME_WAIT replies of one length, counted (total, by_state) but not yet keyed, and how many
        # replies they hold: keyed together (parsers/sock_diag_run.py) before a reply adds a key (_loop) and
        # before summary()
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.full_declines = 0  # runs of full-socket replies the columns could not count (sock_diag_full.py)
        self.held: list[bytes] = []  # chunks that are one run each, counted (total) but not yet keyed (hold)

    def __call__(self, chunk: bytes) -> bool:
        """Aggregate one reply chunk; True once it met NLMSG_DONE. Runs of TIME_WAIT replies are decoded
        column-wise (_time_wait_run): a chunk of a TIME_WAIT-only dump, and in a dump of every state the runs
        between the other replies, which the slim loop (_loop) decodes and hands back after; a chunk that
        opens with a run of full-socket replies of one length column-wise too (_full_run)."""
        if self.held and self._hold(chunk):  # (one more chunk of the held run: sock_diag_full.hold)
            return False
        offset = self._time_wait_run(chunk) or self._full_run(chunk)
        while True:
            offset = self._loop(chunk, offset, True)
            if offset < 0:
                return offset == _DONE
            offset = self._time_wait_run(chunk, offset)

    def _full_run(self, chunk: bytes) -> int:
        """Aggregate the chunk column-wise when it opens with a run of full-socket replies of one length
        (parsers/sock_diag_full.py); returns the offset where the slim loop goes on (0: not such a run). The
        TIME_WAIT runs still waiting to be keyed came before this chunk: keyed first (keys in reply order)."""
        from connwatch.parsers.sock_diag_full import full_run  # (imported once sock_diag is complete)

        if self.pending:
            self._flush()
        return full_run(self, chunk, may_hold=True)

    def _hold(self, chunk: bytes) -> bool:
        from connwatch.parsers.sock_diag_full import hold  # (imported once sock_diag is complete)
        return hold(self, chunk)

    def _time_wait_run(self, chunk: bytes, offset: int = 0) -> int:
        """Aggregate the run of TIME_WAIT replies at `offset` column-wise (parsers/sock_diag_run.py); returns
        the offset where the slim loop goes on (`offset`: not such a run)."""
        from connwatch.parsers.sock_diag_run import time_wait_run  # (imported once sock_diag is complete)

        return time_wait_run(self, chunk, offset)

    def _flush(self) -> None:
        """Key the TIME_WAIT runs waiting in self.pending (parsers/sock_diag_run.py)."""
        from connwatch.parsers.sock_diag_run import flush

        flush(self)

    def _slim(self, chunk: bytes, offset: int) -> bool:
        """Every message from offset on by the slim loop (what the column path is tested against)."""
        return self._loop(chunk, offset, False) == _DONE

    def _loop(self, chunk: bytes, offset: int, hand_back: bool) -> int:
        """The messages from offset on: one slim unpack per socket and what add() does, inlined (no call
        per socket; 0.7x the time of unpack + add()). `hand_back`: stops at a TIME_WAIT reply that follows
        another reply and may start a run (RUN_MIN replies on, a reply like it) and returns its offset, for
        _time_wait_run; else _DONE once it met NLMSG_DONE, _MORE at the chunk's end. A key not yet in the
        tables is added after the runs waiting to be keyed (self.pending) are: keys go in in reply order."""
        size, count, broke, pending = len(chunk), 0, False, self.pending
        unpack, listen_raw, young = _SLIM.unpack_from, self.listen_raw, self.young_expires
        by_state, sources, dests = self.by_state, self.sources, self.destinations
        while offset + _SLIM.size <= size:
            length, kind, family, state, sport, dport, dst, ck0, ck1, expires, inode = unpack(chunk, offset)
            if kind not in _DIAG_REPLIES:
                break
            if length < _SLIM.size or offset + length > size:
                self.total += count  # (what was counted stays consistent with by_state)
                raise ParseError(SOURCE, f"truncated inet_diag_msg at offset {offset}")
            if state != _ST_TIME_WAIT:
                broke = hand_back
            elif broke:  # a run's first reply? Its RUN_MIN-th slot alike (else the run is shorter: no run here)
                broke, last = False, offset + (RUN_MIN - 1) * length
                if last + 18 <= size and chunk[last + 17] == _ST_TIME_WAIT and \
                        chunk[last:last + 6] == chunk[offset:offset + 6]:
                    self.total += count
                    return offset
            count += 1
            by_state[state & 15] += 1
            if sport in listen_raw and state != _ST_SYN_SENT:  # inbound: per (source, port), packed counts
                # model.address_key inlined: 4 bytes for IPv4 and IPv4-mapped IPv6
                akey = dst[:4] if family == _AF_INET else dst[12:] if dst[:12] == _V4MAPPED else dst
                addrs = sources.get(sport)
                if pending and (addrs is None or akey not in addrs or (
                        state == _ST_TIME_WAIT and sport not in self.closed)):
                    self._flush()
                    addrs = sources.get(sport)
                if addrs is None:
                    addrs = sources[sport] = defaultdict(int)
                addrs[akey] += STATE_UNIT[state & 255]
                if state == _ST_TIME_WAIT:  # accepted and closed by the server: by age in s (0..60)
                    ages = self.closed.get(sport)
                    if ages is None:
                        ages = self.closed[sport] = [0] * _TW_SLOTS
                    ages[((TIME_WAIT_LEN_MS - expires) // 1000) & _TW_MASK] += 1  # the mask only bounds
                elif state in _QUEUE_STATES:
                    self._accept(sport, (ck1 << 32) | ck0 or int.from_bytes(dst) << 16 | dport, inode)
            elif state != _ST_CLOSE or dport:  # outbound: per (local address, destination)
                dkey = (family, chunk[offset + 24:offset + 40], dst, dport)
                counts = dests.get(dkey)
                if counts is None:
                    if pending:
                        self._flush()
                        counts = dests.get(dkey)
                    if counts is None:
                        counts = dests[dkey] = [0] * (_NSTATES + 1)
                counts[state if state < _NSTATES else 0] += 1
                if state == _ST_TIME_WAIT:
                    if expires > young:
                        counts[_NSTATES] += 1
                elif state == _ST_ESTABLISHED:
                    self._owner_inode(dkey, inode)
            offset += (length + 3) & ~3
        self.total += count
        return _DONE if self._tail(chunk, offset, size) else _MORE

    def _tail(self, chunk: bytes, offset: int, size: int) -> bool:
        """The messages the slim loop stopped at: NLMSG_DONE (True), an error reply or a truncated message
        (raises), another message type (skipped; the diag replies after it are decoded by add())."""
        while offset + _HDR.size <= size:
            length, kind, _flags, _seq, _pid = _HDR.unpack_from(chunk, offset)
            if kind not in _DIAG_REPLIES and _check_header(chunk, offset, length, kind):
                return True
            if kind in _DIAG_REPLIES:
                if length < _HDR.size + _MSG.size or offset + length > size:
                    raise ParseError(SOURCE, f"truncated inet_diag_msg at offset {offset}")
                if self.pending:  # (keys in the order of the replies: see _loop)
                    self._flush()
                self.add(*_MSG.unpack_from(chunk, offset + _HDR.size))
            offset += (length + 3) & ~3
        return False

    def _owner_inode(self, dkey: tuple[int, bytes, bytes, int], inode: int) -> None:
        inodes = self.owner_inodes.setdefault(dkey, [])
        if len(inodes) < _OWNER_SAMPLE:
            inodes.append(inode)

    def add(self, family: int, state: int, _timer: int, _retrans: int, sport: int, dport: int,
            src: bytes, dst: bytes, _if: int, ck0: int, ck1: int, expires: int,
            _rq: int, _wq: int, _uid: int, inode: int) -> None:
        self.total += 1
        self.by_state[state & 15] += 1
        if sport in self.listen_raw and state != _ST_SYN_SENT:
            addrs = self.sources.get(sport)
            if addrs is None:
                addrs = self.sources[sport] = defaultdict(int)
            # model.address_key inlined (hot): 4 bytes for IPv4 and IPv4-mapped IPv6
            akey = dst[:4] if family == _AF_INET else dst[12:] if dst[:12] == _V4MAPPED else dst
            addrs[akey] += STATE_UNIT[state & 255]
            if state == _ST_TIME_WAIT:  # accepted and closed by the server: by age (inlined: the hot case)
                ages = self.closed.get(sport)
                if ages is None:
                    ages = self.closed[sport] = [0] * _TW_SLOTS
                ages[((TIME_WAIT_LEN_MS - expires) // 1000) & _TW_MASK] += 1  # 0..60 s; the mask only bounds
            elif state in _QUEUE_STATES:
                self._accept(sport, (ck1 << 32) | ck0 or int.from_bytes(dst) << 16 | dport, inode)
            return
        if state == _ST_CLOSE and dport == 0:
            return  # bound but unconnected: no destination yet
        dkey = (family, src, dst, dport)
        counts = self.destinations.get(dkey)
        if counts is None:
            counts = self.destinations[dkey] = [0] * (_NSTATES + 1)
        counts[state if state < _NSTATES else 0] += 1
        if state == _ST_TIME_WAIT and expires > self.young_expires:
            counts[_NSTATES] += 1
        elif state == _ST_ESTABLISHED:
            inodes = self.owner_inodes.setdefault(dkey, [])
            if len(inodes) < _OWNER_SAMPLE:
                inodes.append(inode)

    def _accept(self, sport: int, key: int, inode: int) -> None:
        """An inbound connection of a listening port: waiting (inode 0: no file until accept()) or accepted.
        `key` names a waiting connection across samples: its socket cookie (never reused), or without one
        (/proc/net/tcp) its peer address and port."""
        acc = self.accepts.get(sport)
        if acc is None:
            acc = self.accepts[sport] = [0, 0, 0, True, [], []]
        if inode:
            acc[1] += 1
            if inode > acc[2]:
                acc[2] = inode
            if len(acc[4]) < ACCEPT_SAMPLE:
                acc[4].append(inode)
            else:
                acc[3] = False
        else:
            acc[0] += 1
            if len(acc[5]) < ACCEPT_SAMPLE:
                acc[5].append(key)
            else:
                acc[3] = False

    def accepts_summary(self) -> tuple[PortAccepts, ...]:
        out = []
        for sport in sorted(self.accepts.keys() | self.closed.keys(), key=_socket.ntohs):
            a = self.accepts.get(sport, [0, 0, 0, True, [], []])
            ages = self.closed.get(sport)
            out.append(PortAccepts(_socket.ntohs(sport), a[0], a[1], a[2], frozenset(a[4]), frozenset(a[5]), a[3],
                                   tuple(ages[:61]) if ages is not None else ()))
        return tuple(out)

    @gc_paused  # one object per distinct key, no cycles
    def summary(self) -> SocketSummary:
        """Format each distinct key once and freeze the aggregates.

        Keys that differ only by an IPv4-mapped IPv6 form merge into one plain-IPv4 entry.
        """
        if self.pending or self.held:
            self._flush()
        dests, inodes = _by_text(self.destinations, self.owner_inodes)
        for addrs in self.sources.values():
            addrs.default_factory = None  # read-only from here: a missing key raises, as in a plain dict
        sources = SourceTable({_socket.ntohs(sport): addrs for sport, addrs in self.sources.items()})
        return SocketSummary(total=self.total, by_state=_named(self.by_state),
                             destinations=_destinations(dests, inodes), sources=sources,
                             accepts=self.accepts_summary())


def freeze(total: int, by_state: list[int], dests: dict[tuple[str, str, int], list[int]],
           inodes: dict[tuple[str, str, int], list[int]], srcs: dict[tuple[str, int], list[int]],
           accepts: tuple[PortAccepts, ...] | None) -> SocketSummary:
    """The SocketSummary of aggregates keyed by address text (dests' counts: the states, then young
    TIME_WAIT; srcs' counts: the states), as analyze's one-pass row reader builds them."""
    sources = SourceTable.of(SourceUsage(source=source, port=port, states=_named(counts))
                             for (source, port), counts in srcs.items())
    return SocketSummary(total=total, by_state=_named(by_state), destinations=_destinations(dests, inodes),
                         sources=sources, accepts=accepts)


RawKey = tuple[int, bytes, bytes, int]  # (family, local address, remote address, remote port in network order)
TextKey = tuple[str, str, int]


def _by_text(raw: dict[RawKey, list[int]], owners: dict[RawKey, list[int]]
             ) -> tuple[dict[TextKey, list[int]], dict[TextKey, list[int]]]:
    """The destinations' counts and owner inodes keyed by address text, keys that differ only by an IPv4-mapped
    form merged. Each local address (a host has few) is formatted once, a destination's counts are taken as they
    are (a merge makes a new list: the aggregator's stay as counted), and only destinations with owner inodes
    get an inode list: with one destination per socket (thousands of targets, or connections that outlived their
    listener) the summary was ~10 us per destination (tests/unit/test_sock_diag_summary.py checks it against the
    straightforward keying)."""
    local_text: dict[tuple[int, bytes], str] = {}
    dests: dict[TextKey, list[int]] = {}
    inodes: dict[TextKey, list[int]] = {}
    ntohs = _socket.ntohs
    for key, counts in raw.items():
        fam, src, dst, dport = key
        local = local_text.get((fam, src))
        if local is None:
            local = local_text[(fam, src)] = format_address(fam, src)
        name = (local, format_address(fam, dst), ntohs(dport))
        have = dests.get(name)
        dests[name] = counts if have is None else [a + b for a, b in zip(have, counts, strict=True)]
        found = owners.get(key)
        if found:
            inodes.setdefault(name, []).extend(found)
    return dests, inodes


def _destinations(dests: dict[TextKey, list[int]], inodes: dict[TextKey, list[int]]) -> tuple[DestinationUsage, ...]:
    """One DestinationUsage per key. Destinations with the same counts share one `states` mapping (read-only,
    as every Mapping of the model): most hold one socket in one state."""
    named: dict[tuple[int, ...], dict[str, int]] = {}
    out = []
    for key, counts in dests.items():
        shape = tuple(counts[:_NSTATES])
        states = named.get(shape)
        if states is None:
            states = named[shape] = _named(counts[:_NSTATES])
        owned = inodes.get(key)
        out.append(DestinationUsage(key[0], key[1], key[2], states, counts[_NSTATES],
                                    tuple(owned[:_OWNER_SAMPLE]) if owned else ()))
    return tuple(out)


def merge_counts(into: dict[K, list[int]], key: K, counts: list[int]) -> None:
    """Add a count vector into the one kept under key (a copy when it is the first)."""
    have = into.get(key)
    if have is None:
        into[key] = list(counts)
    else:
        for i, n in enumerate(counts):
            have[i] += n


def _named(counts: list[int]) -> dict[str, int]:
    return {STATE_NAMES[i]: n for i, n in enumerate(counts) if n}
