"""Split a pasted capture into parts: at shell prompts, command lines, fences and format changes.

People paste terminal sessions, not files::

    [root@svr ~]# netstat -s | grep -i listen
        12178939 times the listen queue of a socket overflowed
        12247395 SYNs to LISTEN sockets dropped
    [root@svr ~]# ss -lnt
    State  Recv-Q Send-Q Local Address:Port Peer Address:Port
    LISTEN 129    128    *:80               *:*

Each line is a prompt (`$ `, `# `, `% `, `[root@h ~]# `, `user@host:~$ `, `PS C:\\> `, `C:\\>`,
Junos `{master:0}`), a command line without prompt (`ss -lnt`, `netstat -s`, `sysctl ...`), a
markdown fence, or data. Data lines that only one format writes (detect.line_kind) open a part of
that format; lines no format claims (headers, continuation lines, prose) join the part around them
or, when no part is open, an unrecognised part that is reported as skipped. The command line before
a part names the format when its lines alone do not (`cat /proc/uptime`). Streamed: one pass, a
lookahead of 12 lines; the result is a list of line ranges, not the text (plus, filled by the caller's
inputs.iter_lines, a byte-offset mark every 256 lines so each part is read without re-reading the paste).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from connwatch.analyze import detect as fmt

LOOKAHEAD = 12
# Commands whose output connwatch reads, or that wrap one (sudo, nsenter, watch, kubectl exec...).
COMMANDS = frozenset({
    "ss", "netstat", "nstat", "cat", "sysctl", "nsenter", "sudo", "lsof", "conntrack", "uptime", "snmpwalk",
    "snmptable", "netsh", "get-nettcpconnection", "grep", "egrep", "watch", "ip", "date", "hostname",
    "onetstat", "tso", "docker", "kubectl", "head", "tail", "ip6tables", "iptables", "ulimit", "sh", "bash",
    "less", "more", "awk", "sort", "uniq", "wc", "echo", "find", "ls", "ps", "top", "lsns", "crictl", "oc",
})
_PROMPT = re.compile(
    r"\s*(?:"
    r"\[(?P<u1>[\w.-]+)@(?P<h1>[\w.-]+)[^\]]*\][#$%]"  # [root@svr ~]#
    r"|(?P<u2>[\w.-]+)@(?P<h2>[\w.-]+)(?::[^\s#$%>]*)?\s?[#$%>]"  # user@host:~$  root@Elektra:~ #  user@router>
    r"|PS [A-Za-z]:\\[^>]*>|PS\s*>|[A-Za-z]:\\[^>]*>"  # PowerShell, cmd.exe
    r"|❯|➜\s+\S+|(?P<h3>[A-Za-z][\w.-]*)\s+[#$%]|\S+\s+[#$%]"  # zsh (➜  ~ lsof), "server1 # nstat"
    r"|[$#%]|~\s?[#$]|\w+[#$%>]|>>>"  # bare prompts: $ ls   # ls   ~# ls   bash$ ls   >>> (doctest style)
    r")(?P<rest>(?:\s.*)?)$"
    r"|\s*[A-Z0-9$#@]{1,8}:/[^\s>]*:\s*>(?P<zrest>.*)$")  # z/OS UNIX: IBMUSER:/bin: >./netstat
_JUNOS = re.compile(r"\{(?:master|backup|primary|secondary|linecard)(?::\d+)?\}(?:\[edit[^\]]*\])?")
_FENCE = re.compile(r"\s*(?:```|~~~)")
_RULE = re.compile(r"\s*(?:_{10,}|={10,}|-{40,})\s*")
_ELIDED = re.compile(r"\s*(?:\.\.\.+|…|\[\.\.\.\]|\(\.\.\.\)|<snip>|\[snip\]|--More--.*)\s*")


@dataclass(frozen=True)
class Part:
    """Lines start..end (1-based, inclusive) of one format, or unrecognised (kind None)."""

    start: int
    end: int
    kind: str | None
    command: str = ""


@dataclass
class Segments:
    parts: list[Part] = field(default_factory=list)
    hostname: str = ""
    boundaries: int = 0  # prompts, command lines and fences seen
    elided: int = 0  # `...` lines inside the paste
    marks: list[tuple[int, int]] = field(default_factory=list)  # (line, byte offset): inputs.iter_lines fills it

    @property
    def whole(self) -> bool:
        """One recognised part and nothing else: the file can be read as it is."""
        return self.boundaries == 0 and self.elided == 0 and len(self.parts) == 1 and self.parts[0].kind is not None


def command_of(line: str) -> tuple[str, str] | None:
    """(command text, host name) when the line is a prompt or a bare command line, else None."""
    text = line.strip()
    if not text:
        return None
    m = _PROMPT.fullmatch(line)
    if m is not None:
        if m.group("zrest") is not None:
            return m.group("zrest").strip(), ""
        rest = m.group("rest").strip()
        host = m.group("h1") or m.group("h2") or m.group("h3") or ""
        head = line.lstrip()[:1]
        if head == "#" and not _known_command(rest):
            return None  # "# comment", "#kernel" (nstat's header)
        if head not in "$#%[❯➜>" and not m.group("h2") and not line.lstrip().startswith(("PS ",)) \
                and not re.match(r"[A-Za-z]:\\", line.lstrip()) and not _known_command(rest):
            return None  # "word>" or "word$" followed by something that is not a command
        return rest, host
    if _JUNOS.fullmatch(text):
        return "", ""
    if _known_command(text) and _looks_like_invocation(text):
        return text, ""
    return None


def _known_command(text: str) -> bool:
    word = text.split(maxsplit=1)[0].lower() if text.split() else ""
    return word.rsplit("/", 1)[-1] in COMMANDS


def _looks_like_invocation(text: str) -> bool:
    tokens = text.split()
    if len(tokens) == 1:
        return tokens[0].lower() in ("uptime", "nstat", "netstat", "ss", "date", "hostname", "get-nettcpconnection")
    second = tokens[1]
    return second.startswith(("-", "/", "|", "kern.", "net.", "int", "state", "sport", "dport", "src", "dst",
                              "exec", "-t")) or tokens[0] in ("sudo", "watch", "nsenter", "kubectl", "docker")


def command_kind(command: str) -> str | None:
    """The format a command line announces, for output whose lines alone do not tell it."""
    text = command.lower()
    if "/proc/uptime" in text or re.search(r"(?:^|\s)uptime(?:\s|$)", text):
        return fmt.UPTIME
    if re.search(r"(?:^|\s)sysctl\s", text):
        return fmt.SYSCTL_A
    return None


def is_elision(line: str) -> bool:
    return bool(_ELIDED.fullmatch(line))


class _Builder:
    """Accumulates parts while the lines stream by."""

    def __init__(self) -> None:
        self.out = Segments()
        self.kind: str | None = None
        self.start = 0
        self.last = 0  # last line that belongs to the open part
        self.command = ""
        self.loose: list[int] = []  # unclaimed non-blank lines since the last claimed one

    def close(self, upto: int | None = None) -> None:
        """End the open part (its trailing unclaimed lines included) and any loose lines."""
        if self.kind is not None:
            end = max(self.last, self.loose[-1] if self.loose else 0)
            self.out.parts.append(Part(self.start, end, self.kind, self.command))
        elif self.loose:
            self._loose_part(self.command)
        self.kind, self.loose, self.command = None, [], ""

    def _loose_part(self, command: str) -> None:
        kind = command_kind(command)
        self.out.parts.append(Part(self.loose[0], self.loose[-1], kind, command))

    def claimed(self, number: int, kind: str, starts: bool = False) -> None:
        """`starts`: the line is the first line its command prints (`Total:`, `#kernel`, a header)."""
        again = starts and kind == self.kind and self.last > self.start
        if self.kind is None or again or (kind != self.kind and not _same_output(self.kind, kind)):
            if self.kind is not None:
                self.out.parts.append(Part(self.start, self.last, self.kind, self.command))
                self.command = ""
            self.kind = kind
            self.start = self.loose[0] if self.loose else number
        self.last = number
        self.loose = []

    def boundary(self, number: int, command: str, host: str) -> None:
        self.close()
        self.out.boundaries += 1
        self.command = command
        if host and not self.out.hostname:
            self.out.hostname = host[:255]


_FIRST_LINES = ("Total:", "#kernel", "Current listen queue sizes", "sockets: used", "Netid ", "State ",
                "LocalAddress ", "Protocol tcp Dynamic Port Range")


def _starts_output(line: str) -> bool:
    """A line a command prints first: a second one opens a second part of the same format."""
    text = line.lstrip()
    if text.startswith(("LocalAddress", "State ", "Netid ")):  # table headers, not Format-List fields
        return "LocalPort" in text or "Recv-Q" in text
    return text.startswith(_FIRST_LINES)


def _same_output(open_kind: str, kind: str) -> bool:
    """Kinds one command's output mixes (`cat /proc/net/sockstat*`)."""
    return {open_kind, kind} <= {fmt.PROC_SOCKSTAT, fmt.PROC_SOCKSTAT6}


