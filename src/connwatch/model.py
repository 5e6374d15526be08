"""The frozen data model that flows one way: sources -> model -> attributes -> rules -> alerts.

`None` always means "not available from the sources we had", never zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum


class TcpState(IntEnum):
    """TCP states as numbered in include/net/tcp_states.h."""

    ESTABLISHED = 1
    SYN_SENT = 2
    SYN_RECV = 3
    FIN_WAIT1 = 4
    FIN_WAIT2 = 5
    TIME_WAIT = 6
    CLOSE = 7
    CLOSE_WAIT = 8
    LAST_ACK = 9
    LISTEN = 10
    CLOSING = 11
    NEW_SYN_RECV = 12

    @classmethod
    def name_of(cls, number: int) -> str:
        try:
            return cls(number).name
        except ValueError:
            return f"STATE_{number}"


# Names indexed by state number, for hot loops (no enum construction per socket).
STATE_NAMES: tuple[str, ...] = tuple(TcpState.name_of(i) for i in range(16))


@dataclass(frozen=True, slots=True)
class Process:
    """The owner of a socket, as far as we could see it."""

    pid: int
    command: str
    cmdline: str = ""
    user: str | None = None
    started_at: float | None = None  # epoch seconds
    open_fds: int | None = None
    fd_limit: int | None = None  # soft RLIMIT_NOFILE
    state: str | None = None  # psutil status: "sleeping", "running", "stopped", "disk-sleep", "zombie", ...


@dataclass(frozen=True, slots=True)
class Listener:
    """One LISTEN socket. Several may share a port (IPv4+IPv6, SO_REUSEPORT, addresses)."""

    family: int  # 4 or 6
    address: str
    port: int
    queue: int  # accept-queue length now (idiag_rqueue)
    backlog: int | None  # backlog in force (idiag_wqueue); None from /proc/net/tcp
    drops: int | None  # SK_MEMINFO_DROPS; None when unavailable
    inode: int
    uid: int
    cookie: int = 0  # sock_diag socket cookie; 0 when read from /proc/net/tcp
    owner: Process | None = None

    @property
    def identity(self) -> tuple[int, int, int, str]:
        """Stable identity across samples (same socket object in the kernel)."""
        return (self.inode, self.cookie, self.port, self.address)

    @property
    def endpoint(self) -> str:
        return f"[{self.address}]:{self.port}" if self.family == 6 else f"{self.address}:{self.port}"


@dataclass(frozen=True, slots=True)
class DestinationUsage:
    """Sockets holding a local (ephemeral) port toward one remote ip:port from one local address."""

    local_address: str
    remote_address: str
    remote_port: int
    states: Mapping[str, int]
    time_wait_young: int = 0  # TIME_WAIT younger than tcp_tw_reuse_delay (not yet reusable)
    owner_inodes: tuple[int, ...] = ()  # inodes of some ESTABLISHED sockets (bounded sample)
    owners: tuple[Process, ...] = ()  # processes holding owner_inodes (inferred: TIME_WAIT has no owner)

    @property
    def total(self) -> int:
        return sum(self.states.values())

    @property
    def destination(self) -> str:
        if ":" in self.remote_address:
            return f"[{self.remote_address}]:{self.remote_port}"
        return f"{self.remote_address}:{self.remote_port}"


@dataclass(frozen=True, slots=True)
class SourceUsage:
    """Sockets from one remote address to one local listening port."""

    source: str
    port: int
    states: Mapping[str, int]

    @property
    def total(self) -> int:
        return sum(self.states.values())


@dataclass(frozen=True, slots=True)
class PortAccepts:
    """Inbound connections of one listening port, split by whether the application accepted them.

    A connection that completed its handshake sits in the listener's accept queue with no file until
    accept() grafts one onto it: sock_diag reports its inode as 0 (net/core/sock.c sock_i_ino(): 0 while
    sk->sk_socket is NULL; net/socket.c do_accept() allocates the socket inode with get_next_ino()).
    """

    port: int
    waiting: int  # ESTABLISHED/CLOSE_WAIT with inode 0: in the accept queue, not accepted yet
    accepted: int  # ESTABLISHED/CLOSE_WAIT with an inode: accepted and still open
    max_inode: int  # the largest inode among the accepted (0 when none)
    inodes: frozenset[int]  # inodes of accepted connections, at most ACCEPT_SAMPLE (all when complete)
    waiting_keys: frozenset[int]  # waiting connections' socket cookies (else peer address+port), bounded
    complete: bool  # inodes and waiting_keys hold every connection (neither bound was reached)
    closed_by_age: tuple[int, ...] = ()  # server-side TIME_WAIT sockets by age in whole seconds (index = s)


@dataclass(frozen=True, slots=True)
class SocketSummary:
    """Aggregates over every non-listening TCP socket, built while parsing (no per-socket objects)."""

    total: int
    by_state: Mapping[str, int]
    destinations: tuple[DestinationUsage, ...] = ()
    sources: tuple[SourceUsage, ...] = ()
    accepts: tuple[PortAccepts, ...] | None = None  # per listening port; None = not counted (no inodes)


@dataclass(frozen=True, slots=True)
class Sysctls:
    """Kernel settings that decide how connections are turned away. None = could not read."""

    somaxconn: int | None = None
    tcp_max_syn_backlog: int | None = None
    tcp_syncookies: int | None = None
    tcp_abort_on_overflow: int | None = None
    ip_local_port_range: tuple[int, int] | None = None
    ip_local_reserved_ports: tuple[tuple[int, int], ...] | None = None
    tcp_tw_reuse: int | None = None
    tcp_tw_reuse_delay: int | None = None  # milliseconds (newer kernels only; None before)
    tcp_max_tw_buckets: int | None = None
    tcp_max_orphans: int | None = None
    tcp_fin_timeout: int | None = None
    tcp_syn_retries: int | None = None  # how often a client re-sends an unanswered SYN
    tcp_syn_linear_timeouts: int | None = None  # retries at 1 s before doubling (kernels since 6.x)
    nf_conntrack_max: int | None = None  # conntrack table size (one global value; read-only in a child netns)
    tcp_mem: tuple[int, int, int] | None = None  # pages: min, pressure, max (host-wide; absent in a child netns)
    file_max: int | None = None  # host-wide file handle limit (third column of /proc/sys/fs/file-nr)


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """How one source fared in this sample."""

    name: str  # e.g. "netlink", "/proc/net/netstat"
    ok: bool
    detail: str = ""
    duration_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class HostInfo:
    hostname: str
    kernel: str = ""
    platform: str = "linux"
    boot_time: float | None = None  # epoch seconds


@dataclass(frozen=True, slots=True)
class Container:
    """A container as named by its cgroup path and, where readable, its runtime's files."""

    runtime: str | None  # "docker", "containerd", "cri-o", "podman"; None when only the id is known
    id: str  # 64 hex digits
    name: str | None = None  # Docker's name, or the Kubernetes container name

    @property
    def label(self) -> str:
        short = self.id[:12]
        if self.name:
            return self.name
        return f"{self.runtime} {short}" if self.runtime else short


