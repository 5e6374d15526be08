"""One Snapshot per network namespace: the `--netns all|NAME|PID|PATH` selector, sampling inside a
namespace, and the listener-only poll across many namespaces.

Each namespace is sampled by collect.sample() on a short-lived thread that entered it (setns):
its sock_diag socket, /proc/thread-self/net/* and /proc/sys/net/* are then that namespace's.
Owners come from one fd scan for all namespaces (socket inodes are unique host-wide).
A namespace that vanishes before it is entered gives a snapshot with a failed "network
namespace" source and no data, never an exception; once entered, the open fd keeps it alive.
"""

from __future__ import annotations

import _socket  # (not socket: see sources/netlink.py)
import os
import time
from collections.abc import Callable, Iterable

from connwatch.clock import Clock
from connwatch.collect import SKMEMINFO_EXT, CollectOptions, listener_order, netlink_listeners, sample
from connwatch.collect_owners import attach_owners
from connwatch.collect_quiet import close_probe, idle_listeners, open_probe, read_probe, read_rest
from connwatch.errors import ParseError, SelectorError, SourceUnavailable
from connwatch.model import HostInfo, Listener, NetnsInfo, Snapshot, SourceStatus, Sysctls
from connwatch.parsers.sock_diag_listeners import MemoListenerDecoder
from connwatch.perf import startup_over
from connwatch.record import Record, record, replace
from connwatch.sources import netlink
from connwatch.sources.procfs import ProcFS, ThreadNetProcFS, read_host

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:  # (the namespace and container code loads only where another namespace is looked for)
    from concurrent.futures import ThreadPoolExecutor
    from typing import Literal

    from connwatch.sources.containers import NamingRoots
    from connwatch.sources.netns import NetnsList, NetnsRef

    SelectorKind = Literal["all", "own", "name", "pid", "path"]

MAX_POLL_WORKERS = 4  # threads of one listener poll (the kernel walks run in parallel on free cores)
MIN_PER_WORKER = 8  # namespaces per thread at least: below that a thread hand-off costs more than it saves
NETNS_SOURCE = "network namespace"  # SourceStatus name of entering a namespace (one fixed label)


@record
class NetnsSelector(Record):
    """Which namespaces to sample: every one, an `ip netns`/container/pod name, a pid's, a path's."""

    kind: SelectorKind
    value: str = ""


def parse_selector(text: str) -> NetnsSelector:
    """`--netns` value -> NetnsSelector: "all"; digits = a PID; starting with "/" or "." = a PATH
    (/run/netns/NAME, /proc/PID/ns/net, /run/docker/netns/ID); anything else = a NAME (an `ip netns`
    name, a container name or id prefix, a pod name or namespace/name). SelectorError when empty."""
    value = text.strip()
    if not value:
        raise SelectorError("--netns: empty value (use all, a NAME, a PID or a PATH)")
    if value == "all":
        return NetnsSelector("all")
    if value in ("own", "self"):
        return NetnsSelector("own")
    if value.isdigit():
        if int(value) == 0:
            raise SelectorError("--netns 0: not a process id")
        return NetnsSelector("pid", str(int(value)))
    if value.startswith(("/", ".")):
        return NetnsSelector("path", value)
    return NetnsSelector("name", value)


def _names_of(info: NetnsInfo) -> set[str]:
    names = {info.name} if info.name else set()
    if info.container is not None:
        names |= {info.container.id, info.container.id[:12]} | ({info.container.name} if info.container.name else set())
    if info.pod is not None:
        names.add(info.pod.uid)
        if info.pod.name:
            names |= {info.pod.name, info.pod.label}
    return names


def _target_inode(selector: NetnsSelector, proc_root: str) -> int:
    """The nsfs inode a PID or PATH selector points at; SelectorError naming why not."""
    from connwatch.sources.netns import ns_inode_of_link

    where = f"{proc_root}/{selector.value}/ns/net" if selector.kind == "pid" else selector.value
    try:
        if selector.kind == "pid":
            inode = ns_inode_of_link(os.readlink(where))
        else:
            st, nsfs = os.stat(where), os.stat(f"{proc_root}/self/ns/net")
            inode = st.st_ino if st.st_dev == nsfs.st_dev else None
    except FileNotFoundError:
        raise SelectorError(f"--netns {selector.value}: no such {selector.kind}") from None
    except OSError as exc:
        raise SelectorError(f"--netns {selector.value}: {where}: {exc.strerror} (needs root)") from None
    if inode is None:
        raise SelectorError(f"--netns {selector.value}: {where} is not a network namespace")
    return inode