def segment(lines: Iterable[str]) -> Segments:
    """The parts of a paste, in order."""
    seg = Segmenter()
    block: list[str] = []
    for line in lines:
        block.append(line)
        if len(block) >= 4096:
            seg.feed(block)
            block = []
    seg.feed(block)
    return seg.finish()


class Segmenter:
    """segment() fed block by block, so that one streamed read of a file can also feed its parser
    (analyze/rowpass.py). A line is classified once the LOOKAHEAD lines after it have been fed."""

    def __init__(self) -> None:
        self.b = _Builder()
        self.memo: dict[tuple[str, int, bool, bool], str | None] = {}
        self.carry: list[str] = []  # fed lines not yet classified (at most LOOKAHEAD)
        self.carry_tokens: list[list[str]] = []
        self.number = 0  # lines classified

    def feed(self, block: list[str], split: list[list[str]] | None = None) -> None:
        """`split`: each line's split(), when the caller has it (the row parser of the same pass)."""
        if split is None:
            split = [line.split() for line in block]
        buf = self.carry + block if self.carry else block
        toks = self.carry_tokens + split if self.carry_tokens else split
        upto = len(buf) - LOOKAHEAD
        if upto > 0:
            self._lines(buf, toks, upto)
            self.carry, self.carry_tokens = buf[upto:], toks[upto:]
        else:
            self.carry, self.carry_tokens = list(buf), list(toks)

    def feed_plain(self, block: list[str], shapes: Iterable[tuple[str, int, bool, bool]]) -> None:
        """feed() for a block whose lines are all table rows of `shapes` (_key's tuples): when every shape is
        a row word already classified as the open part's format, the lines are claimed as _lines claims such
        rows, without a loop over them (the last LOOKAHEAD are kept, as feed keeps them)."""
        if len(block) < 2 * LOOKAHEAD:
            self.feed(block)
            return
        self.feed(block[:LOOKAHEAD])  # the lines before the block, classified with their lookahead
        b, memo = self.b, self.memo
        if b.kind is None or any(s[0] not in _ROW_WORDS or memo.get(s) != b.kind for s in shapes):
            self.feed(block[LOOKAHEAD:])
            return
        self.number += len(block) - LOOKAHEAD  # the carry (block[:LOOKAHEAD]) and the lines up to the new one
        b.last = self.number
        if b.loose:
            b.loose = []
        self.carry = block[-LOOKAHEAD:]
        self.carry_tokens = [line.split() for line in self.carry]

    def finish(self) -> Segments:
        self._lines(self.carry, self.carry_tokens, len(self.carry))
        self.carry, self.carry_tokens = [], []
        self.b.close()
        return self.b.out

    def _lines(self, buf: list[str], toks: list[list[str]], upto: int) -> None:
        """Classify buf[:upto]; buf[i + 1:i + 1 + LOOKAHEAD] are the lines after buf[i]."""
        b, memo, number = self.b, self.memo, self.number
        for index in range(upto):
            number += 1
            tokens = toks[index]
            if not tokens:
                continue
            first = tokens[0]
            if first in _ROW_WORDS and (known := memo.get((  # _key(tokens), inlined
                    first, len(tokens), len(tokens) > 1 and tokens[1][:1].isdigit(), "=" in tokens[-1]))) is not None:
                if known == b.kind:  # claimed() for a row of the open part, inlined (the hot case)
                    b.last = number
                    if b.loose:
                        b.loose = []
                else:
                    b.claimed(number, known)  # a table row like one already classified (no prompt starts so)
                continue
            _step(b, number, buf[index], buf[index + 1:index + 1 + LOOKAHEAD], memo)
        self.number = number


