"""Network namespaces: find every one on the host, and run code inside one.

Enumeration (kernel-facts.md, "Network namespaces"): the nsfs inode of /proc/<pid>/ns/net
(readlink gives "net:[INODE]"), the bind mounts of `ip netns` (/run/netns/NAME) and Docker
(/run/docker/netns/ID), whose stat().st_ino is the same nsfs inode; deduplicated by inode.

Entering: setns(2) moves only the calling thread, so code runs on a short-lived thread that calls
setns(fd, CLONE_NEWNET) first. A socket stays bound to the namespace it was created in, and
/proc/sys/net and /proc/thread-self/net show the calling thread's namespace.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from connwatch.errors import SourceUnavailable
from connwatch.record import Record, record
from connwatch.sources.procfs import path_text

# No dataclasses, pathlib, re or typing here: `--netns all` (the default as root) loads this module before its
# first read of the kernel, and those four brought inspect, ast, dis, tokenize, fnmatch, urllib and sre with
# them (snapshot --netns all: 87-102 ms of imports under -X importtime, 44-46 ms with --netns own; issue 17)
TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from pathlib import Path
    from typing import TypeVar

    T = TypeVar("T")
CLONE_NEWNET = 0x40000000
CAP_SYS_ADMIN = 21
BIND_MOUNT_DIRS = ("netns", "docker/netns")  # under the run root: `ip netns`, Docker


@record
class NetnsRef(Record):
    """One network namespace as found: how to enter it and who lives there."""

    inode: int  # nsfs inode: the namespace's identity while it exists
    pids: tuple[int, ...] = ()  # processes whose main thread is in it, ascending
    paths: tuple[str, ...] = ()  # bind mounts: /run/netns/NAME, /run/docker/netns/ID
    name: str | None = None  # the `ip netns` name, when it has one
    own: bool = False  # the reader's (connwatch's) own namespace

    @property
    def pid(self) -> int | None:
        """The representative process: the lowest pid seen in the namespace."""
        return self.pids[0] if self.pids else None

    @property
    def label(self) -> str:
        return f"netns:[{self.inode}]" + (f" ({self.name})" if self.name else "")


@record
class NetnsList(Record):
    namespaces: tuple[NetnsRef, ...]  # the own namespace first, then by inode
    limitations: tuple[str, ...] = ()


def ns_inode_of_link(target: str) -> int | None:
    """"net:[4026531840]" -> 4026531840; anything else -> None (what the regex net:\\[([0-9]+)\\] matched)."""
    digits = target[5:-1]
    if target.startswith("net:[") and target.endswith("]") and digits.isascii() and digits.isdigit():
        return int(digits)
    return None


def can_enter_namespaces(proc_root: str | Path = "/proc") -> bool:
    """True when this process holds CAP_SYS_ADMIN (setns into a network namespace needs it)."""
    try:
        with open(f"{os.fspath(proc_root)}/self/status") as f:
            text = f.read()
    except OSError:
        return os.geteuid() == 0
    for line in text.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
    return os.geteuid() == 0


def own_inode(proc_root: str | Path = "/proc") -> int | None:
    """The nsfs inode of the reader's namespace, from <proc>/self/ns/net (None if unreadable)."""
    try:
        return ns_inode_of_link(os.readlink(f"{os.fspath(proc_root)}/self/ns/net"))
    except OSError:
        return None


def init_inode(proc_root: str | Path = "/proc") -> int | None:
    """The nsfs inode of the host's namespace: pid 1's, else kthreadd's (pid 2; kernel threads live in the
    initial namespace, and a non-dumpable pid 1 refuses even root its links, as on this project's CI VM);
    None when neither is readable (not root, hidepid, a fixture without them) or pid 2 is not kthreadd (a
    container's pid namespace: its pid 2 tells nothing)."""
    proc = os.fspath(proc_root)
    for pid in (1, 2):
        if pid == 2 and read_command(2, proc) != "kthreadd":
            return None
        try:
            return ns_inode_of_link(os.readlink(f"{proc}/{pid}/ns/net"))
        except OSError:
            continue
    return None


