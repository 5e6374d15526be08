"""The facts of the host limits besides the backlog (attributes/hostlimits.py measures them,
explain/hostlimits.py words them). Field order is the JSON `detail` order (a contract)."""

from __future__ import annotations

from connwatch.record import Record, record


@record
class ConntrackFacts(Record):
    """The namespace's conntrack table: nf_conntrack_count is per namespace, compared against the one
    host-wide nf_conntrack_max (net/netfilter/nf_conntrack_core.c __nf_conntrack_alloc)."""

    interval_s: float
    count: int
    max: int
    percent: float
    count_before: int | None
    growth_per_s: float | None  # change of the count per second over the interval
    seconds_to_full: float | None  # at that growth; None when not growing
    drop: int | None  # packets dropped: no entry could be made (table full) — new connections' SYNs among them
    early_drop: int | None  # entries evicted to make room
    insert_failed: int | None
    listen_overflows: int | None  # the namespace's TcpExt ListenOverflows delta (to tell a full backlog apart)
    netns: str | None  # the namespace, when the snapshot names one


@record
class TcpMemoryFacts(Record):
    """TCP buffer memory (pages, host-wide) against net.ipv4.tcp_mem, and what the kernel did about it."""

    interval_s: float
    pages: int  # /proc/net/sockstat TCP mem
    tcp_mem_min: int
    tcp_mem_pressure: int
    tcp_mem_max: int
    percent_of_max: float
    under_pressure: bool  # above the pressure threshold: TCP shrinks buffers
    pressures: int | None  # TcpExt TCPMemoryPressures delta (times pressure mode was entered)
    aborts_on_memory: int | None  # TcpExt TCPAbortOnMemory delta (connections reset for lack of memory)
    orphans: int | None  # sockstat TCP orphan
    tcp_max_orphans: int | None


@record
class OwnerFds(Record):
    endpoint: str
    pid: int
    command: str
    open_fds: int | None
    fd_limit: int | None


@record
class FileHandleFacts(Record):
    """Host-wide file handles (/proc/sys/fs/file-nr) against fs.file-max; beside it, each listener owner's
    own RLIMIT_NOFILE (whichever is hit first makes accept() fail: ENFILE host-wide, EMFILE per process)."""

    allocated: int
    file_max: int
    percent: float
    owners: tuple[OwnerFds, ...]
