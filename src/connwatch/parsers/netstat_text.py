"""Parse `netstat` connection tables: Linux net-tools, Windows, macOS/FreeBSD (-an and -Lan).

Linux (net-tools netstat.c tcp_do_one(); -e adds User/Inode, -p PID/Program name, -o Timer)::

    Proto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name
    tcp        0      0 0.0.0.0:22              0.0.0.0:*               LISTEN      659/sshd
    tcp        0      0 10.24.1.245:80          10.24.36.145:32790      SYN_RECV    -   on (0.79/0/0)

For LISTEN rows Recv-Q is the accept-queue length; Send-Q is 0 (net-tools reads /proc/net/tcp,
which does not show the backlog), so a Linux netstat capture cannot measure AcceptQueueFill.

Windows (netstat.exe; headers are localized, e.g. French "Adresse locale"; -o adds PID; -b adds
"[name.exe]" lines under a row)::

      TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       1192
      TCP    [::1]:50515            [::1]:50051            TIME_WAIT
      TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       1028     InHost

(`-t` adds the offload state column: InHost, Offloaded, Offloading, Uploading.)

macOS / FreeBSD (usr.bin/netstat/inet.c protopr(); the port follows the last dot)::

    tcp4       0      0  192.168.1.10.52345     17.57.144.20.5223      ESTABLISHED
    tcp46      0      0  *.8080                 *.*                    LISTEN

and `netstat -Lan` listen queues qlen/incqlen/maxqlen (so_qlen, so_incqlen, so_qlimit; macOS omits
the Proto column)::

    Current listen queue sizes (qlen/incqlen/maxqlen)
    Proto Listen         Local Address
    tcp4  192/0/128      *.80

FreeBSD `netstat -LaAn` puts the protocol control block address first (`Tcpcb` column), and
`-L` also lists unix sockets (`unix  0/0/128  /var/run/devd.pipe`), which are skipped::

    Tcpcb            Proto Listen         Local Address
    fffff800c9ab8810 tcp4  2/0/1          *.55083
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from operator import itemgetter

from connwatch.errors import ParseError
from connwatch.model import TcpState
from connwatch.parsers.conn_rows import NETSTAT_STATES, ConnRow, PlainBlock, in_blocks, split_colon, split_dot
from connwatch.parsers.numbers import num, real
from connwatch.parsers.ss_text import SIMPLE_BATCH

LINUX, WINDOWS, BSD, BSD_LISTEN = "linux", "windows", "bsd", "bsd-listen"
_LINUX_PROTOS = frozenset({"tcp", "tcp6", "udp", "udp6", "raw", "raw6", "udpl", "udpl6", "unix", "sctp"})
_BSD_PROTOS = frozenset({"tcp", "tcp4", "tcp6", "tcp46", "udp", "udp4", "udp6", "udp46", "icm4", "icm6",
                         "sctp", "sctp4", "sctp6", "sctp46", "div4", "div6"})
_WIN_PROTOS = frozenset({"TCP", "UDP", "TCPv6", "UDPv6"})
# No leading \s*: searched from every position, it made a long run of spaces quadratic (fuzzing found it).
_TIMER = re.compile(r"(off|on|keepalive|timewait|unkn-\d+)\s+\(([\d.]+)/\d+/\d+\)\s*$")
_PID = re.compile(r"(?:^|\s)(\d+)/(\S.*)$")
_QUEUES = re.compile(r"(\d+)/(\d+)/(\d+)")
_OFFLOAD = frozenset({"InHost", "Offloaded", "Offloading", "Uploading"})
_PCB = re.compile(r"(?:0x)?[0-9a-f]{8,16}")
_END_SECTIONS = ("Active UNIX", "Active LOCAL", "Active Bluetooth", "Active IPX", "Active AX.25",
                 "Active NET/ROM", "Registered kernel", "Active kernel", "Active Multipath")


def _state(word: str, source: str, number: int) -> int:
    state = NETSTAT_STATES.get(word.upper()) or NETSTAT_STATES.get(word)
    if state is None:
        raise ParseError(source, f"unknown TCP state {word[:30]!r}", number)
    return int(state)


def _check_queues(tokens: list[str], source: str, number: int) -> None:
    """`Proto Recv-Q Send-Q Local Foreign State`, as Linux and BSD netstat print a row."""
    if any(t.strip(".") == "" or t == "…" for t in tokens[3:5]):
        raise ParseError(source, "addresses elided (`...`) in the paste: row not counted", number)
    if len(tokens) < 6:
        raise ParseError(source, f"truncated socket row ({len(tokens)} fields)", number)
    if not (tokens[1].isdecimal() and tokens[2].isdecimal()):
        raise ParseError(source, "expected Recv-Q and Send-Q numbers", number)


def _linux_row(tokens: list[str], line: str, source: str, number: int) -> ConnRow | None:
    if tokens[0] not in ("tcp", "tcp6"):
        return None
    _check_queues(tokens, source, number)
    fam = 6 if tokens[0] == "tcp6" else 4
    state = _state(tokens[5], source, number)
    rest = line.split(tokens[5], 1)[1]
    expires = 0
    timer = _TIMER.search(rest)
    if timer:
        rest = rest[:timer.start()]
        if timer.group(1) == "timewait":
            expires = int(real(timer.group(2)) * 1000)
    owner = _PID.search(rest.strip())
    try:
        local, lport, fam = split_colon(tokens[3], fam)
        remote, rport, _ = split_colon(tokens[4], fam)
    except ValueError as exc:
        raise ParseError(source, f"bad address: {exc}", number) from None
    return ConnRow(fam, state, local, lport, None if state == TcpState.LISTEN else remote, rport,
                   num(tokens[1]), num(tokens[2]), None, None, expires,
                   num(owner.group(1)) if owner else None, owner.group(2).strip() if owner else None, number)


def _windows_row(tokens: list[str], source: str, number: int) -> ConnRow | None:
    if tokens[0] not in ("TCP", "TCPv6"):
        return None
    if len(tokens) < 4:
        raise ParseError(source, f"truncated socket row ({len(tokens)} fields)", number)
    state = _state(tokens[3], source, number)
    pid = None
    tokens = [t for t in tokens[:6] if t not in _OFFLOAD]
    if len(tokens) > 4:
        if not tokens[4].isdecimal():
            raise ParseError(source, f"expected a PID, got {tokens[4][:20]!r}", number)
        pid = num(tokens[4])
    try:
        local, lport, fam = split_colon(tokens[1])
        remote, rport, _ = split_colon(tokens[2], fam)
    except ValueError as exc:
        raise ParseError(source, f"bad address: {exc}", number) from None
    return ConnRow(fam, state, local, lport, None if state == TcpState.LISTEN else remote, rport,
                   pid=pid, line=number)


def _bsd_row(tokens: list[str], source: str, number: int) -> ConnRow | None:
    if not tokens[0].startswith("tcp"):
        return None
    _check_queues(tokens, source, number)
    hint = 6 if tokens[0] == "tcp6" else 4
    state = _state(tokens[5], source, number)
    try:
        local, lport, fam = split_dot(tokens[3], hint)
        remote, rport, _ = split_dot(tokens[4], fam)
    except ValueError as exc:
        raise ParseError(source, f"bad address: {exc}", number) from None
    return ConnRow(fam, state, local, lport, None if state == TcpState.LISTEN else remote, rport,
                   num(tokens[1]), num(tokens[2]), line=number)


def _bsd_listen_row(tokens: list[str], source: str, number: int) -> ConnRow | None:
    if tokens[0] in _BSD_PROTOS or tokens[0] == "unix":
        if not tokens[0].startswith("tcp"):
            return None
        proto, tokens = tokens[0], tokens[1:]
    else:
        proto = "tcp"
    if len(tokens) < 2:
        raise ParseError(source, "truncated listen-queue row", number)
    m = _QUEUES.fullmatch(tokens[0])
    if m is None:
        raise ParseError(source, f"expected qlen/incqlen/maxqlen, got {tokens[0][:30]!r}", number)
    qlen, _incqlen, maxqlen = (num(x) for x in m.groups())
    try:
        local, lport, fam = split_dot(tokens[1], 6 if proto == "tcp6" else None)
    except ValueError as exc:
        raise ParseError(source, f"bad address: {exc}", number) from None
    return ConnRow(fam, int(TcpState.LISTEN), local, lport, None, 0, qlen, maxqlen, backlog=maxqlen,
                   line=number)


def _is_row(dialect: str, tokens: list[str]) -> bool:
    first = tokens[0]
    if dialect == LINUX:
        return first in _LINUX_PROTOS
    if dialect == WINDOWS:
        return first in _WIN_PROTOS
    if dialect == BSD:
        return first in _BSD_PROTOS
    return bool(_QUEUES.fullmatch(first)) or ((first in _BSD_PROTOS or first == "unix") and len(tokens) > 1
                                               and bool(_QUEUES.fullmatch(tokens[1])))


def iter_netstat(lines: Iterable[str], source: str, dialect: str) -> Iterator[ConnRow]:
    """TCP rows of a netstat table in `dialect` (LINUX, WINDOWS, BSD, BSD_LISTEN), streamed.

    A Windows row is held until its `-b` lines have been read, so `[name.exe]` names its owner.
    """
    for row in scan_netstat(in_blocks(lines), source, dialect, None):
        if row is not None:
            yield row


_SIMPLE_STATES = {k: int(v) for k, v in NETSTAT_STATES.items() if v != TcpState.LISTEN}


def _plain_number(text: str) -> bool:
    """A number parsers/numbers.num reads (ASCII digits, at most 20)."""
    return text == "0" or (text.isdecimal() and text.isascii() and len(text) <= 20)


def _simple(dialect: str, tokens: list[str]) -> tuple[int, str, str, int] | None:
    """(state, local, peer, family hint) of a connection row with nothing else a ConnRow would take from it
    (no LISTEN, no timer, no -b owner needed), else None. Its addresses are not checked here."""
    n = len(tokens)
    if dialect == WINDOWS:
        if tokens[0] == "TCP" and (n == 4 or (n == 5 and _plain_number(tokens[4]))) \
                and (state := _SIMPLE_STATES.get(tokens[3])) is not None:
            return state, tokens[1], tokens[2], 4
        return None
    if dialect == LINUX and (n == 6 or (n == 7 and _plain_owner(tokens[6]))) and tokens[0] in ("tcp", "tcp6") \
            and (state := _SIMPLE_STATES.get(tokens[5])) is not None and _plain_number(tokens[1]) \
            and _plain_number(tokens[2]) and tokens[3].strip(".") and tokens[4].strip(".") \
            and "…" not in (tokens[3], tokens[4]) and tokens[5] not in tokens[3] + tokens[4]:
        return state, tokens[3], tokens[4], 6 if tokens[0] == "tcp6" else 4
    return None


def _simple_windows(tokens: list[str]) -> tuple[int, str, str, int] | None:
    """_simple for WINDOWS, the common rows first (`TCP local peer STATE PID`)."""
    if tokens[0] == "TCP" and (state := _SIMPLE_STATES.get(tokens[3] if len(tokens) > 3 else "")) is not None:
        n = len(tokens)
        if n == 4 or (n == 5 and (tokens[4] == "0" or _plain_number(tokens[4]))):
            return state, tokens[1], tokens[2], 4
    return None


def _plain_owner(text: str) -> bool:
    """net-tools' PID/Program name column: `-`, or a pid num() reads before the slash."""
    pid, slash, _name = text.partition("/")
    return text == "-" or (bool(slash) and pid.isdecimal() and pid.isascii() and len(pid) <= 20)


