"""Readers for /proc: counters, sockstat, sysctls and host facts, from the live host or a copied tree.

Every reader takes a ProcFS, whose root defaults to "/proc"; tests point it at
tests/fixtures/proc/<label>. I/O lives here; the parsing is in connwatch.parsers.
One bad file never stops the others: each gets a SourceStatus, and its values are left
out (never reported as zero).
"""

from __future__ import annotations

import _socket  # (not socket: see sources/netlink.py)
import os
import time
from collections.abc import Callable

from connwatch.errors import ConnwatchError, ParseError, SourceUnavailable
from connwatch.model import HostInfo, SourceStatus, Sysctls
from connwatch.parsers.netstat_snmp import numbered_lines, parse_netstat_snmp, parse_snmp6, to_int
from connwatch.parsers.sockstat import parse_sockstat
from connwatch.parsers.sysctl import parse_int, parse_port_range, parse_reserved_ports

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from os import PathLike
    from pathlib import Path
    from typing import TypeVar

    T = TypeVar("T")
Parser = Callable[[str, str], dict[str, int]]
# A namespace's last parsed counter files (the agent's, kept across samples): rel -> (text, parser, values).
# Text equal to the last read is not parsed again: the parsers are pure functions of (text, source name).
ParseMemo = dict[str, tuple[str, Parser, dict[str, int]]]

# The live root, as path_text() gives it. A ProcFS keeps its root as text: pathlib (with urllib.parse and
# ipaddress, which it imports) was 14.6 M instructions of a 35k-socket `snapshot`'s 136.8 M to its first
# kernel read (callgrind, issue 17), for nothing but this comparison and the prefix of every path read.
LIVE_ROOT = "/proc"
NO_SUCH_FILE = "no such file"

COUNTER_FILES: tuple[tuple[str, Parser], ...] = (
    ("net/netstat", parse_netstat_snmp),
    ("net/snmp", parse_netstat_snmp),
    ("net/snmp6", parse_snmp6),
)
SOCKSTAT_FILES: tuple[tuple[str, Parser], ...] = (
    ("net/sockstat", parse_sockstat),
    ("net/sockstat6", parse_sockstat),
)
# Sysctls whose absence is normal on some kernels: noted in the status detail, but not a failure.
OPTIONAL_SYSCTLS = frozenset({"tcp_tw_reuse_delay", "tcp_syn_linear_timeouts", "tcp_syn_retries"})
# Host-wide sysctls that do not exist inside a child network namespace (kernel-facts.md).
HOST_ONLY_SYSCTLS = frozenset({"tcp_max_orphans"})
NOT_APPLICABLE = "not applicable in this network namespace (a host-wide setting)"
_OK_SUFFIXES = ("(optional)", NOT_APPLICABLE)


class ProcFS:
    """A /proc tree: the live one, or a copy laid out the same way (net/netstat, sys/net/...).

    `host_only`: sysctl names whose absence means "not applicable here" (a child network
    namespace has no tcp_max_orphans), not a failure. `memo`: see ParseMemo (read_parsed).
    """

    def __init__(self, root: str | PathLike[str] = LIVE_ROOT, host_only: frozenset[str] = frozenset(),
                 memo: ParseMemo | None = None) -> None:
        self.root = path_text(root)  # (str(Path(root)), without pathlib)
        self.host_only = host_only
        self.memo = memo
        self._prefix = self.root.rstrip("/") + "/"

    def __repr__(self) -> str:
        return f"ProcFS({self.root!r})"

    @property
    def is_live(self) -> bool:
        """True when this is the running kernel's /proc (not a copied tree)."""
        return self.root == LIVE_ROOT

    def path(self, rel: str) -> Path:
        """The full path of `rel` ("net/netstat", "sys/net/core/somaxconn") under the root."""
        from pathlib import Path  # (not loaded by a sample: where() is what reads use)

        return Path(self.where(rel))

    def where(self, rel: str) -> str:
        """The full path as text, without pathlib (every file of every namespace, every sample); the one
        place a subclass maps `rel` (ThreadNetProcFS)."""
        return self._prefix + rel.lstrip("/")

    def read_text(self, rel: str) -> str:
        """The whole file as text, as Path.read_text() gives it; SourceUnavailable (naming the full path)
        if it cannot be read.

        Undecodable bytes become U+FFFD so the parser, not the reader, reports them. Read with os.open/
        os.read: ~4x less CPU than Path.read_text for the small /proc files (a namespace's 13 sysctls: 0.15 ms
        of reads, 0.31 ms with parsing, against 0.65 ms; tests/unit/test_procfs_read.py: the same text).
        """
        path = self.where(rel)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                data = os.read(fd, 65536)
                if data:  # (a /proc seq file may answer in parts: read to the end)
                    rest = [data]
                    while chunk := os.read(fd, 65536):
                        rest.append(chunk)
                    data = b"".join(rest) if len(rest) > 1 else data
            finally:
                os.close(fd)
        except FileNotFoundError:
            raise SourceUnavailable(path, NO_SUCH_FILE) from None
        except PermissionError:
            raise SourceUnavailable(path, "permission denied") from None
        except OSError as exc:
            raise SourceUnavailable(path, exc.strerror or type(exc).__name__) from None
        text = data.decode("utf-8", errors="replace")
        return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text  # (universal newlines)


