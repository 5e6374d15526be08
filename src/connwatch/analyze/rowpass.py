"""Connection listings (ss, netstat, PowerShell, lsof...) -> listeners and socket aggregates, in ONE pass.

Which sockets are inbound depends on the listening ports of the whole capture, which are only known
at its end. The pass classifies with the listening ports known so far (those of the capture's earlier
files, and LISTEN rows as they come: ss and Linux netstat print listeners first) and records what
that choice depended on: the ports it took as listening, the local ports of the sockets it took as
outbound, and whether a TIME_WAIT age was compared with tcp_tw_reuse_delay. analyze/build.finish
checks that against the capture's final listeners and sysctls and reads a file again only when the
guess was wrong (a listener printed after its connections, or a listing without LISTEN rows whose
listening ports are inferred).

Hot path (500,000 rows): the parsers hand over plain rows as (state, local, peer, hint) without
making a ConnRow (parsers/ss_text.scan_ss, parsers/netstat_text.scan_netstat); addresses are turned
into canonical text once per distinct address, ports through a table, and counts are kept per
(local, destination, port) and (source, port), formatted as the live path formats them
(parsers/sock_diag.SocketAggregator.named). A row the fast path cannot take exactly as the parser
would (an odd address, a service name it does not know) makes the whole file go through the
parser's ConnRow path instead, so errors and results are those of the parser, line for line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from connwatch.analyze import detect as fmt
from connwatch.analyze.plaincount import BlockCounter, NotPlain, split_endpoint
from connwatch.errors import ParseError
from connwatch.model import Listener, Process, SocketSummary, TcpState
from connwatch.parsers.conn_rows import BLOCK_LINES, SERVICES, ConnRow, PlainBlock, normalize_host
from connwatch.parsers.lsof import iter_lsof_tcp
from connwatch.parsers.netstat_text import (
    BSD,
    BSD_LISTEN,
    LINUX,
    WINDOWS,
    iter_netstat,
    plain_linux_block,
    plain_windows_block,
    scan_netstat,
)
from connwatch.parsers.snmp_tcp import iter_snmp_tcp
from connwatch.parsers.sock_diag import TIME_WAIT_LEN_MS, freeze, merge_counts
from connwatch.parsers.ss_text import iter_ss, plain_ss_block, scan_ss
from connwatch.parsers.windows_text import iter_powershell_list, iter_powershell_tcp
from connwatch.parsers.zos_netstat import iter_zos_conn
from connwatch.perf import gc_paused

DIALECT = {fmt.NETSTAT_LINUX: LINUX, fmt.NETSTAT_WINDOWS: WINDOWS, fmt.NETSTAT_BSD: BSD,
           fmt.NETSTAT_BSD_LISTEN: BSD_LISTEN}
FAST_KINDS = frozenset({fmt.SS, fmt.NETSTAT_LINUX, fmt.NETSTAT_WINDOWS})
_LISTEN = int(TcpState.LISTEN)
_SYN_SENT = int(TcpState.SYN_SENT)
_TIME_WAIT = int(TcpState.TIME_WAIT)
_CLOSE = int(TcpState.CLOSE)
_ESTABLISHED = int(TcpState.ESTABLISHED)
_OWNER_SAMPLE = 8  # sock_diag keeps this many ESTABLISHED inodes per destination (0 for text: no inodes)
_NSTATES = 13
_MAX_CACHE = 1 << 17  # distinct address texts remembered (more are canonicalised each time)


def young_limit(tw_reuse_delay_ms: int | None) -> int:
    """TIME_WAIT sockets with more than this many ms left are younger than the reuse delay (as
    sock_diag.SocketAggregator counts them)."""
    return TIME_WAIT_LEN_MS - (tw_reuse_delay_ms if tw_reuse_delay_ms is not None else 1000)


@dataclass
class RowScan:
    """What one connection listing gave."""

    rows: int = 0  # TCP rows, listeners included
    listeners: list[Listener] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sources: dict[tuple[str, int], list[int]] = field(default_factory=dict)  # (source, port) -> states
    dests: dict[tuple[str, str, int], list[int]] = field(default_factory=dict)  # states + young TIME_WAIT
    other: list[int] = field(default_factory=lambda: [0] * 16)  # counted by state only
    unresolved: int = 0  # rows with host names (no -n)
    ports: frozenset[int] = frozenset()  # taken as listening
    outbound_ports: bytearray | None = None  # local ports of sockets taken as outbound (1 = seen)
    young: int = 0  # young_limit used
    timed_tw: bool = False  # an outbound TIME_WAIT row had a timer (young TIME_WAIT depends on `young`)
    local_ports: dict[int, int] | None = None  # per local port, while no listener was known (None: not kept)

    def valid_for(self, ports: frozenset[int], young: int) -> bool:
        """True when the capture's final listening ports and reuse delay give the same counts."""
        used = self.outbound_ports
        return self.ports <= ports and (used is None or not any(used[p] for p in ports)) and (
            young == self.young or not self.timed_tw)

    def totals(self) -> tuple[int, list[int]]:
        """(sockets, count per state) of the connections (listeners not included)."""
        by_state = list(self.other)
        for table in (self.sources, self.dests):
            for state, column in enumerate(zip(*table.values(), strict=True)):
                if state < _NSTATES:
                    by_state[state] += sum(column)
        return sum(by_state), by_state