def plain_windows_block(lines: list[str], _open_end: bool = False) -> PlainBlock | None:
    """The lines as a PlainBlock when every one is a row _simple_windows takes (`TCP LOCAL PEER STATE [PID]`,
    all with a PID or all without, each line indented as the first), else None. Checked on the block (see
    ss_text.plain_ss_block): the tokens are 4 or 5 per line, `TCP` fills the first slots and no other (states
    and PIDs are not `TCP`; addresses contain ':', checked where they are split) and every line starts with
    the first line's indent, `TCP` and a blank."""
    n = len(lines)
    text = "\n".join(lines)
    if n < 2 or "=" in text:
        return None
    toks = text.split()
    width = 5 if len(toks) == 5 * n else 4 if len(toks) == 4 * n else 0
    if not width or set(toks[0::width]) != {"TCP"} or not set(toks[3::width]) <= _SIMPLE_STATES.keys() or (
            width == 5 and not all(map(_plain_number, set(toks[4::5])))):
        return None
    first = lines[0]
    at = first.find("TCP")
    prefix = first[:at + 4]
    if (at and not first[:at].isspace()) or prefix[-1:] not in (" ", "\t") or text.count("\n" + prefix) != n - 1:
        return None
    local = toks[1::width]
    shapes = frozenset(("TCP", width, c.isdigit(), False) for c in set(map(_FIRST, local)))
    return PlainBlock(lines, toks[3::width], local, toks[2::width], shapes)