def select(found: list[tuple[NetnsRef, NetnsInfo]], selector: NetnsSelector,
           proc_root: str = "/proc") -> list[tuple[NetnsRef, NetnsInfo]]:
    """The enumerated namespaces the selector picks (at least one), or SelectorError."""
    if selector.kind == "all":
        return found
    if selector.kind == "own":
        return [x for x in found if x[0].own][:1] or found[:1]
    if selector.kind == "name":
        chosen = [x for x in found if selector.value in _names_of(x[1])]
        if not chosen:
            known = sorted({n for _, info in found for n in _names_of(info) if len(n) < 40})
            raise SelectorError(f"--netns {selector.value}: no network namespace, container or pod of that "
                                f"name (known: {', '.join(known[:20]) or 'none'})")
        return chosen
    inode = _target_inode(selector, proc_root)
    chosen = [x for x in found if x[0].inode == inode]
    if not chosen:
        raise SelectorError(f"--netns {selector.value}: network namespace net:[{inode}] is not visible "
                            "to this user (needs root)")
    return chosen


def _vanished(clock: Clock, opts: CollectOptions, info: NetnsInfo, exc: SourceUnavailable,
              ms: float) -> Snapshot:
    return Snapshot(
        taken_at=clock.time(), monotonic=clock.monotonic(), host=read_host(ProcFS(opts.proc_root)),
        counters={}, sockstat={}, sysctls=Sysctls(), listeners=(), sockets=None,
        statuses=(SourceStatus(NETNS_SOURCE, False, str(exc), ms),),
        limitations=(f"{info.label} could not be sampled ({exc.reason}): nothing is reported for it",),
        netns=info,
    )


def collect_netns(clock: Clock, opts: CollectOptions, ref: NetnsRef, info: NetnsInfo) -> Snapshot:
    """A full sample (without owners) of one namespace, taken inside it; the own one on this thread."""
    return collect_many(clock, opts, [(ref, info)])[0]


def collect_many(clock: Clock, opts: CollectOptions, chosen: list[tuple[NetnsRef, NetnsInfo]]) -> list[Snapshot]:
    """Full samples (without owners) of these namespaces, in order: the own one on this thread, the
    others on one short-lived thread that enters each in turn. Never raises for a namespace that is
    gone: its snapshot says so."""
    from connwatch.sources.netns import open_netns, run_in_each

    inner = replace(opts, one_walk=True)
    out: dict[int, Snapshot] = {}
    fds: list[tuple[int, int, NetnsInfo]] = []  # (position, fd, info)
    host = read_host(ProcFS(opts.proc_root))  # the host's (not the network namespace's): read once for all
    for pos, (ref, info) in enumerate(chosen):
        if ref.own:
            out[pos] = replace(_sample(clock, opts, False, ref.inode, host), netns=info)
            continue
        try:
            fds.append((pos, open_netns(ref, opts.proc_root), info))
        except SourceUnavailable as exc:
            out[pos] = _vanished(clock, opts, info, exc, 0.0)

    inode_of = {fd: info.inode for _, fd, info in fds}

    def inside(fd: int) -> tuple[Snapshot, float]:
        start = time.perf_counter()
        return _sample(clock, inner, True, inode_of[fd], host), _ms(start)

    try:
        results = run_in_each([fd for _, fd, _ in fds], inside)
    finally:
        for _, fd, _ in fds:
            os.close(fd)
    for (pos, _, info), result in zip(fds, results, strict=True):
        if isinstance(result, SourceUnavailable):
            out[pos] = _vanished(clock, opts, info, result, 0.0)
            continue
        snap, ms = result
        entered = SourceStatus(NETNS_SOURCE, True, info.label, ms)
        out[pos] = replace(snap, statuses=(entered, *snap.statuses), netns=info)
    return [out[pos] for pos in range(len(chosen))]


