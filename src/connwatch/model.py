"""The frozen data model that flows one way: sources -> model -> attributes -> rules -> alerts.

`None` always means "not available from the sources we had", never zero.
"""

from __future__ import annotations

import _socket  # (not socket: see sources/netlink.py)
import heapq
from collections.abc import Iterable, Iterator, Mapping

from connwatch.record import Record, field, record

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from connwatch.tcpstate import TcpState as TcpState

# Names indexed by state number, for hot loops (no enum construction per socket): TcpState.name_of(i) of
# 0..15 (tests/unit/test_tcpstate.py), written out so that a sample does not load enum (see tcpstate.py)
STATE_NAMES: tuple[str, ...] = (
    "STATE_0", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE", "CLOSE_WAIT",
    "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV", "STATE_13", "STATE_14", "STATE_15")
_STATE_NUMBERS = {name: i for i, name in enumerate(STATE_NAMES) if not name.startswith("STATE_")}


def __getattr__(name: str) -> object:
    """TcpState, now in tcpstate.py, still importable from here; loaded when first asked for."""
    if name == "TcpState":
        from connwatch.tcpstate import TcpState

        return TcpState
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@record
class Process(Record):
    """The owner of a socket, as far as we could see it."""

    pid: int
    command: str
    cmdline: str = ""
    user: str | None = None
    started_at: float | None = None  # epoch seconds
    open_fds: int | None = None
    fd_limit: int | None = None  # soft RLIMIT_NOFILE
    state: str | None = None  # psutil status: "sleeping", "running", "stopped", "disk-sleep", "zombie", ...


@record
class Listener(Record):
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


def fill_percent(lst: Listener) -> float | None:
    """Accept-queue fill; the kernel admits one beyond the backlog, so a full queue reads above 100 %.
    (Here, not in attributes/backlog.py, so that listing listeners does not load the rules.)"""
    if lst.backlog is None:
        return None
    return round(100.0 * lst.queue / max(lst.backlog, 1), 1)


@record
class DestinationUsage(Record):
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


@record
class SourceUsage(Record):
    """Sockets from one remote address to one local listening port."""

    source: str
    port: int
    states: Mapping[str, int]

    @property
    def total(self) -> int:
        return sum(self.states.values())


# Per-source state counts packed in one int (SourceTable values): a 32-bit field per state, the commonest
# states in the low fields so that most values stay small ints. A field cannot overflow: it counts
# sockets, and no host holds 2**32 of them.
_FIELD_BITS = 32
_FIELD_MASK = (1 << _FIELD_BITS) - 1
_SLOT_STATES = (6, 1, 8, 3, 4, 5, 9, 11, 7, 2, 10, 12, 0)  # TIME_WAIT, ESTABLISHED, CLOSE_WAIT, SYN_RECV, ...
_SLOT_NAMES = tuple(STATE_NAMES[s] for s in _SLOT_STATES)
# STATE_UNIT[state number] is added to a packed value per socket in that state (unknown states: STATE_0)
STATE_UNIT: tuple[int, ...] = tuple(1 << (_FIELD_BITS * _SLOT_STATES.index(s if s in _SLOT_STATES else 0))
                                    for s in range(256))
_V4MAPPED = b"\x00" * 10 + b"\xff\xff"


def held(packed: int) -> int:
    """ESTABLISHED + CLOSE_WAIT sockets in a packed value (fields 1 and 2)."""
    return ((packed >> 32) & _FIELD_MASK) + ((packed >> 64) & _FIELD_MASK)


def half_open(packed: int) -> int:
    """SYN_RECV sockets in a packed value (field 3)."""
    return (packed >> 96) & _FIELD_MASK


def packed_total(packed: int) -> int:
    """All sockets in a packed value."""
    if packed <= _FIELD_MASK:
        return packed  # TIME_WAIT only: the common case
    total = 0
    while packed:
        total += packed & _FIELD_MASK
        packed >>= _FIELD_BITS
    return total


_BY_STATE_NUMBER = sorted(range(len(_SLOT_STATES)), key=lambda slot: _SLOT_STATES[slot])


def state_counts(packed: int) -> dict[str, int]:
    """A packed value as {state name: sockets}, the states present only, in state-number order."""
    out = {}
    for slot in _BY_STATE_NUMBER:
        n = (packed >> (_FIELD_BITS * slot)) & _FIELD_MASK
        if n:
            out[_SLOT_NAMES[slot]] = n
    return out