_FIRST = itemgetter(0)
_DIGIT_ENDS = tuple("0123456789")


def plain_linux_block(lines: list[str], _open_end: bool = False) -> PlainBlock | None:
    """The lines as a PlainBlock when every one is a row _simple takes for LINUX with proto `tcp` (family hint
    4; `tcp6` rows go line by line): `tcp Recv-Q Send-Q LOCAL PEER STATE [PID/Program]`, all with the owner
    column or all without, else None. Checked on the block (see plain_windows_block): 6 or 7 tokens per line;
    `tcp` fills the first slots and no other (numbers, states and owners are not `tcp`; addresses contain ':',
    checked where they are split); every line starts with `tcp ` (so each has its 6 or 7 tokens); the block's
    state names occur only in the state slots, and no local address ends in a state name's first letters (every
    one ends in a digit), so no state name is inside a row's two addresses (what _simple refuses)."""
    n = len(lines)
    text = "\n".join(lines)
    if n < 2 or "=" in text or "…" in text or not lines[0].startswith("tcp "):
        return None
    toks = text.split()
    width = 6 if len(toks) == 6 * n else 7 if len(toks) == 7 * n else 0
    if not width or set(toks[0::width]) != {"tcp"} or text.count("\ntcp ") != n - 1:
        return None
    states, local = toks[5::width], toks[3::width]
    names = set(states)
    if not names <= _SIMPLE_STATES.keys() or not all(map(_plain_number, set(toks[1::width] + toks[2::width]))) or (
            width == 7 and not all(map(_plain_owner, set(toks[6::7])))):
        return None
    if sum(map(text.count, names)) != n or not all(map(str.endswith, local, [_DIGIT_ENDS] * n)):
        return None
    return PlainBlock(lines, states, local, toks[4::width], frozenset({("tcp", width, True, False)}))


