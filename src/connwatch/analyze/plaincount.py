"""Counting a PlainBlock (parsers/conn_rows.PlainBlock: a block of plain rows as columns) at C speed.

analyze/rowpass._RowCounter.add_plain counts plain rows one by one; this counts a whole block of them with
the same result: the same keys (host text, host text, port, family hint) in the same first-seen order, the
same counts, the same ports marked as used by outbound sockets and counted for inferring listeners. Per row
only C loops run (str.rpartition through map, compress, zip, Counter); Python code runs once per distinct
local port, port text, host text or aggregate key, and caches what it learnt across blocks.

An endpoint is split as rowpass._split (conn_rows.split_colon) splits it: at the last ':' — `[h]:p` as `h`
and `p` — and a port text a port number is not read from, or no ':' at all, is _NotPlain (the file is then
read through the parser's ConnRows, whose error it gets).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from itertools import compress, repeat
from operator import and_, is_, itemgetter, not_
from typing import TYPE_CHECKING, Any

from connwatch.model import TcpState
from connwatch.parsers.conn_rows import NETSTAT_STATES, SS_STATES, PlainBlock, parse_port

if TYPE_CHECKING:
    from connwatch.analyze.rowpass import _RowCounter

_NSTATES = 13
_SYN_SENT = int(TcpState.SYN_SENT)
_CLOSE = int(TcpState.CLOSE)
_MAX_CACHE = 1 << 17  # distinct texts remembered (more are worked out again in each block)
_MAX_RUNS = 32  # Runs kept before they are flushed (memory stays flat when blocks alternate)
STATE_NUMBERS = {**{k: int(v) for k, v in NETSTAT_STATES.items()}, **{k: int(v) for k, v in SS_STATES.items()}}
_SYN_NAMES = frozenset(k for k, v in STATE_NUMBERS.items() if v == _SYN_SENT)
_HOST, _PORT = itemgetter(0), itemgetter(2)
INBOUND = "".join(("(in", "bound)"))  # the tag of an endpoint whose port is listening (told by identity: `is`)


class NotPlain(Exception):
    """A plain row the fast path cannot read exactly as the parser would: use the parser's ConnRows."""


def split_endpoint(endpoint: str, ports: dict[str, int]) -> tuple[str, int]:
    """conn_rows.split_colon's host text and port, for a row the fast path can take."""
    if endpoint[:1] == "[" and "]:" in endpoint:
        host, _sep, port = endpoint[1:].partition("]:")
    else:
        host, sep, port = endpoint.rpartition(":")
        if not sep:
            raise NotPlain(endpoint)
    return host, port_number(port, ports)


def port_number(text: str, ports: dict[str, int]) -> int:
    number = ports.get(text)
    if number is None:
        try:
            number = parse_port(text)
        except ValueError:
            raise NotPlain(text) from None
        if len(ports) < _MAX_CACHE:
            ports[text] = number
    return number


def host_text(host: str) -> str:
    """The host split_endpoint gives for an endpoint that rpartition(':') cut into `host` and a port."""
    if host[:1] == "[" and (host[-1:] == "]" or "]:" in host):
        if "]:" in host:
            raise NotPlain(host)  # split at the first `]:`: the port would hold a ':'
        return host[1:-1]
    return host


class Runs:
    """Counts of (a, b, c) keys, iterated in the order of each key's first row (as one Counter of them would be):
    runs of rows in order, each a Counter of whole keys or, for rows that all share a and b (a block's inbound
    rows: one state, one listening endpoint; its outbound ones: one state, one local host), a Counter of c
    alone — a string key per row, no tuple made, hashed and compared."""

    def __init__(self) -> None:
        self.runs: list[tuple[tuple[str, str] | None, Counter[Any]]] = []

    def __bool__(self) -> bool:
        return bool(self.runs)

    def whole(self, keys: Iterable[tuple[str, str, str]]) -> None:
        if not self.runs or self.runs[-1][0] is not None:
            self.runs.append((None, Counter()))
        self.runs[-1][1].update(keys)

    def add(self, first: list[str], second: list[str], third: Iterable[str]) -> None:
        """Rows (first[i], second[i], third[i]); the lists are not empty."""
        if first.count(first[0]) != len(first) or second.count(second[0]) != len(second):
            self.whole(zip(first, second, third, strict=False))
            return
        prefix = (first[0], second[0])
        if not self.runs or self.runs[-1][0] != prefix:
            self.runs.append((prefix, Counter()))
        self.runs[-1][1].update(third)

    def items(self) -> Iterator[tuple[tuple[str, str, str], int]]:
        for prefix, counts in self.runs:
            if prefix is None:
                yield from counts.items()
            else:
                first, second = prefix
                for third, n in counts.items():
                    yield (first, second, third), n


