"""The facts the backlog explanations read (attributes/backlog.py measures them, explain/backlog.py
words them). Field order is the JSON `detail` order of the alert (a contract)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OwnerFacts:
    pid: int
    command: str
    cmdline: str
    user: str | None
    started_at: float | None
    age_s: float | None
    open_fds: int | None
    fd_limit: int | None


@dataclass(frozen=True, slots=True)
class ListenerFacts:
    endpoint: str
    family: int
    queue: int
    backlog: int | None
    fill: float | None
    drops_total: int | None
    drops_delta: int | None
    inode: int
    owner: OwnerFacts | None


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """Host ListenDrops/ListenOverflows deltas against what the per-listener counters explain."""

    host_listen_drops: int | None
    host_listen_overflows: int | None
    attributed: int | None
    unattributed: int | None


@dataclass(frozen=True, slots=True)
class BacklogContext:
    interval_s: float | None  # None: a single capture, counters since boot
    somaxconn: int | None
    rejecting_ports: tuple[int, ...]
    reconciliation: Reconciliation
    tcp_syncookies: int | None
    tcp_abort_on_overflow: int | None
    platform: str


@dataclass(frozen=True, slots=True)
class PortFacts(BacklogContext):
    port: int
    listeners: tuple[ListenerFacts, ...]
    queue_full_now: bool


@dataclass(frozen=True, slots=True)
class PortRejectFacts(PortFacts):
    rate_per_s: float | None


@dataclass(frozen=True, slots=True)
class HostFacts(BacklogContext):
    counter: str
    cookies_sent: int | None
    rate_per_s: float | None