def scan_netstat(blocks: Iterable[Sequence[str] | PlainBlock], source: str, dialect: str,
                 simple: list[tuple[int, str, str, int]] | None, split: list[list[str]] | None = None,
                 plain: list[tuple[PlainBlock, int]] | None = None) -> Iterator[ConnRow | None]:
    """iter_netstat for the analyze hot path, over blocks of lines: with `simple`, plain Windows and Linux
    connection rows are appended to it as (state, local, peer, family hint) instead of being yielded, and a
    PlainBlock to `plain` as (block, rows) (see ss_text.scan_ss); `split` receives each line's split()."""
    keep = split.append if split is not None else None
    started = ended = False
    loose = 0  # Windows -b lines after the last row
    rows = number = 0
    pending: ConnRow | None = None
    fast = simple is not None and dialect in (WINDOWS, LINUX)
    windows = dialect == WINDOWS
    for block in blocks:
        if isinstance(block, PlainBlock) and ended:
            block = block.lines  # (after a non-TCP section: read as lines, which are skipped)
        if isinstance(block, PlainBlock):  # Windows rows, Linux `tcp` rows (what _simple_windows, _simple take)
            if pending is not None:
                yield pending
                pending = None
            started, loose = True, 0
            taken = len(block.lines)
            rows, number = rows + taken, number + taken
            plain.append((block, taken))  # type: ignore[union-attr]
            yield None
            continue
        for line in block:
            number += 1
            tokens = line.split()
            if keep is not None:
                keep(tokens)
            if dialect == BSD_LISTEN and len(tokens) > 2 and _PCB.fullmatch(tokens[0]) and not tokens[0].isdigit():
                tokens = tokens[1:]  # -LaAn: the Tcpcb address column
            if not tokens or ended:
                continue
            if fast and (plain_row := _simple_windows(tokens) if windows else _simple(dialect, tokens)) is not None:
                started, loose = True, 0
                rows += 1
                if pending is not None:
                    yield pending
                    pending = None
                simple.append(plain_row)  # type: ignore[union-attr]
                if len(simple) >= SIMPLE_BATCH:  # type: ignore[arg-type]
                    yield None
                continue
            if line.startswith(_END_SECTIONS):
                ended = dialect != WINDOWS
                continue
            if not _is_row(dialect, tokens):
                if not started or line.startswith(("Active ", "Proto ", "Current listen", "Some tcp sockets")):
                    continue  # titles and (possibly localized) headers before the rows
                if dialect == WINDOWS and loose < 3:
                    loose += 1  # `netstat -b`: component and [executable] lines under a row
                    text = line.strip()
                    if pending is not None and text.startswith("[") and text.endswith("]") and len(text) < 260:
                        pending = pending._replace(command=text[1:-1])
                    continue
                raise ParseError(source, f"unexpected line in a netstat table: {line.strip()[:60]!r}", number)
            started, loose = True, 0
            rows += 1
            if pending is not None:
                yield pending
            pending = _row(dialect, tokens, line, source, number)
    if pending is not None:
        yield pending
    if not rows:
        raise ParseError(source, "no socket rows (empty netstat table)")


def _row(dialect: str, tokens: list[str], line: str, source: str, number: int) -> ConnRow | None:
    try:
        return _dialect_row(dialect, tokens, line, source, number)
    except ValueError as exc:  # a number no netstat prints (parsers/numbers.py)
        raise ParseError(source, str(exc), number) from None


def _dialect_row(dialect: str, tokens: list[str], line: str, source: str, number: int) -> ConnRow | None:
    if dialect == LINUX:
        return _linux_row(tokens, line, source, number)
    if dialect == WINDOWS:
        return _windows_row(tokens, source, number)
    if dialect == BSD:
        return _bsd_row(tokens, source, number)
    return _bsd_listen_row(tokens, source, number)
