"""Parse `ss` text output (iproute2 misc/ss.c): socket lists and the `ss -s` summary.

Socket lists, with or without the header, with or without the Netid and State columns (a state
filter such as `ss -tn state established` drops the State column), IPv4/IPv6, tabs or spaces::

    State  Recv-Q Send-Q  Local Address:Port  Peer Address:Port Process
    LISTEN 10     10            0.0.0.0:80         0.0.0.0:*     users:(("nginx",pid=10491,fd=6))
    tcp    TIME-WAIT  0      0   100.96.253.46:8080        172.1.44.48:52961
    ESTAB  0      0      10.0.0.1:22   10.0.0.2:51000  timer:(keepalive,119min,0)
             skmem:(r0,rb131072,t0,tb2626560,f0,w0,o0,bl0,d3)

For LISTEN rows ss prints the accept-queue length as Recv-Q and the backlog in force as Send-Q
(net/ipv4/tcp_diag.c tcp_diag_get_info: idiag_rqueue = sk_ack_backlog, idiag_wqueue =
sk_max_ack_backlog). `-m` adds skmem:(...,dN) whose d is SK_MEMINFO_DROPS; `-o` adds
timer:(timewait,59sec,0); `-p` adds users:(("name",pid=N,fd=M)). Lines that start with
whitespace continue the previous socket (`-i`, `-m` output). Non-TCP sockets are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

from connwatch.errors import ParseError
from connwatch.model import TcpState
from connwatch.parsers.conn_rows import SS_STATES, ConnRow, PlainBlock, in_blocks, split_colon
from connwatch.parsers.numbers import num

NETIDS = frozenset({"tcp", "udp", "raw", "u_str", "u_dgr", "u_seq", "nl", "p_raw", "p_dgr", "mptcp",
                    "sctp", "dccp", "v_str", "v_dgr", "tipc", "xdp", "u_seqpacket", "icmp6", "unknown"})
_TCP_NETIDS = frozenset({"tcp", "mptcp"})
_USERS = re.compile(r'users:\(\("((?:[^"\\]|\\.)*)",pid=(\d+)')
_TIMER = re.compile(r"timer:\((\w+),((?:\d+min)?(?:\d+sec)?(?:\d+ms)?)")
_DROPS = re.compile(r"skmem:\([^)]*\bd(\d+)\)")
_DURATION = re.compile(r"(?:(\d+)min)?(?:(\d+)sec)?(?:(\d+)ms)?")
_SUMMARY_TCP = re.compile(r"TCP:\s+(\d+) \(estab (\d+), closed (\d+), orphaned (\d+), "
                          r"(?:synrecv (\d+), )?timewait (\d+)(?:/(\d+))?\)")
_LISTEN_PEERS = frozenset({"*:*", "0.0.0.0:*", "[::]:*", ":::*", "*", "[::]:0"})


def _ms(text: str) -> int:
    m = _DURATION.fullmatch(text)
    if not m:
        return 0
    mins, secs, ms = (num(x) if x else 0 for x in m.groups())
    return (mins * 60 + secs) * 1000 + ms


def is_header(tokens: list[str]) -> bool:
    return bool(tokens) and tokens[0] in ("State", "Netid", "Recv-Q")


class _Pending:
    """The socket row being read, until its continuation lines have been seen."""

    def __init__(self, tokens: list[str], number: int, source: str, notes: list[str]) -> None:
        self.number = number
        self.source = source
        self.notes = notes
        self.extra: list[str] = []
        netid = tokens[0] if tokens[0] in NETIDS else None
        rest = tokens[1:] if netid else tokens
        self.tcp = netid is None or netid in _TCP_NETIDS
        self.state: int | None = None
        if rest and rest[0] in SS_STATES:
            self.state = int(SS_STATES[rest[0]])
            rest = rest[1:]
        if len(rest) < 4:
            raise ParseError(source, f"truncated socket row ({len(tokens)} fields)", number)
        if not (rest[0].isdecimal() and rest[1].isdecimal()):
            raise ParseError(source, f"expected Recv-Q and Send-Q numbers, got {rest[0][:20]!r} "
                             f"{rest[1][:20]!r}", number)
        try:
            self.recv_q, self.send_q = num(rest[0]), num(rest[1])
        except ValueError as exc:
            raise ParseError(source, f"Recv-Q/Send-Q: {exc}", number) from None
        self.local, self.peer = rest[2], rest[3]
        self.extra.append(" ".join(rest[4:]))

    def row(self) -> ConnRow | None:
        if not self.tcp:
            return None
        try:
            return self._row()
        except ValueError as exc:  # a number ss never prints (parsers/numbers.py)
            raise ParseError(self.source, str(exc), self.number) from None

    def _row(self) -> ConnRow:
        text = " ".join(self.extra)
        listen = self.peer in _LISTEN_PEERS or self.peer.endswith(":*")
        state = self.state
        timer = _TIMER.search(text)
        if state is None:
            state = int(TcpState.LISTEN if listen else TcpState.TIME_WAIT if timer and timer.group(1) ==
                        "timewait" else TcpState.ESTABLISHED)
            note = ("ss output without a State column (a state filter was used): sockets counted as "
                    "ESTABLISHED unless a timer says TIME_WAIT")
            if not listen and note not in self.notes:
                self.notes.append(note)
        try:
            local, lport, fam = split_colon(self.local)
            remote: str | None = None
            rport = 0
            if not (listen and state == TcpState.LISTEN):
                remote, rport, _ = split_colon(self.peer, fam)
        except ValueError as exc:
            raise ParseError(self.source, f"bad address: {exc}", self.number) from None
        users = _USERS.search(text)
        drops = _DROPS.search(text)
        return ConnRow(
            family=fam, state=state, local=local, local_port=lport, remote=remote, remote_port=rport,
            recv_q=self.recv_q, send_q=self.send_q,
            backlog=self.send_q if state == TcpState.LISTEN else None, drops=num(drops.group(1)) if drops else None,
            expires_ms=_ms(timer.group(2)) if timer else 0,
            pid=num(users.group(2)) if users else None, command=users.group(1) if users else None,
            line=self.number)


def iter_ss(lines: Iterable[str], source: str, notes: list[str] | None = None) -> Iterator[ConnRow]:
    """TCP sockets of an `ss` listing, one ConnRow each, streamed (one row held at a time)."""
    for row in scan_ss(in_blocks(lines), source, notes, None):
        if row is not None:
            yield row


SIMPLE_BATCH = 4096  # simple rows gathered before scan_ss/scan_netstat yield None (memory stays flat)
_SIMPLE_STATES = {k: int(v) for k, v in SS_STATES.items() if v != TcpState.LISTEN}


def _plain_queue(text: str) -> bool:
    """A queue number parsers/numbers.num reads (ASCII digits, at most 20)."""
    return text == "0" or (text.isdecimal() and text.isascii() and len(text) <= 20)


def plain_ss_block(lines: list[str], open_end: bool = True) -> PlainBlock | None:
    """The lines as a PlainBlock when every one is a simple row of scan_ss (`STATE Recv-Q Send-Q LOCAL PEER`,
    no LISTEN, the state first on the line), else None. Checked on the block, not line by line: the block's
    tokens are 5 per line; the state slots hold state names, the queue slots plain numbers and the address
    slots contain no state name (they contain ':', checked where they are split); and every line starts with
    a state name and a blank. A state name is then only in the state slots, so each line's first token is in
    one, so each line has exactly its 5 tokens. `open_end`: the line after the block starts with a blank (it
may continue the last row)."""
    n = len(lines)
    text = "\n".join(lines)
    if n < 2 or "=" in text:
        return None
    toks = text.split()
    if len(toks) != 5 * n:
        return None
    states = toks[0::5]
    names = set(states)
    queues = toks[1::5] + toks[2::5]
    if not names <= _SIMPLE_STATES.keys() or (queues.count("0") != 2 * n and not all(map(_plain_queue, set(queues)))):
        return None
    first = lines[0]
    starts = sum(text.count(f"\n{name} ") + first.startswith(name + " ") for name in names)
    if starts != n and starts + sum(text.count(f"\n{name}\t") + first.startswith(name + "\t") for name in names) != n:
        return None
    shapes = frozenset((name, 5, True, False) for name in names)
    return PlainBlock(lines, states, toks[3::5], toks[4::5], shapes, open_end)


def scan_ss(blocks: Iterable[Sequence[str] | PlainBlock], source: str, notes: list[str] | None,
            simple: list[tuple[int, str, str, int]] | None, split: list[list[str]] | None = None,
            plain: list[tuple[PlainBlock, int]] | None = None) -> Iterator[ConnRow | None]:
    """iter_ss for the analyze hot path, over blocks of lines. With `simple`, a connection row that is only
    `[tcp] STATE Recv-Q Send-Q LOCAL PEER` (no LISTEN, no continuation line, numbers as ss prints them) is not
    made into a ConnRow: (state, local, peer, 4) is appended to `simple` for the caller to split and count, and
    None is yielded each time it holds SIMPLE_BATCH rows. A PlainBlock (all its lines such rows) is appended to
    `plain` as (block, rows) for its first `rows` rows (all, or when the line after it may continue the last
    row, all but its last line, read as a line), then None is yielded. Rows keep their order: the caller empties
    `simple`, then `plain`, before it uses a yielded row. The addresses of simple rows are not checked here.
    `split` receives each line's split() (analyze/segment.py uses them in the same pass)."""
    notes = notes if notes is not None else []
    keep = split.append if split is not None else None
    pending: _Pending | None = None
    held: tuple[int, str, str, int] | None = None  # a simple row, until the next row shows it is not continued
    held_tokens: list[str] = []
    held_number = 0
    seen = number = 0
    states = _SIMPLE_STATES if simple is not None else {}
    for block in blocks:
        if isinstance(block, PlainBlock):
            if held is not None:
                simple.append(held)  # type: ignore[union-attr]
                held = None
            elif pending is not None and (row := pending.row()) is not None:
                yield row
            pending = None
            taken = len(block.lines) - block.open_end
            plain.append((block, taken))  # type: ignore[union-attr]
            yield None
            seen, number = seen + taken, number + taken
            block = block.lines[taken:]
        for line in block:
            number += 1
            tokens = line.split()
            if keep is not None:
                keep(tokens)
            if len(tokens) == 5 and (state := states.get(tokens[0])) is not None and (
                    tokens[1] == "0" or _plain_queue(tokens[1])) and (tokens[2] == "0" or _plain_queue(tokens[2])):
                if held is not None:  # the hot case: a simple row after a simple row
                    simple.append(held)  # type: ignore[union-attr]
                    if len(simple) >= SIMPLE_BATCH:  # type: ignore[arg-type]
                        yield None
                elif pending is not None and (row := pending.row()) is not None:
                    yield row
                pending = None
                seen += 1
                held, held_tokens, held_number = (state, tokens[3], tokens[4], 4), tokens, number
                continue
            if not tokens:
                continue
            if line[:1] in (" ", "\t") and (pending is not None or held is not None) and tokens[0] not in NETIDS \
                    and tokens[0] not in SS_STATES:
                if held is not None:
                    pending, held = _Pending(held_tokens, held_number, source, notes), None
                pending.extra.append(line)  # type: ignore[union-attr]
                continue
            if is_header(tokens):
                continue
            if held is not None:
                simple.append(held)  # type: ignore[union-attr]
                held = None
                if len(simple) >= SIMPLE_BATCH:  # type: ignore[arg-type]
                    yield None
            elif pending is not None and (row := pending.row()) is not None:
                yield row
            pending = None
            seen += 1
            if simple is not None and len(tokens) == 6 and tokens[0] in _TCP_NETIDS and (
                    state := _SIMPLE_STATES.get(tokens[1])) is not None and _plain_queue(tokens[2]) \
                    and _plain_queue(tokens[3]):
                held, held_tokens, held_number = (state, tokens[4], tokens[5], 4), tokens, number
                continue
            pending = _Pending(tokens, number, source, notes)
    if held is not None:
        simple.append(held)  # type: ignore[union-attr]
    elif pending is not None and (row := pending.row()) is not None:
        yield row
    if not seen:
        raise ParseError(source, "no socket rows (empty ss output)")