class BlockCounter:
    """The counting of PlainBlocks into a _RowCounter: per row, C loops fill Counters keyed by texts; flush()
    turns them into the counter's raw keys (once per distinct key, in first-seen order) before any other row
    is counted, and at the end. What it learnt about texts is kept across blocks (at most _MAX_CACHE each)."""

    def __init__(self) -> None:
        self.listening_seen = -1  # len(counter.listening) the classification was made for
        self.locals: dict[str, tuple[str, int]] = {}  # local endpoint text -> (host text, port)
        self.inbound: dict[str, bool] = {}  # local endpoint text -> its port is listening
        self.hosts_of: dict[str, str] = {}  # local endpoint text -> its host (as split_endpoint gives it)
        self.used: set[str] = set()  # local endpoint texts marked in scan.outbound_ports
        self.hosts: dict[str, str] = {}  # host text from rpartition -> host text split_endpoint gives
        self.in_keys = Runs()  # (state, local endpoint, peer host text)
        self.out_keys = Runs()  # (state, local host, peer endpoint)
        self.peer_ports: set[str] = set()  # port texts of inbound peers (not in in_keys), read at flush
        self.infer: Counter[str] = Counter()  # local endpoints of non-SYN-SENT rows (while ports are inferred)
        self.tags: dict[str, str] = {}  # local endpoint text -> INBOUND, or (outbound, port marked used) its host
        self.tag_ports: dict[str, int] = {}  # local endpoint text (in tags) -> its port
        self.tags_seen = -1  # len(counter.listening) the tags were made for

    def count(self, counter: _RowCounter, block: PlainBlock, rows: int) -> None:
        """Count the first `rows` rows of `block` as counter.add_plain would."""
        if ":" not in block.locals[-1] or ":" not in block.peers[-1]:  # (the other rows: see _classify, flush)
            raise NotPlain("no ':' in an address")  # every address has one: plain_*_block relies on it
        states, locs, peers = block.states, block.locals, block.peers
        if rows < len(states):
            states, locs, peers = states[:rows], locs[:rows], peers[:rows]
        counter.scan.rows += rows
        if _SYN_NAMES.isdisjoint(states):
            self._count_tagged(counter, states, locs, peers)
            return
        inbound, lhost = self._classify(counter, locs)
        nonsyn: list[bool] | None = None  # None: no SYN-SENT row
        if not _SYN_NAMES.isdisjoint(states):
            nonsyn = list(map(not_, map(_SYN_NAMES.__contains__, states)))
            inbound = list(map(and_, inbound, nonsyn))  # SYN-SENT from a listening port is outbound
        if counter.scan.local_ports is not None:
            self.infer.update(locs if nonsyn is None else compress(locs, nonsyn))
        if any(inbound):
            rparts = _parts(compress(peers, inbound))
            self.peer_ports.update(map(_PORT, rparts))
            self.in_keys.whole(zip(compress(states, inbound), compress(locs, inbound), map(_HOST, rparts),
                                    strict=False))  # (compress: the lengths differ only if the block is bad)
        if not all(inbound):
            outbound = list(map(not_, inbound))
            marks = outbound if nonsyn is None else list(map(and_, outbound, nonsyn))
            if not self.used.issuperset(compress(locs, marks)):
                self._mark_used(counter, set(compress(locs, marks)))
            self.out_keys.whole(zip(compress(states, outbound), map(lhost, compress(locs, outbound)),
                                     compress(peers, outbound), strict=False))

    def _count_tagged(self, counter: _RowCounter, states: list[str], locs: list[str], peers: list[str]) -> None:
        """count() for a block without SYN-SENT rows: one lookup per row (the endpoint's tag) classifies it and
        gives an outbound row's host; tables keyed by the many distinct endpoints are not touched again."""
        known = list(map(self.tags.get, locs))
        tags: list[str] = (self._tag(counter, locs, known) if len(counter.listening) != self.tags_seen
                           or None in known else known)  # type: ignore[assignment]  # (no None in it)
        if counter.scan.local_ports is not None:
            self.infer.update(locs)
        inbound = list(map(is_, tags, repeat(INBOUND)))
        if any(inbound):
            rparts = _parts(compress(peers, inbound))
            ports = list(map(_PORT, rparts))
            if not _decimal_ports(ports):
                self.peer_ports.update(ports)  # (read at flush: a port text parse_port refuses is NotPlain)
            self.in_keys.add(list(compress(states, inbound)), list(compress(locs, inbound)), map(_HOST, rparts))
        if not all(inbound):
            outbound = list(map(not_, inbound))
            self.out_keys.add(list(compress(states, outbound)), list(compress(tags, outbound)),
                              compress(peers, outbound))
        if len(self.in_keys.runs) + len(self.out_keys.runs) > _MAX_RUNS:
            self.flush(counter)  # (runs alternating: their counts into the counter's, in order, now)

    def _tag(self, counter: _RowCounter, locs: list[str], known: list[str | None]) -> list[str]:
        """Each row's tag: INBOUND when its local port is listening, else its local host (as split_endpoint gives
        it), the port marked as used by an outbound socket (every row here is non-SYN-SENT: add_plain marks it).
        `known`: each row's tag from the table (None: not in it)."""
        listening, tags = counter.listening, self.tags
        if len(listening) != self.tags_seen:  # a listener came: endpoints of its port are inbound from now on
            self.tags_seen = len(listening)
            for text, tag in tags.items():
                if tag is not INBOUND and self.tag_ports[text] in listening:
                    tags[text] = INBOUND
            known = list(map(tags.get, locs))
        texts = list(set(compress(locs, map(is_, known, repeat(None)))))
        if not texts:
            return known  # type: ignore[return-value]  # (no None in it)
        parts = _parts(texts)
        if not all(map(itemgetter(1), parts)):
            raise NotPlain("no ':' in a local address")
        names = list(map(_HOST, parts))
        hosts = {name: self._host(name) for name in set(names)}
        port_texts = list(map(_PORT, parts))
        ports = list(map(int, port_texts)) if _decimal_ports(port_texts) else [
            port_number(text, counter.ports) for text in port_texts]
        listens = list(map(listening.__contains__, ports))
        new = dict(zip(texts, map(hosts.__getitem__, names), strict=True))
        new.update(zip(compress(texts, listens), repeat(INBOUND)))
        used = counter.scan.outbound_ports
        assert used is not None
        for port in set(compress(ports, map(not_, listens))):
            used[port] = 1
        if len(tags) + len(new) <= _MAX_CACHE:  # (past the bound, new endpoints are split again in each block)
            tags.update(new)
            self.tag_ports.update(zip(texts, ports, strict=True))
        return list(map(new.get, locs, known))  # type: ignore[arg-type]

    def _classify(self, counter: _RowCounter, locs: list[str]) -> tuple[list[bool], Callable[[str], str]]:
        """Every local endpoint split (NotPlain when it cannot be): per row, True when its port is listening,
        and the host (as split_endpoint gives it) of a local endpoint."""
        listening = counter.listening
        if len(listening) != self.listening_seen:  # a listener came: sort the known endpoints again
            self.listening_seen = len(listening)
            self.inbound = {text: port in listening for text, (_h, port) in self.locals.items()}
        flags = list(map(self.inbound.get, locs))
        if None not in flags:
            return flags, self.hosts_of.__getitem__  # type: ignore[return-value]
        known, inbound, hosts = self.locals, self.inbound, self.hosts_of
        extra: dict[str, tuple[str, int]] = {}
        for text in set(compress(locs, map(is_, flags, repeat(None)))):
            host, sep, port_text = text.rpartition(":")
            if not sep:
                raise NotPlain(text)
            found = (self._host(host), port_number(port_text, counter.ports))
            if len(known) < _MAX_CACHE:
                known[text], inbound[text], hosts[text] = found, found[1] in listening, found[0]
            else:
                extra[text] = found  # (past the bound, an endpoint is split again in each block)
        if not extra:
            return list(map(inbound.__getitem__, locs)), hosts.__getitem__
        more = {t: f[1] in listening for t, f in extra.items()}
        return list(map({**inbound, **more}.__getitem__, locs)), {**hosts, **{t: f[0] for t, f in extra.items()}
                                                                      }.__getitem__

    def _host(self, text: str) -> str:
        found = self.hosts.get(text)
        if found is None:
            found = host_text(text)
            if len(self.hosts) < _MAX_CACHE:
                self.hosts[text] = found
        return found

    def _local(self, counter: _RowCounter, text: str) -> tuple[str, int]:
        found = self.locals.get(text)
        if found is None:
            host, sep, port_text = text.rpartition(":")
            if not sep:
                raise NotPlain(text)
            found = (self._host(host), port_number(port_text, counter.ports))
        return found

    def _mark_used(self, counter: _RowCounter, locs: set[str]) -> None:
        used = counter.scan.outbound_ports
        assert used is not None
        for text in locs.difference(self.used):
            used[self._local(counter, text)[1]] = 1
            if len(self.used) < _MAX_CACHE:
                self.used.add(text)

    def flush(self, counter: _RowCounter) -> None:
        """The counted rows into the counter's raw keys, as add_plain keys them."""
        ports, host = counter.ports, self._host
        for text in self.peer_ports.difference(ports):
            port_number(text, ports)
        self.peer_ports = set()
        sources = counter.raw_sources
        for (name, local, rhost), n in self.in_keys.items():
            if not rhost:  # no ':' in the peer (or nothing before it): the parser's ConnRows decide
                raise NotPlain(local)
            lhost, lport = self._local(counter, local)
            skey = (lhost, host(rhost), lport, 4)
            counts = sources.get(skey)
            if counts is None:
                counts = sources[skey] = [0] * _NSTATES
            counts[STATE_NUMBERS[name]] += n
        self.in_keys = Runs()
        self._flush_out(counter)

    def _flush_out(self, counter: _RowCounter) -> None:
        dests, closed, ports, host = counter.raw_dests, counter.raw_closed, counter.ports, self._host
        for (name, lhost, peer), n in self.out_keys.items():  # (lhost: already as split_endpoint gives it)
            state = STATE_NUMBERS[name]
            rhost, sep, rport_text = peer.rpartition(":")
            if not sep:
                raise NotPlain(peer)
            rport = port_number(rport_text, ports)
            key = (lhost, host(rhost), rport, 4)
            if not rport and state == _CLOSE:  # bound but unconnected: no destination yet
                closed[key] = closed.get(key, 0) + n
                continue
            counts = dests.get(key)
            if counts is None:
                counts = dests[key] = [0] * _NSTATES
            counts[state] += n
        self.out_keys = Runs()

    def finish(self, counter: _RowCounter) -> None:
        """Flush, and fold the inferring counts into the scan (per port, as add_plain counts them)."""
        self.flush(counter)
        infer = counter.scan.local_ports
        if infer is not None:
            for text, n in self.infer.items():
                port = self._local(counter, text)[1]
                infer[port] = infer.get(port, 0) + n
        self.infer = Counter()


def _decimal_ports(ports: list[str]) -> bool:
    """True when every text is a port number parse_port reads (1-5 ASCII digits, at most 65535): a C loop per
    row instead of a set of the many distinct client ports."""
    if not ports:
        return True
    joined = "".join(ports)
    if not (joined.isdecimal() and joined.isascii()) or not 1 <= min(map(len, ports)) <= max(map(len, ports)) <= 5:
        return False
    return max(map(len, ports)) < 5 or max(map(int, ports)) <= 65535


def _parts(column: Iterable[str]) -> list[tuple[str, str, str]]:
    return list(map(str.rpartition, column, repeat(":")))