def _sample(clock: Clock, opts: CollectOptions, thread: bool, key: int, host: HostInfo) -> Snapshot:
    """sample() through /proc as the calling thread sees it (`thread`: a thread inside another namespace);
    the agent's (opts.time_wait set) skips the walk of a namespace proven to hold only its listeners
    (collect_quiet.py) and does not parse again a counter file that reads as last time (ProcFS.memo); so does
    a pair's second sample for a namespace whose first held only its listeners (opts.empty_before)."""
    cache = opts.time_wait.get(key) if opts.time_wait is not None else None
    memo = cache.parsed if cache is not None else None
    proc = ThreadNetProcFS(opts.proc_root, memo) if thread else ProcFS(opts.proc_root, memo=memo)
    if cache is None or not opts.sockets:
        proof = opts.empty_before.get(key) if opts.empty_before is not None and opts.sockets else None
        if proof is not None:  # (a pair's second sample: check)
            from connwatch.collect_quiet import sample_after_empty

            return sample_after_empty(clock, opts, proc, key, proof, host)
        return sample(clock, opts, proc, key, host)
    from connwatch.collect_quiet import sample_quietly

    return sample_quietly(clock, opts, proc, key, cache, host)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


def discover(opts: CollectOptions, run_root: str = "/run", naming: NamingRoots | None = None,
             privileged: bool | None = None) -> tuple[list[tuple[NetnsRef, NetnsInfo]], NetnsList]:
    """Every visible namespace with its NetnsInfo (container, pod, names)."""
    from connwatch.sources.containers import NamingRoots, describe_netns, read_kube_names
    from connwatch.sources.netns import enumerate_netns

    listing = enumerate_netns(opts.proc_root, run_root, privileged)
    naming = naming or NamingRoots(proc=opts.proc_root)
    kube = read_kube_names(naming.logs)
    return [(ref, describe_netns(ref, naming, kube)) for ref in listing.namespaces], listing


def present_keys(found: list[tuple[NetnsRef, NetnsInfo]], listing: NetnsList) -> frozenset[str] | None:
    """The key (NetnsInfo.key) of every namespace on the host, for engine.retire_vanished; None when the
    listing is not complete (without CAP_SYS_ADMIN only the own namespace is seen)."""
    return None if listing.limitations else frozenset(info.key for _ref, info in found)


def collect_all(clock: Clock, opts: CollectOptions | None = None, selector: NetnsSelector | str = "all",
                run_root: str = "/run", naming: NamingRoots | None = None) -> list[Snapshot]:
    """One Snapshot per selected network namespace (own first), each with `netns` set.

    A copied /proc tree has no namespaces to enter: then only collect()'s own-namespace sample.
    SelectorError when the selector matches nothing.
    """
    return collect_listed(clock, opts, selector, run_root, naming)[0]


def collect_listed(clock: Clock, opts: CollectOptions | None = None, selector: NetnsSelector | str = "all",
                   run_root: str = "/run", naming: NamingRoots | None = None
                   ) -> tuple[list[Snapshot], frozenset[str] | None]:
    """collect_all(), and present_keys() of its listing (None: no listing, for `--netns own` or a copied tree)."""
    startup_over()  # (a command's first sample: its start-up is over)
    opts = opts or CollectOptions()
    chosen_sel = parse_selector(selector) if isinstance(selector, str) else selector
    if not ProcFS(opts.proc_root).is_live or chosen_sel.kind == "own":
        snap = sample(clock, opts, ProcFS(opts.proc_root))
        if not opts.owners:
            return [snap], None
        return attach_owners([snap], opts.proc_root, opts.destination_owners, opts.owner_hints), None
    found, listing = discover(opts, run_root, naming)
    chosen = select(found, chosen_sel, opts.proc_root)
    return collect_selected(clock, opts, chosen, listing), present_keys(found, listing)


def collect_selected(clock: Clock, opts: CollectOptions, chosen: list[tuple[NetnsRef, NetnsInfo]],
                     listing: NetnsList) -> list[Snapshot]:
    """collect_all() of namespaces already discovered and selected (the agent discovers once per sample)."""
    snaps = collect_many(clock, replace(opts, owners=False), chosen)
    if listing.limitations:
        snaps = [replace(s, limitations=(*s.limitations, *listing.limitations)) for s in snaps]
    return attach_owners(snaps, opts.proc_root, opts.destination_owners, opts.owner_hints) if opts.owners else snaps


Made = tuple[_socket.socket, tuple[int, ...] | None]  # a namespace's poll socket and probe files


def _socket_or_error(proc_root: str) -> Callable[[int], Made | SourceUnavailable]:
    def inside(_fd: int) -> Made | SourceUnavailable:
        try:
            return netlink.open_socket(), open_probe(proc_root)
        except SourceUnavailable as exc:
            return exc

    return inside