def parse_ss_summary(lines: Iterable[str], source: str) -> dict[str, int]:
    """`ss -s` -> sockstat-style counts ("TCP.tw", "TCP.orphan", "TCP.inuse", "TCP6.inuse", ...)::

        TCP:   4595 (estab 3548, closed 956, orphaned 8, synrecv 0, timewait 954/0), ports 0
        TCP       3639      1859      1780

    From iproute2 misc/ss.c print_summary(), which reads /proc/net/sockstat{,6} and the
    tcp_diag summary. Newer iproute2 prints `Total: N` without `(kernel N)` and `timewait N)`
    without the `/N` part.
    """
    out: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens:
            continue
        if tokens[0] == "TCP:":
            m = _SUMMARY_TCP.search(line)
            if not m:
                raise ParseError(source, "unreadable 'TCP:' summary line", number)
            try:
                _summary_tcp(m, out)
            except ValueError as exc:
                raise ParseError(source, f"'TCP:' summary line: {exc}", number) from None
        elif tokens[0] == "TCP" and len(tokens) == 4:
            try:
                out["TCP.inuse"], out["TCP6.inuse"] = num(tokens[2]), num(tokens[3])
            except ValueError:
                raise ParseError(source, "unreadable TCP transport row", number) from None
    if "TCP.tw" not in out:
        raise ParseError(source, "no 'TCP:' line: not complete `ss -s` output")
    return out


def _summary_tcp(m: re.Match[str], out: dict[str, int]) -> None:
    total, estab, closed, orphan, synrecv, tw, _tw2 = m.groups()
    out.update({"ss.total": num(total), "ss.estab": num(estab), "ss.closed": num(closed),
                "TCP.orphan": num(orphan), "TCP.tw": num(tw)})
    if synrecv is not None:
        out["ss.synrecv"] = num(synrecv)