def banner_title(line: str) -> str | None:
    """The title of a collection script's banner line, "====== netstat -s ======" (at least three "=" each side,
    whitespace between them and the title), else None. What the regex \\s*={3,}\\s+(\\S.*?)\\s+={3,}\\s*
    (fullmatch) gave, in linear time: that regex backtracked over lines of many "=" and blanks (the fuzzer
    made one of 680k characters: 134 s of CPU)."""
    text = line.strip()
    if not (text.startswith("===") and text.endswith("===")):
        return None
    left = text.lstrip("=")
    core = left.rstrip("=")
    if len(core) == len(left) or len(left) - len(core) < 3 or not core[:1].isspace() or not core[-1:].isspace():
        return None
    return core.strip() or None


def _step(b: _Builder, number: int, line: str, after: list[str], memo: dict[tuple[str, int, bool, bool], str | None]
          ) -> None:
    """One line that is not a row of an already classified shape."""
    if _FENCE.match(line) or _RULE.fullmatch(line):
        b.boundary(number, "", "")
        return
    if (title := banner_title(line)) is not None:
        b.boundary(number, title, "")
        return
    if is_elision(line):
        b.out.elided += 1
        return
    cmd = command_of(line)
    if cmd is not None and not (b.kind is not None and line[:1].isspace() and _PROMPT.fullmatch(line) is None):
        b.boundary(number, *cmd)
        return  # (an indented bare command inside a part is a stray line of it, e.g. a netstat -s paste)
    kind = _kind(line, after, memo)
    if kind is None:
        b.loose.append(number)
    else:
        b.claimed(number, kind, _starts_output(line))


def _kind(line: str, after: list[str], memo: dict[tuple[str, int, bool, bool], str | None]) -> str | None:
    """detect.line_kind, memoised for table rows (same first word and width as a row already seen)."""
    tokens = line.split()
    key = _key(tokens)
    table_row = tokens[0] in _ROW_WORDS
    if table_row and key in memo:
        return memo[key]
    following = [x for x in after if x.strip()]
    kind = fmt.line_kind(line, following)
    if table_row and len(memo) < 256:
        memo[key] = kind
    return kind


_ROW_WORDS = frozenset({"tcp", "tcp6", "tcp4", "tcp46", "TCP", "ESTAB", "TIME-WAIT", "LISTEN", "CLOSE-WAIT",
                        "SYN-SENT", "SYN-RECV", "FIN-WAIT-1", "FIN-WAIT-2", "LAST-ACK"})


def _key(tokens: list[str]) -> tuple[str, int, bool, bool]:
    """Rows alike: same first word and width; a conntrack entry (`tcp 6 ... use=1`) is told by its `k=v` end."""
    return tokens[0], len(tokens), len(tokens) > 1 and tokens[1][:1].isdigit(), "=" in tokens[-1]