def combine(scans: list[RowScan]) -> tuple[SocketSummary, int]:
    """The SocketSummary of the listings of one capture, in order (as one SocketAggregator would count
    them: keys merged in first-seen order), and how many sockets were shown with host names."""
    if len(scans) == 1:
        dests, sources = scans[0].dests, scans[0].sources
    else:
        dests, sources = {}, {}
        for scan in scans:
            for key, counts in scan.dests.items():
                merge_counts(dests, key, counts)
            for skey, counts in scan.sources.items():
                merge_counts(sources, skey, counts)
    by_state = [0] * 16
    for scan in scans:
        by_state = [a + b for a, b in zip(by_state, scan.totals()[1], strict=True)]
    inodes = {key: [0] * min(_OWNER_SAMPLE, c[_ESTABLISHED]) for key, c in dests.items() if c[_ESTABLISHED]}
    summary = freeze(sum(by_state), by_state, dests, inodes, sources, None)  # text: no inodes, no accepts
    return summary, sum(scan.unresolved for scan in scans)


def conn_rows(lines: Iterable[str], name: str, kind: str, notes: list[str]) -> Iterator[ConnRow]:
    """The ConnRows of a connection listing of `kind` (the parsers' own path)."""
    if kind == fmt.SS:
        return iter_ss(lines, name, notes)
    if kind == fmt.POWERSHELL_TCP:
        return iter_powershell_tcp(lines, name)
    if kind == fmt.POWERSHELL_LIST:
        return iter_powershell_list(lines, name)
    if kind == fmt.ZOS_CONN:
        return iter_zos_conn(lines, name)
    if kind == fmt.LSOF:
        return iter_lsof_tcp(lines, name)
    if kind == fmt.SNMP_TCP:
        return iter_snmp_tcp(lines, name)
    return iter_netstat(lines, name, DIALECT[kind])


Block = list[str] | PlainBlock
_PLAIN_BLOCK = {fmt.SS: plain_ss_block, fmt.NETSTAT_WINDOWS: plain_windows_block, fmt.NETSTAT_LINUX: plain_linux_block}