def read_command(pid: int, proc_root: str | Path = "/proc") -> str | None:
    """A process's command name (/proc/PID/comm), or None when it cannot be read."""
    try:
        with open(f"{os.fspath(proc_root)}/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def run_scope(proc_root: str | Path = "/proc", run_root: str | Path = "/run",
              cookie: Callable[[], int | None] | None = None) -> str:
    """The state scope of this run (alerts/store.py): "" in the host's network namespace (init_inode), and
    also when that cannot be read (unprivileged: the store behaves as it always did); else
    "netns INODE [NAME] [cookie N]": the name when a bind mount under the run root has it (`ip netns exec
    NAME`), the namespace's cookie (netns_cookie) where the kernel gives it. An nsfs inode is reused as soon as
    its namespace is gone (`ip netns del x; ip netns add x` gets the same one, measured here), a cookie never
    within a boot: a namespace made again under the same name does not inherit the alerts of the last one."""
    proc = os.fspath(proc_root)
    own, init = own_inode(proc), init_inode(proc)
    if own is None or init is None or own == init:
        return ""
    names = sorted(name for inode, _, name in _bind_mounts(os.fspath(run_root), _nsfs_dev(proc))
                   if inode == own and name)
    made = (cookie or netns_cookie)()
    return " ".join(["netns", str(own), *names[:1], *(["cookie", str(made)] if made is not None else [])])


def netns_cookie() -> int | None:
    """The calling thread's network namespace's cookie (SO_NETNS_COOKIE, Linux 5.14+: net->net_cookie, unique
    per namespace within a boot, never reused), asked of an unbound AF_UNIX socket (no traffic, no port);
    None on older kernels."""
    import _socket  # (the C module: see sources/netlink.py)
    import struct

    if os.uname().machine not in GENERIC_SOCKOPT_MACHINES:
        return None
    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
    except OSError:
        return None
    try:
        return int(struct.unpack("=Q", sock.getsockopt(_socket.SOL_SOCKET, SO_NETNS_COOKIE, 8))[0])
    except (OSError, struct.error):
        return None
    finally:
        sock.close()


SO_NETNS_COOKIE = 71  # include/uapi/asm-generic/socket.h; alpha, mips, parisc and sparc number it their own way
GENERIC_SOCKOPT_MACHINES = frozenset({"x86_64", "i686", "i386", "aarch64", "arm64", "armv7l", "armv8l", "riscv64",
                                      "s390x", "ppc64le", "ppc64", "loongarch64"})


def _process_namespaces(proc_root: str) -> dict[int, list[int]]:
    """inode -> pids (ascending) from every readable /proc/<pid>/ns/net link."""
    found: dict[int, list[int]] = {}
    try:
        entries = [int(e.name) for e in os.scandir(proc_root) if e.name.isdigit()]
    except OSError:
        return found
    for pid in sorted(entries):
        try:
            inode = ns_inode_of_link(os.readlink(f"{proc_root}/{pid}/ns/net"))
        except OSError:
            continue  # exited, or another user's process
        if inode is not None:
            found.setdefault(inode, []).append(pid)
    return found