class ThreadNetProcFS(ProcFS):
    """The live /proc as seen by a thread that entered another network namespace (setns).

    /proc/net is the main thread's namespace; the calling thread's is /proc/thread-self/net.
    /proc/sys/net already follows the calling thread. Host-only sysctls are "not applicable".
    """

    def __init__(self, root: str | PathLike[str] = LIVE_ROOT, memo: ParseMemo | None = None) -> None:
        super().__init__(root, HOST_ONLY_SYSCTLS, memo)

    def where(self, rel: str) -> str:
        rel = rel.lstrip("/")
        return self._prefix + ("thread-self/" + rel if rel.startswith("net/") else rel)


def path_text(path: str | PathLike[str]) -> str:
    """str(pathlib.PurePosixPath(path)) without pathlib: "." and empty parts dropped, a leading "//" kept
    (and "///" or more made "/"), "" made "." (tests/unit/test_procfs_read.py compares the two)."""
    text = os.fspath(path)
    lead = "//" if text.startswith("//") and not text.startswith("///") else "/" if text.startswith("/") else ""
    return lead + "/".join(part for part in text.split("/") if part and part != ".") or "."


def _elapsed_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def read_parsed(proc: ProcFS, rel: str, parser: Parser) -> tuple[dict[str, int] | None, SourceStatus]:
    """Read and parse one file; on failure the values are None and the status says why. With a memo
    (ProcFS.memo) a text equal to the last one read there is not parsed again (an idle namespace's
    counters: 0.6 ms of parsing per namespace and sample saved, README "The agent")."""
    start = time.perf_counter()
    name = proc.where(rel)
    try:
        text = proc.read_text(rel)
        last = proc.memo.get(rel) if proc.memo is not None else None
        if last is not None and last[0] == text and last[1] is parser:
            values = dict(last[2])
        else:
            values = parser(text, name)
            if proc.memo is not None:
                proc.memo[rel] = (text, parser, values)
                values = dict(values)
    except SourceUnavailable as exc:
        return None, SourceStatus(name, False, f"unavailable: {exc.reason}", _elapsed_ms(start))
    except ParseError as exc:
        return None, SourceStatus(name, False, str(exc), _elapsed_ms(start))
    return values, SourceStatus(name, True, f"{len(values)} values", _elapsed_ms(start))


def _read_merged(
    proc: ProcFS, files: tuple[tuple[str, Parser], ...]
) -> tuple[dict[str, int], list[SourceStatus]]:
    merged: dict[str, int] = {}
    statuses: list[SourceStatus] = []
    for rel, parser in files:
        values, status = read_parsed(proc, rel, parser)
        statuses.append(status)
        if values is not None:
            merged.update(values)
    return merged, statuses


def read_counters(proc: ProcFS) -> tuple[dict[str, int], list[SourceStatus]]:
    """Merged counters of net/netstat, net/snmp and net/snmp6, one SourceStatus per file.

    Keys: "TcpExt.ListenOverflows", "Tcp.ActiveOpens", "snmp6.Ip6InReceives", ...
    A missing or malformed file gets ok=False and contributes no keys.
    """
    return _read_merged(proc, COUNTER_FILES)


def read_sockstat(proc: ProcFS) -> tuple[dict[str, int], list[SourceStatus]]:
    """Merged net/sockstat and net/sockstat6 ("TCP.tw", "TCP6.inuse", ...), one SourceStatus per file."""
    return _read_merged(proc, SOCKSTAT_FILES)


def read_one(proc: ProcFS, rel: str, parser: Callable[[str, str], T], problems: list[str],
             absent: str | None) -> T | None:
    """One file read and parsed, or None with a note in `problems`: "name: <absent>" when the file does
    not exist and `absent` says why it may not, else "name: unavailable: <reason>" or the parse error."""
    name = rel.rsplit("/", 1)[-1]
    try:
        return parser(proc.read_text(rel), proc.where(rel))
    except SourceUnavailable as exc:
        problems.append(f"{name}: {absent}" if absent is not None and exc.reason == NO_SUCH_FILE
                        else f"{name}: unavailable: {exc.reason}")
    except ParseError as exc:
        problems.append(f"{name}: {exc.message} (line {exc.line})")
    return None