class Recognised:
    """The lines of `blocks` in blocks of at most `size` lines, each a PlainBlock when all its lines are plain
    rows of `kind` (`size` 0: never, the row-by-row path alone). Each block is looked at once the line after
    it is known (a blank-led line after an ss row may continue it); `pending` holds the blocks read but not
    yet given out (the reader's lines after them are still in `blocks`)."""

    def __init__(self, blocks: Iterable[list[str]], kind: str, size: int | None = None) -> None:
        size = BLOCK_LINES if size is None else size
        self.blocks, self.size = iter(blocks), size or BLOCK_LINES
        self.plain = _PLAIN_BLOCK.get(kind) if size else None
        self.pending: list[list[str]] = []
        self.looked = 0  # parts looked at
        self.last_plain = False  # the last part looked at was a PlainBlock

    def __iter__(self) -> Iterator[Block]:
        size, pending = self.size, self.pending
        for block in self.blocks:
            if len(block) > size:
                pending.extend(block[at:at + size] for at in range(0, len(block), size))
            elif block:
                pending.append(block)
            while len(pending) > 1:
                yield self._look(pending.pop(0), True)
        while pending:
            yield self._look(pending.pop(0), False)

    def _look(self, part: list[str], more: bool) -> Block:
        """`part` as a PlainBlock, or its lines. A part that is not one block of plain rows (a header, a prompt,
        an odd line in it) is halved while its halves have at least MIN_PIECE lines, the first looked at now and
        the second put back first in `pending` — at the start of a listing and after a PlainBlock only, so that
        a listing of no plain rows is not split again and again. `more`: lines follow in `pending` (the next
        one may continue this part's last row: open_end)."""
        if self.plain is None:
            return part
        self.looked += 1
        block = self.plain(part, more and self.pending[0][0][:1] in (" ", "\t"))
        if block is None and len(part) >= 2 * MIN_PIECE and (self.looked <= 4 or self.last_plain):
            half = len(part) // 2
            self.pending.insert(0, part[half:])
            return self._look(part[:half], True)
        self.last_plain = block is not None
        return block or part


MIN_PIECE = 64  # lines of the smallest half a part that is not plain is cut into


def scan_rows(open_blocks: Callable[[], Iterable[list[str]]], name: str, kind: str, ports: Iterable[int],
              young: int, size: int | None = None) -> RowScan:
    """One pass over a listing given as blocks of lines (the fast path, or when a row is not plain, the
    parser's ConnRows). `size`: lines per PlainBlock (BLOCK_LINES; 0: plain rows are counted one by one)."""
    if kind in FAST_KINDS:
        try:
            return scan_fast(Recognised(open_blocks(), kind, size), name, kind, ports, young)
        except (NotPlain, ParseError):
            pass  # read again as ConnRows: the parser's result or its error, for the same line
    scan = _new_scan(ports, young)
    counter = _RowCounter(scan)
    for row in conn_rows(chain.from_iterable(open_blocks()), name, kind, scan.notes):
        counter.add(row)
    return _done(scan, counter)


def try_fast(blocks: Iterable[Block], name: str, kind: str, ports: Iterable[int], young: int,
             split: list[list[str]] | None = None) -> RowScan | None:
    """scan_fast, or None when the listing is not read exactly by it (use scan_rows). `split` receives each
    line's split() (of the lines not in a PlainBlock, and of each PlainBlock's last line)."""
    try:
        return scan_fast(blocks, name, kind, ports, young, split)
    except (NotPlain, ParseError):
        return None


@gc_paused  # a few small objects per row, none kept but the counts (acyclic)
def scan_fast(blocks: Iterable[Block], name: str, kind: str, ports: Iterable[int], young: int,
              split: list[list[str]] | None = None) -> RowScan:
    """The fast path alone (blocks as Recognised gives them): NotPlain or ParseError when the listing is not
    read exactly by it."""
    scan = _new_scan(ports, young)
    counter = _RowCounter(scan)
    plain: list[tuple[int, str, str, int]] = []
    columns: list[tuple[PlainBlock, int]] = []
    if kind == fmt.SS:
        rows = scan_ss(blocks, name, scan.notes, plain, split, columns)
    else:
        rows = scan_netstat(blocks, name, DIALECT[kind], plain, split, columns)
    for row in rows:
        if plain:
            counter.add_plain(plain)
            plain.clear()
        if columns:
            for block, taken in columns:
                counter.blocks.count(counter, block, taken)
            columns.clear()
        if row is not None:
            counter.add(row)
    counter.add_plain(plain)
    return _done(scan, counter)


