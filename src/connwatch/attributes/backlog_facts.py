"""The facts the backlog explanations read (attributes/backlog.py measures them, explain/backlog.py
words them). Field order is the JSON `detail` order of the alert (a contract)."""

from __future__ import annotations

from connwatch.attributes.accept_facts import AcceptFacts
from connwatch.record import Record, record


@record
class OwnerFacts(Record):
    pid: int
    command: str
    cmdline: str
    user: str | None
    started_at: float | None
    age_s: float | None
    open_fds: int | None
    fd_limit: int | None


@record
class ListenerFacts(Record):
    endpoint: str
    family: int
    queue: int
    backlog: int | None
    fill: float | None
    drops_total: int | None
    drops_delta: int | None
    inode: int
    owner: OwnerFacts | None


@record
class Reconciliation(Record):
    """Host ListenDrops/ListenOverflows deltas against what the per-listener counters explain."""

    host_listen_drops: int | None
    host_listen_overflows: int | None
    attributed: int | None  # rejections attributed to live listeners (never null when sock_diag worked)
    unattributed: int | None  # the namespace's rejections no live listener explains (never clamped)
    host_syn_queue_drops: int | None
    host_deferred_accept_drops: int | None
    listener_drops: int | None  # SK_MEMINFO_DROPS delta summed over every listener


@record
class BacklogContext(Record):
    interval_s: float | None  # None: a single capture, counters since boot
    somaxconn: int | None
    rejecting_ports: tuple[int, ...]
    reconciliation: Reconciliation
    tcp_syncookies: int | None
    tcp_abort_on_overflow: int | None
    platform: str
    stuck_ports: tuple[int, ...]  # ports with an accept queue full at the last sample


@record
class PortFacts(BacklogContext):
    port: int
    listeners: tuple[ListenerFacts, ...]
    queue_full_now: bool


@record
class RejectFacts(Record):
    """What the port's backlog turned away (attributes/rejects.py says how it is split)."""

    accept_queue_overflows: int
    syn_queue_drops: int
    syn_time: int | None
    ack_time: int | None


@record
class NotRejections(Record):
    """Listener drops that are not rejections."""

    deferred_accept: int
    double_counted: int
    other: int


@record
class PortRejectFacts(PortFacts):
    rate_per_s: float | None
    rejects: RejectFacts
    not_rejections: NotRejections
    listener_drops: int  # the raw SK_MEMINFO_DROPS delta of the port
    half_open: int  # SYN_RECV sockets of the port (larger of the two samples)
    cookies_sent: int  # SYNs of the port answered with syncookies
    resets_sent: int  # clients reset by tcp_abort_on_overflow=1
    syn_retry_times: tuple[float, ...]  # when a Linux client with this host's settings re-sends its SYN
    syn_give_up_s: float  # when its connect() fails with ETIMEDOUT
    accept: AcceptFacts | None = None  # is the owner accepting (verdict, rates, sizing); None: no inodes


@record
class CookieFacts(BacklogContext):
    port: int | None  # None: not attributable to a port (the flood ended before the sample)
    cookies: int
    half_open: int
    syn_backlog: int | None
    rate_per_s: float | None


@record
class HostFacts(BacklogContext):
    counter: str
    cookies_sent: int | None
    rate_per_s: float | None