@dataclass(frozen=True, slots=True)
class Pod:
    """A Kubernetes pod: uid from the cgroup path, namespace/name from the kubelet's log directory."""

    uid: str
    namespace: str | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace and self.name else self.uid


@dataclass(frozen=True, slots=True)
class NetnsInfo:
    """The network namespace a snapshot was taken in, and what runs there."""

    inode: int  # nsfs inode (readlink /proc/<pid>/ns/net = "net:[inode]")
    name: str | None = None  # `ip netns` name
    container: Container | None = None
    pod: Pod | None = None
    pid: int | None = None  # representative process (lowest pid); None for an `ip netns` without processes
    command: str | None = None  # that process's comm
    own: bool = False  # connwatch's own namespace

    @property
    def key(self) -> str:
        """What alerts in this namespace are keyed by: names that survive a restart where there are any
        ("pod shop/checkout-7d9f (container checkout)", "container web", "netns blue"), else the inode."""
        if self.pod is not None or self.container is not None or self.name:
            return self.label
        return f"netns:[{self.inode}]"

    @property
    def label(self) -> str:
        """"pod shop/checkout-7d9f (container checkout)", "container web", "netns blue",
        else "netns:[4026532278] pid 4242 (nginx)"."""
        if self.pod is not None:
            inner = f" (container {self.container.label})" if self.container is not None else ""
            return f"pod {self.pod.label}{inner}"
        if self.container is not None:
            return f"container {self.container.label}"
        if self.name:
            return f"netns {self.name}"
        who = f" pid {self.pid} ({self.command})" if self.pid is not None else ""
        return f"netns:[{self.inode}]{who}"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one sample saw. Built by collect.py, or loaded from a capture."""

    taken_at: float  # epoch seconds (from the clock passed in)
    monotonic: float  # for intervals between samples of one process
    host: HostInfo
    counters: Mapping[str, int]  # "TcpExt.ListenOverflows", "Tcp.ActiveOpens", ...
    sockstat: Mapping[str, int]  # "TCP.tw", "TCP.orphan", "TCP6.inuse", ...
    sysctls: Sysctls
    listeners: tuple[Listener, ...]
    sockets: SocketSummary | None
    statuses: tuple[SourceStatus, ...] = ()
    limitations: tuple[str, ...] = field(default=())  # what this sample could not see, in words
    netns: NetnsInfo | None = None  # the namespace sampled; None = the reader's own, not enumerated
    conntrack_count: int | None = None  # nf_conntrack_count of this namespace; None: no conntrack here
    conntrack_stats: Mapping[str, int] | None = None  # /proc/net/stat/nf_conntrack summed over CPUs
    files_allocated: int | None = None  # host-wide allocated file handles (first column of file-nr)

    def counter(self, name: str) -> int | None:
        return self.counters.get(name)

    def listeners_on(self, port: int) -> tuple[Listener, ...]:
        return tuple(lst for lst in self.listeners if lst.port == port)