def _new_scan(ports: Iterable[int], young: int) -> RowScan:
    scan = RowScan(young=young, outbound_ports=bytearray(65536))
    scan.ports = frozenset(ports)
    if not scan.ports:
        scan.local_ports = {}
    return scan


def _done(scan: RowScan, counter: _RowCounter) -> RowScan:
    counter.blocks.finish(counter)
    counter.finish_plain()
    scan.ports = frozenset(counter.listening)
    if scan.outbound_ports is not None and not any(scan.outbound_ports):
        scan.outbound_ports = None  # listeners only: nothing to keep
    return scan


def listener_of(row: ConnRow) -> Listener:
    owner = None
    if row.pid is not None or row.command:
        owner = Process(row.pid if row.pid is not None else -1, row.command or "?")
    return Listener(family=row.family, address=row.local or "?", port=row.local_port, queue=row.recv_q or 0,
                    backlog=row.backlog, drops=row.drops, inode=0, uid=0, owner=owner)


def _port_table() -> dict[str, int]:
    """Port text -> number, filled as port texts are met (plaincount.split_endpoint reads a new one with parse_port)."""
    return {"*": 0, **SERVICES}


class _RowCounter:
    """Counts rows into a RowScan as sock_diag.SocketAggregator.add counts sockets."""

    def __init__(self, scan: RowScan) -> None:
        self.scan = scan
        self.listening = set(scan.ports)
        self.ports = _port_table()
        self.hosts: dict[int, dict[str, tuple[str, int]]] = {4: {}, 6: {}}  # per family hint
        self.raw_sources: dict[tuple[str, str, int, int], list[int]] = {}  # (local, peer host text, port, hint)
        self.raw_dests: dict[tuple[str, str, int, int], list[int]] = {}
        self.raw_closed: dict[tuple[str, str, int, int], int] = {}  # CLOSE rows with no peer port
        self.blocks = BlockCounter()  # PlainBlocks (analyze/plaincount.py)

    def add(self, row: ConnRow) -> None:
        """One row from the parser's ConnRow path."""
        if self.blocks.in_keys or self.blocks.out_keys:
            self.blocks.flush(self)  # the PlainBlock rows before this one are counted first
        scan = self.scan
        scan.rows += 1
        state = row.state
        if state == _LISTEN:
            scan.listeners.append(listener_of(row))
            self.listening.add(row.local_port)
            scan.local_ports = None  # a listener is known: no ports to infer
            return
        self.finish_plain()  # the plain rows before this one are counted first: keys keep the order of rows
        lport = row.local_port
        if scan.local_ports is not None and state != _SYN_SENT and row.remote is not None:
            scan.local_ports[lport] = scan.local_ports.get(lport, 0) + 1
        if not row.resolved or row.remote is None:
            scan.other[state & 15] += 1
            scan.unresolved += 1
            return
        if lport in self.listening and state != _SYN_SENT:
            _count(scan.sources, (row.remote, lport), state, _NSTATES)
            return
        self._outbound(row.local, row.remote, lport, row.remote_port, state, row.expires_ms)

    def _outbound(self, local: str, remote: str, lport: int, rport: int, state: int, expires: int) -> None:
        scan = self.scan
        if state != _SYN_SENT:
            scan.outbound_ports[lport] = 1  # type: ignore[index]
        if state == _CLOSE and rport == 0:
            scan.other[state] += 1  # bound but unconnected: no destination yet
            return
        counts = _count(scan.dests, (local, remote, rport), state, _NSTATES + 1)
        if state == _TIME_WAIT and expires:
            scan.timed_tw = True
            if expires > scan.young:
                counts[_NSTATES] += 1

    def add_plain(self, plain: list[tuple[int, str, str, int]]) -> None:
        """Plain rows (state, local, peer, family hint): never LISTEN, no timer. Counted by host TEXT
        (turned into addresses once per key, in finish_plain)."""
        if self.blocks.in_keys or self.blocks.out_keys:
            self.blocks.flush(self)  # the PlainBlock rows before these are counted first
        scan = self.scan
        scan.rows += len(plain)
        ports, listening = self.ports, self.listening
        sources, dests, closed = self.raw_sources, self.raw_dests, self.raw_closed
        used, infer = scan.outbound_ports, scan.local_ports
        assert used is not None
        for state, local, peer, hint in plain:
            lhost, sep, lp = local.rpartition(":")
            rhost, rsep, rp = peer.rpartition(":")
            lport, rport = ports.get(lp), ports.get(rp)
            if lport is None or rport is None or not sep or not rsep or local[0] == "[" or peer[0] == "[":
                lhost, lport = split_endpoint(local, ports)
                rhost, rport = split_endpoint(peer, ports)
            if state == _SYN_SENT:
                key = (lhost, rhost, rport, hint)
            else:
                if infer is not None:
                    infer[lport] = infer.get(lport, 0) + 1
                if lport in listening:
                    skey = (lhost, rhost, lport, hint)
                    counts = sources.get(skey)
                    if counts is None:
                        counts = sources[skey] = [0] * _NSTATES
                    counts[state] += 1
                    continue
                used[lport] = 1
                key = (lhost, rhost, rport, hint)
                if not rport and state == _CLOSE:  # bound but unconnected: no destination yet
                    closed[key] = closed.get(key, 0) + 1
                    continue
            counts = dests.get(key)
            if counts is None:
                counts = dests[key] = [0] * _NSTATES
            counts[state] += 1

    def finish_plain(self) -> None:
        """The plain rows' counts by address: each host text read once, as the parser reads it."""
        if not (self.raw_sources or self.raw_dests or self.raw_closed):
            return
        scan = self.scan
        for (lhost, rhost, lport, hint), counts in self.raw_sources.items():
            laddr, raddr = self._hosts(lhost, rhost, hint)
            if not laddr or not raddr:
                self._unresolved(counts)
            else:
                merge_counts(scan.sources, (raddr, lport), counts)
        for (lhost, rhost, rport, hint), counts in self.raw_dests.items():
            laddr, raddr = self._hosts(lhost, rhost, hint)
            if not laddr or not raddr:
                self._unresolved(counts)
            else:
                merge_counts(scan.dests, (laddr, raddr, rport), [*counts, 0])
        for (lhost, rhost, _rport, hint), n in self.raw_closed.items():
            laddr, raddr = self._hosts(lhost, rhost, hint)
            scan.other[_CLOSE] += n
            if not laddr or not raddr:
                scan.unresolved += n
        self.raw_sources, self.raw_dests, self.raw_closed = {}, {}, {}

    def _hosts(self, lhost: str, rhost: str, hint: int) -> tuple[str, str]:
        """split_colon's addresses: the local host with the row's family hint, the peer with the local's family."""
        known = self.hosts[6 if hint == 6 else 4]
        laddr, fam = known.get(lhost) or _host(known, lhost, hint)
        known = self.hosts[6 if fam == 6 else 4]
        return laddr, (known.get(rhost) or _host(known, rhost, fam))[0]

    def _unresolved(self, counts: list[int]) -> None:
        for state, n in enumerate(counts):
            self.scan.other[state] += n
        self.scan.unresolved += sum(counts)


def _count(into: dict[Any, list[int]], key: Any, state: int, size: int) -> list[int]:
    counts = into.get(key)
    if counts is None:
        counts = into[key] = [0] * size
    counts[state if state < _NSTATES else 0] += 1
    return counts


def _host(known: dict[str, tuple[str, int]], host: str, hint: int) -> tuple[str, int]:
    try:
        found = normalize_host(host, hint)
    except ValueError:
        raise NotPlain(host) from None
    if len(known) < _MAX_CACHE:
        known[host] = found
    return found
