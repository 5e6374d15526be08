"""Readers for the host limits besides the backlog: conntrack (count, table size, per-CPU statistics of
the namespace), TCP memory limits and file handles. Each takes a ProcFS; a missing file is "not
available" (None, with a status saying why), never 0. Parsing is in parsers/hostlimits.py."""

from __future__ import annotations

import time
from collections.abc import Callable

from connwatch.model import SourceStatus
from connwatch.parsers.hostlimits import parse_int_triple, parse_nf_conntrack_stat
from connwatch.parsers.sysctl import parse_int
from connwatch.record import Record, record
from connwatch.sources.procfs import ProcFS, read_one

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import TypeVar

    T = TypeVar("T")
CONNTRACK_COUNT = "sys/net/netfilter/nf_conntrack_count"
CONNTRACK_MAX = "sys/net/netfilter/nf_conntrack_max"
CONNTRACK_STAT = "net/stat/nf_conntrack"
TCP_MEM = "sys/net/ipv4/tcp_mem"
FILE_NR = "sys/fs/file-nr"


@record
class HostLimits(Record):
    conntrack_count: int | None
    conntrack_max: int | None
    conntrack_stats: dict[str, int] | None
    tcp_mem: tuple[int, int, int] | None
    files_allocated: int | None
    file_max: int | None


ABSENT = {  # why each file may not exist (a missing file is "not available", never 0)
    TCP_MEM: "absent (host-wide: not visible in a child network namespace, or not captured)",
    FILE_NR: "absent (not in this capture)",
}
NO_CONNTRACK = "absent (no conntrack in this namespace, or not captured)"


def _read(proc: ProcFS, rel: str, parser: Callable[[str, str], T], problems: list[str]) -> T | None:
    return read_one(proc, rel, parser, problems, ABSENT.get(rel, NO_CONNTRACK))


def read_host_limits(proc: ProcFS) -> tuple[HostLimits, SourceStatus]:
    """One status "host limits": ok unless a file that exists could not be read or parsed."""
    start = time.perf_counter()
    problems: list[str] = []
    count = _read(proc, CONNTRACK_COUNT, parse_int, problems)
    stats = _read(proc, CONNTRACK_STAT, parse_nf_conntrack_stat, problems) if count is not None else None
    maximum = _read(proc, CONNTRACK_MAX, parse_int, problems) if count is not None else None
    tcp_mem = _read(proc, TCP_MEM, parse_int_triple, problems)
    files = _read(proc, FILE_NR, parse_int_triple, problems)
    ok = all(p.split(": ", 1)[1].startswith("absent") for p in problems)
    status = SourceStatus("host limits", ok, "; ".join(problems), round((time.perf_counter() - start) * 1000, 3))
    return HostLimits(count, maximum, stats, tcp_mem, files[0] if files else None,
                      files[2] if files else None), status