REUSE_MAX_S = 60.0  # a namespace's LISTEN dump serves polls and full samples for at most this long


class NetnsListenerPoller:
    """The listener-only poll across namespaces: one sock_diag socket per namespace, created inside it
    (all on one short-lived thread) and kept open, so a poll is one LISTEN dump per namespace with no
    setns at all.

    The kernel walks its host-wide listening hash for every dump, whatever the namespace, so the
    poll costs namespaces x all listeners on the host: one legacy dump (both families in one walk)
    per namespace instead of two; two when the kernel refuses the legacy request. Measured on 6.18
    with 5,000 listeners on the host: ~190 us per dump against ~24 us with none, so 100 namespaces of
    50 listeners cost ~19 ms of kernel time per poll, whatever is done in Python. That walk runs in
    the send() of the dump request with the GIL released, so the namespaces are split over `workers`
    threads (kept for the poller's life; they never change namespace) and the walks run on several
    cores at once where the host has them free.

    A kept socket keeps its namespace alive: refresh() with each new enumeration closes the sockets
    of namespaces that are gone, so a vanished container's namespace is released, not polled.
    """

    def __init__(self, proc_root: str = "/proc", workers: int | None = None,
                 min_per_worker: int = MIN_PER_WORKER, clock: Callable[[], float] = time.monotonic) -> None:
        self.proc_root = proc_root
        self.workers = max(1, min(workers if workers is not None else (os.cpu_count() or 1), MAX_POLL_WORKERS))
        self.min_per_worker = max(1, min_per_worker)
        self._pool: ThreadPoolExecutor | None = None
        self._socks: dict[int, _socket.socket] = {}
        self.failures: dict[int, str] = {}  # inode -> why its socket could not be made
        self.legacy = True  # one TCPDIAG_GETSOCK dump per namespace; False after the kernel refused it
        self._memo: dict[int, dict[bytes, Listener]] = {}  # inode -> last poll's replies (unchanged = reused)
        self._probes: dict[int, tuple[int, ...] | None] = {}  # inode -> its probe files (collect_quiet.py)
        self._last: dict[int, tuple[bytes, tuple[Listener, ...]]] = {}  # inode -> (probe before, listeners)
        self._last_at: dict[int, float] = {}  # inode -> monotonic time of the dump that made its _last
        self.reused = 0  # polls of a namespace answered without a dump
        self.clock = clock

    def refresh(self, refs: Iterable[NetnsRef]) -> None:
        from connwatch.sources.netns import open_netns, run_in_each

        wanted = {ref.inode: ref for ref in refs}
        for inode in [i for i in self._socks if i not in wanted]:
            self._socks.pop(inode).close()
            self._memo.pop(inode, None)
            self._last.pop(inode, None)
            self._last_at.pop(inode, None)
            close_probe(self._probes.pop(inode, None))
        self.failures = {i: why for i, why in self.failures.items() if i in wanted}
        fds: list[tuple[int, int]] = []  # (inode, fd) of namespaces new to the poller
        for inode, ref in wanted.items():
            if inode in self._socks:
                continue
            try:
                if ref.own:
                    self._socks[inode] = netlink.open_socket()
                else:
                    fds.append((inode, open_netns(ref, self.proc_root)))
            except SourceUnavailable as exc:
                self.failures[inode] = str(exc)
        try:
            made = run_in_each([fd for _, fd in fds], _socket_or_error(self.proc_root))
        finally:
            for _, fd in fds:
                os.close(fd)
        for (inode, _), got in zip(fds, made, strict=True):
            if isinstance(got, SourceUnavailable):
                self.failures[inode] = str(got)
            else:
                self._socks[inode], self._probes[inode] = got

    def probe_all(self) -> dict[int, bytes]:
        """Each namespace's probe now (collect_quiet.read_probe): read before a full sample, for adopt()."""
        return {inode: p for inode, fds in self._probes.items() if fds and (p := read_probe(fds)) is not None}

    def rest_all(self) -> dict[int, bytes]:
        """Each namespace's collect_quiet.read_rest now (agent/quiet.py)."""
        return {inode: r for inode, fds in self._probes.items() if fds and (r := read_rest(fds)) is not None}

    def adopt(self, inode: int, probe: bytes, listeners: tuple[Listener, ...]) -> None:
        """A full sample's LISTEN dump of a namespace whose probe was read before it: the next polls answer
        from it while the probe stands, as from a dump of their own (_listeners), instead of dumping all
        namespaces again after every full sample (100 namespaces: ~30 ms of CPU per sample). The listeners
        known() gave that sample (no dump) keep the time of the dump that made them."""
        if inode in self._socks and idle_listeners(probe, listeners):
            last = self._last.get(inode)
            if last is None or last[1] is not listeners:
                self._last_at[inode] = self.clock()
            self._last[inode] = (probe, listeners)
        else:
            self._last.pop(inode, None)

    def known(self, probes: dict[int, bytes]) -> dict[int, tuple[Listener, ...]]:
        """Each namespace's listeners that a full sample can take instead of a LISTEN dump (probe_all's probes,
        read before it): those of its last dump while its probe reads as just before that dump, which is at most
        REUSE_MAX_S old (so a namespace is dumped at least that often: what no probe shows, e.g. a listener
        closed and another opened between two samples with no segment, is seen then). Measured (100 namespaces
        of 50 listeners, 5,000 on the host): a LISTEN dump ~0.5 ms of CPU (most of it the kernel's walk of the
        host-wide listening hash) per namespace and sample."""
        return {inode: got for inode, probe in probes.items() if (got := self._still(inode, probe)) is not None}

    def _still(self, inode: int, probe: bytes | None) -> tuple[Listener, ...] | None:
        """The namespace's last dumped listeners while `probe` reads as just before that dump, at most
        REUSE_MAX_S old; else None."""
        last = self._last.get(inode)
        if probe is None or last is None or probe != last[0]:
            return None
        return last[1] if self.clock() - self._last_at[inode] < REUSE_MAX_S else None

    def poll(self) -> dict[int, tuple[Listener, ...] | None]:
        """inode -> its listeners now; None for a namespace whose socket or dump failed."""
        out: dict[int, tuple[Listener, ...] | None] = dict.fromkeys(self.failures)
        items = list(self._socks.items())
        shares = min(self.workers, len(items) // self.min_per_worker) or 1
        if shares > 1:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor  # (threads only for the agent's poll)

                self._pool = ThreadPoolExecutor(self.workers - 1, thread_name_prefix="connwatch-poll")
            others = [self._pool.submit(self._poll_some, items[i::shares]) for i in range(1, shares)]
            results = [self._poll_some(items[0::shares]), *(f.result() for f in others)]
        else:
            results = [self._poll_some(items)]
        for got in results:
            for inode, listeners, problem in got:
                out[inode] = listeners
                if problem is None:
                    self.failures.pop(inode, None)
                else:
                    self.failures[inode] = problem
        return out

    def _poll_some(self, items: list[tuple[int, _socket.socket]]
                   ) -> list[tuple[int, tuple[Listener, ...] | None, str | None]]:
        got: list[tuple[int, tuple[Listener, ...] | None, str | None]] = []
        for inode, sock in items:
            try:
                got.append((inode, self._listeners(inode, sock), None))
            except (SourceUnavailable, ParseError) as exc:
                got.append((inode, None, str(exc)))
        return got

    def _listeners(self, inode: int, sock: _socket.socket) -> tuple[Listener, ...]:
        """The namespace's listeners: the last dump's when its probe proves nothing changed (collect_quiet.py)."""
        fds = self._probes.get(inode)
        probe = read_probe(fds) if fds else None
        if (still := self._still(inode, probe)) is not None:
            self.reused += 1
            return still
        listeners = self._dump(inode, sock)
        if probe is not None and idle_listeners(probe, listeners):
            self._last[inode] = (probe, listeners)
            self._last_at[inode] = self.clock()
        else:
            self._last.pop(inode, None)
        return listeners

    def _dump(self, inode: int, sock: _socket.socket) -> tuple[Listener, ...]:
        if self.legacy:
            decoder = MemoListenerDecoder([], self._memo.get(inode, {}), {})
            try:
                netlink.dump_both_families(sock, netlink.TCPF_LISTEN, SKMEMINFO_EXT, decoder)
            except SourceUnavailable:
                self.legacy = False
            else:
                self._memo[inode] = decoder.seen
                return tuple(sorted(decoder.listeners, key=listener_order))  # (a full sample's order)
        return tuple(sorted(netlink_listeners(sock, []), key=listener_order))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for sock in self._socks.values():
            sock.close()
        self._socks.clear()
        for fds in self._probes.values():
            close_probe(fds)
        self._probes.clear()