def _sysctl(proc: ProcFS, rel: str, parser: Callable[[str, str], T], problems: list[str]) -> T | None:
    """One sysctl value, or None with a note in `problems` ("tcp_fin_timeout: unavailable: ...")."""
    name = rel.rsplit("/", 1)[-1]
    absent = ("absent (optional)" if name in OPTIONAL_SYSCTLS
              else NOT_APPLICABLE if name in proc.host_only else None)
    return read_one(proc, rel, parser, problems, absent)


def _ipv4(proc: ProcFS, name: str, problems: list[str]) -> int | None:
    return _sysctl(proc, f"sys/net/ipv4/{name}", parse_int, problems)


def read_sysctls(proc: ProcFS) -> tuple[Sysctls, list[SourceStatus]]:
    """The sysctls in model.Sysctls, each None when unreadable, plus one SourceStatus named "sysctl".

    The status is ok unless a non-optional sysctl was missing or malformed; its detail lists
    every sysctl that could not be read. tcp_tw_reuse_delay only exists on newer kernels.
    """
    start = time.perf_counter()
    problems: list[str] = []
    sysctls = Sysctls(
        somaxconn=_sysctl(proc, "sys/net/core/somaxconn", parse_int, problems),
        tcp_max_syn_backlog=_ipv4(proc, "tcp_max_syn_backlog", problems),
        tcp_syncookies=_ipv4(proc, "tcp_syncookies", problems),
        tcp_abort_on_overflow=_ipv4(proc, "tcp_abort_on_overflow", problems),
        ip_local_port_range=_sysctl(proc, "sys/net/ipv4/ip_local_port_range", parse_port_range, problems),
        ip_local_reserved_ports=_sysctl(
            proc, "sys/net/ipv4/ip_local_reserved_ports", parse_reserved_ports, problems
        ),
        tcp_tw_reuse=_ipv4(proc, "tcp_tw_reuse", problems),
        tcp_tw_reuse_delay=_ipv4(proc, "tcp_tw_reuse_delay", problems),
        tcp_max_tw_buckets=_ipv4(proc, "tcp_max_tw_buckets", problems),
        tcp_max_orphans=_ipv4(proc, "tcp_max_orphans", problems),
        tcp_fin_timeout=_ipv4(proc, "tcp_fin_timeout", problems),
        tcp_syn_retries=_ipv4(proc, "tcp_syn_retries", problems),
        tcp_syn_linear_timeouts=_ipv4(proc, "tcp_syn_linear_timeouts", problems),
    )
    ok = all(problem.endswith(_OK_SUFFIXES) for problem in problems)
    status = SourceStatus("sysctl", ok, "; ".join(problems), _elapsed_ms(start))
    return sysctls, [status]


def parse_btime(text: str, source: str) -> int:
    """The boot time (epoch seconds) from the "btime" line of /proc/stat.

    Sample input line::

        btime 1795382281

    Kernel source: fs/proc/stat.c show_stat(), which prints "btime %llu\\n".
    Raises ParseError when there is no btime line, or its value is not one integer.
    """
    for number, tokens in numbered_lines(text):
        if tokens[0] == "btime":
            if len(tokens) != 2:
                raise ParseError(source, f"expected 'btime <seconds>', got {len(tokens)} fields", number)
            return to_int(tokens[1], source, number, "btime")
    raise ParseError(source, "no btime line")


def _optional_text(proc: ProcFS, rel: str) -> str:
    try:
        return proc.read_text(rel).strip()
    except SourceUnavailable:
        return ""


def read_host(proc: ProcFS) -> HostInfo:
    """Hostname, kernel release and boot time; missing pieces are "" or None.

    The _socket.gethostname() fallback is only used on the live /proc: a copied tree
    without sys/kernel/hostname must not be labelled with this machine's name.
    """
    hostname = _optional_text(proc, "sys/kernel/hostname")
    if not hostname and proc.is_live:
        hostname = _socket.gethostname()
    boot_time: float | None
    try:
        boot_time = float(parse_btime(proc.read_text("stat"), proc.where("stat")))
    except ConnwatchError:
        boot_time = None
    return HostInfo(
        hostname=hostname, kernel=_optional_text(proc, "sys/kernel/osrelease"), boot_time=boot_time
    )