def pack_states(states: Mapping[str, int]) -> int:
    """The inverse of state_counts (names of unknown states count as STATE_0); ValueError for a count
    outside 0..2**32-1."""
    if any(not 0 <= n <= _FIELD_MASK for n in states.values()):
        raise ValueError(f"socket counts must be 0..{_FIELD_MASK}: {dict(states)}")
    return sum(n * STATE_UNIT[_STATE_NUMBERS.get(k, 0)] for k, n in states.items())


def address_key(family: int, raw: bytes) -> bytes:
    """16 raw address bytes as a SourceTable key: 4 bytes for IPv4 (IPv4-mapped IPv6 too), else 16."""
    if family == _socket.AF_INET:
        return raw[:4]
    return raw[12:] if raw[:12] == _V4MAPPED else raw


def address_text(key: bytes) -> str:
    return _socket.inet_ntop(_socket.AF_INET if len(key) == 4 else _socket.AF_INET6, key)


def text_key(address: str) -> bytes:
    """An address as text -> its SourceTable key; ValueError when it is not an IP address."""
    try:
        if ":" in address:
            return address_key(_socket.AF_INET6, _socket.inet_pton(_socket.AF_INET6, address))
        return _socket.inet_pton(_socket.AF_INET, address)
    except OSError as exc:
        raise ValueError(f"{address!r} is not an IP address") from exc


@record
class SourceTable(Record):
    """Sockets per (remote address, local listening port), compact for 100k+ sources: per port,
    {address key (address_key) -> packed state counts (state_counts)}. Built while decoding; SourceUsage
    objects are made only when iterated (for a few rows: attributes/sources.py reads the ints)."""

    by_port: Mapping[int, Mapping[bytes, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, usages: Iterable[SourceUsage]) -> SourceTable:
        by_port: dict[int, dict[bytes, int]] = {}
        for u in usages:
            addrs = by_port.setdefault(u.port, {})
            key = text_key(u.source)
            addrs[key] = addrs.get(key, 0) + pack_states(u.states)
        return cls(by_port)

    def __iter__(self) -> Iterator[SourceUsage]:
        for port, addrs in self.by_port.items():
            for key, packed in addrs.items():
                yield SourceUsage(address_text(key), port, state_counts(packed))

    def __len__(self) -> int:
        return sum(len(a) for a in self.by_port.values())

    def busiest(self, n: int) -> list[SourceUsage]:
        """The n with the most sockets (ties: address text, then port), as sorting every SourceUsage by
        (-total, source, port) would give; text is made only for entries at or above the n-th total."""
        cut = heapq.nlargest(n, (packed_total(v) for a in self.by_port.values() for v in a.values()))
        if not cut:
            return []
        best = heapq.nsmallest(n, ((-t, address_text(k), p) for p, a in self.by_port.items()
                                   for k, v in a.items() if (t := packed_total(v)) >= cut[-1]))
        return [SourceUsage(src, p, state_counts(self.by_port[p][text_key(src)])) for _, src, p in best]


@record
class PortAccepts(Record):
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


@record
class SocketSummary(Record):
    """Aggregates over every non-listening TCP socket, built while parsing (no per-socket objects)."""

    total: int
    by_state: Mapping[str, int]
    destinations: tuple[DestinationUsage, ...] = ()
    sources: SourceTable = field(default_factory=SourceTable)
    accepts: tuple[PortAccepts, ...] | None = None  # per listening port; None = not counted (no inodes)
    # Only the sockets on listening ports were dumped (a pair's first sample, CollectOptions.inbound_only):
    # total and by_state count those alone, and there are no destinations.
    inbound_only: bool = False


@record
class Sysctls(Record):
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


@record
class SourceStatus(Record):
    """How one source fared in this sample."""

    name: str  # e.g. "netlink", "/proc/net/netstat"
    ok: bool
    detail: str = ""
    duration_ms: float = 0.0


@record
class HostInfo(Record):
    """The host a snapshot was taken on."""

    hostname: str
    kernel: str = ""
    platform: str = "linux"
    boot_time: float | None = None  # epoch seconds


@record
class Container(Record):
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


@record
class Pod(Record):
    """A Kubernetes pod: uid from the cgroup path, namespace/name from the kubelet's log directory."""

    uid: str
    namespace: str | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace and self.name else self.uid


@record
class NetnsInfo(Record):
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


@record
class Snapshot(Record):
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