def _bind_mounts(run_root: str, nsfs_dev: int | None) -> list[tuple[int, str, str | None]]:
    """(inode, path, ip-netns name or None) of every namespace file under the run root.

    A file left behind without its bind mount (a failed `ip netns del`) is not on nsfs: when the
    nsfs device is known, such files are skipped instead of being taken for a namespace.
    """
    out = []
    for rel in BIND_MOUNT_DIRS:
        folder = os.path.join(run_root, rel)
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for name in names:
            path = os.path.join(folder, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            if nsfs_dev is not None and st.st_dev != nsfs_dev:
                continue
            out.append((st.st_ino, path, name if rel == "netns" else None))
    return out


def _nsfs_dev(proc_root: str) -> int | None:
    try:
        return os.stat(f"{proc_root}/self/ns/net").st_dev
    except OSError:
        return None  # a fixture tree: its links point nowhere


def enumerate_netns(proc_root: str | Path = "/proc", run_root: str | Path = "/run",
                    privileged: bool | None = None) -> NetnsList:
    """Every network namespace visible from these roots, deduplicated by inode, own one first.

    Without CAP_SYS_ADMIN (`privileged` False; None = ask the live kernel) other namespaces can
    neither be entered nor fully seen: only the own namespace is returned, with a limitation.
    """
    proc, run = path_text(proc_root), path_text(run_root)
    own = own_inode(proc)
    if privileged is None:
        privileged = can_enter_namespaces()
    if not privileged:
        note = (f"running as uid {os.geteuid()} without CAP_SYS_ADMIN: only connwatch's own network "
                "namespace is sampled; other namespaces (containers, pods, `ip netns`) are not visible — "
                "run as root to see them")
        alone: tuple[NetnsRef, ...] = (NetnsRef(own, own=True),) if own is not None else ()
        return NetnsList(alone, (note,))
    pids = _process_namespaces(proc)
    paths: dict[int, list[str]] = {}
    names: dict[int, str] = {}
    for inode, path, name in _bind_mounts(run, _nsfs_dev(proc)):
        paths.setdefault(inode, []).append(path)
        if name is not None:
            names.setdefault(inode, name)
    inodes = set(pids) | set(paths) | ({own} if own is not None else set())
    refs = tuple(NetnsRef(i, tuple(pids.get(i, ())), tuple(paths.get(i, ())), names.get(i), i == own)
                 for i in sorted(inodes, key=lambda i: (i != own, i)))
    return NetnsList(refs)


def open_netns(ref: NetnsRef, proc_root: str | Path = "/proc") -> int:
    """An fd on the namespace (which keeps it alive while open), checked to be the same inode.

    Tries the bind mounts first, then each process (a pid may have exited, or been reused by a
    process elsewhere: the inode check catches that). SourceUnavailable when it is gone.
    """
    candidates = [*ref.paths, *(f"{proc_root}/{pid}/ns/net" for pid in ref.pids)]
    for path in candidates:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        if os.fstat(fd).st_ino == ref.inode:
            return fd
        os.close(fd)
    raise SourceUnavailable(ref.label, "the network namespace no longer exists (its processes exited "
                                       "and no bind mount holds it)")


def _setns(fd: int) -> None:
    native = getattr(os, "setns", None)
    if native is not None:  # Python 3.12+
        native(fd, CLONE_NEWNET)
        return
    import ctypes  # (imported only to enter a namespace on Python 3.11)

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns(CLONE_NEWNET): {os.strerror(errno)}")


def run_in_netns(fd: int, call: Callable[[], T]) -> T:
    """call() on a short-lived thread inside the namespace of `fd`; its result, or its exception.

    Only that thread changes namespace; it ends afterwards, so the caller never does.
    A setns failure raises SourceUnavailable.
    """
    [result] = run_in_each([fd], lambda _fd: call())
    if isinstance(result, SourceUnavailable):
        raise result
    return result


def run_in_each(fds: Iterable[int], call: Callable[[int], T]) -> list[T | SourceUnavailable]:
    """call(fd) inside each namespace in turn, all on one short-lived thread (one thread start for
    many namespaces: on a busy host a thread start alone can take milliseconds); results in order.
    A namespace that cannot be entered (setns fails) gets a SourceUnavailable in its place and the
    walk goes on; an exception raised by call() stops the walk and is raised here."""
    import threading  # (not imported where no other namespace is entered)

    fds = list(fds)
    results: list[T | SourceUnavailable] = []
    if not fds:
        return results
    failure: list[BaseException] = []

    def walk() -> None:
        try:
            for fd in fds:
                try:
                    _setns(fd)
                except OSError as exc:
                    results.append(SourceUnavailable("setns", exc.strerror or str(exc)))
                    continue
                results.append(call(fd))
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=walk, name="connwatch-netns", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return results
