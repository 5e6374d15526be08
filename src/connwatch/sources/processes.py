"""Which process owns a socket: /proc/<pid>/fd links ("socket:[inode]") and psutil for the rest.

The inode -> pid scan is written here because psutil offers it only as net_connections(), which
builds an object per socket (295 ms for 34k sockets here); we need owners for a handful of inodes.
Process details (command, user, start time, open fds, RLIMIT_NOFILE) come from psutil.

Privileges: listing /proc/<pid>/fd needs read access to the directory (the process's own uid or
CAP_DAC_READ_SEARCH); reading its links needs ptrace read access (the same uid and no capability
the caller lacks, or CAP_SYS_PTRACE). A process whose directory or links are denied is counted as
unreadable, never skipped silently. RLIMIT_NOFILE via prlimit(2) needs the same uid or
CAP_SYS_RESOURCE, which the systemd unit does not grant: /proc/<pid>/limits (world-readable)
is read instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from connwatch.errors import ParseError
from connwatch.model import Process
from connwatch.parsers.proc_limits import parse_nofile_soft

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class OwnerScan:
    """Result of one fd scan: inode -> pid, and how many processes we were not allowed to read."""

    owners: dict[int, int]
    unreadable: int


def scan_socket_owners(inodes: Iterable[int], root: str | Path = "/proc",
                       netns_of: Mapping[int, int] | None = None) -> OwnerScan:
    """Map the given socket inodes to the pid holding them (first holder found, in pid order).

    `netns_of` (socket inode -> the nsfs inode of its network namespace) orders the search: first each
    process is searched only while sockets of its own namespace (/proc/<pid>/ns/net) are still unowned,
    so a process holding thousands of fds is passed over once its namespace's sockets are named;
    then, for any socket still unowned (held from another namespace), every process not fully read.
    The fds read are what costs (a readlink each): `ss -tan` reads none.
    """
    wanted = {f"socket:[{inode}]": inode for inode in inodes if inode}
    if not wanted:
        return OwnerScan({}, 0)
    left: dict[int, set[int]] = {}  # namespace -> its sockets not yet owned
    for inode in wanted.values():
        if netns_of and inode in netns_of:
            left.setdefault(netns_of[inode], set()).add(inode)
    scan = _Scan(wanted, str(root), {i: group for group in left.values() for i in group})
    pids = [int(e.name) for e in os.scandir(root) if e.name.isdecimal()]
    if left:
        pending = []
        for pid in pids:
            if len(scan.owners) == len(wanted):
                break
            ns = _netns_inode(f"{root}/{pid}/ns/net")
            mine = left.get(ns) if ns is not None else None
            if not mine or not scan.read(pid, mine):
                pending.append(pid)
        pids = pending
    for pid in pids:
        if len(scan.owners) == len(wanted):
            break
        scan.read(pid, None)
    return OwnerScan(scan.owners, len(scan.unreadable))


def netns_inode(root: str | Path, pid: int | str = "self") -> int | None:
    """The nsfs inode of a process's network namespace ("net:[N]"), None when it cannot be read."""
    return _netns_inode(f"{root}/{pid}/ns/net")


def _netns_inode(link: str) -> int | None:
    try:
        target = os.readlink(link)
    except OSError:
        return None
    return int(target[5:-1]) if target.startswith("net:[") and target.endswith("]") else None


class _Scan:
    """The fd reads of one scan: owners found, processes that may not be read."""

    def __init__(self, wanted: dict[str, int], root: str, groups: dict[int, set[int]]) -> None:
        self.wanted, self.root, self.groups = wanted, root, groups  # groups: inode -> its namespace's unowned
        self.owners: dict[int, int] = {}
        self.unreadable: set[int] = set()

    def read(self, pid: int, until: set[int] | None) -> bool:
        """Record the wanted sockets among pid's fds; stop early once `until` (inodes) are all owned.
        True when every fd was read (nothing more to find in this process)."""
        try:
            fds = os.listdir(f"{self.root}/{pid}/fd")
        except PermissionError:
            self.unreadable.add(pid)
            return True
        except OSError:
            return True  # the process exited
        base, wanted, owners = f"{self.root}/{pid}/fd/", self.wanted, self.owners
        for fd in fds:
            if until is not None and not until:
                return False
            try:
                target = os.readlink(base + fd)
            except PermissionError:  # listing the directory needs less privilege than reading the links
                self.unreadable.add(pid)
                return True
            except OSError:
                continue  # the fd was closed meanwhile
            inode = wanted.get(target)
            if inode is not None and inode not in owners:
                owners[inode] = pid
                self.groups.get(inode, set()).discard(inode)
                if len(owners) == len(wanted):
                    return False  # all found: the rest of this process's fds need not be read
        return True


def describe_process(pid: int) -> Process | None:
    """Details of one process via psutil; None when it vanished. Fields we may not read stay None."""
    import psutil  # lazy: keeps `connwatch --help` fast

    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            name = proc.name()
            cmdline = _safe(proc.cmdline) or []
            started = _safe(proc.create_time)
            user = _safe(proc.username)
            fds = _safe(proc.num_fds)
            limits = _safe(lambda: proc.rlimit(psutil.RLIMIT_NOFILE))
            state = _safe(proc.status)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return Process(pid=pid, command="?")
    return Process(
        pid=pid, command=name, cmdline=" ".join(cmdline)[:300], user=user,
        started_at=started, open_fds=fds, fd_limit=limits[0] if limits else fd_limit_from_proc(pid), state=state,
    )


def fd_limit_from_proc(pid: int, root: str | Path = "/proc") -> int | None:
    """Soft RLIMIT_NOFILE from /proc/<pid>/limits; None when it cannot be read or parsed."""
    try:
        text = Path(root, str(pid), "limits").read_text(errors="replace")
        return parse_nofile_soft(text, f"{root}/{pid}/limits")
    except (OSError, ParseError):
        return None


def missing_capabilities(status_path: str | Path = "/proc/self/status") -> list[str]:
    """Which of the two capabilities an owner lookup needs this process lacks (CapEff of
    /proc/self/status: bit 2 CAP_DAC_READ_SEARCH, bit 19 CAP_SYS_PTRACE); [] when unknown."""
    try:
        text = Path(status_path).read_text()
        eff = int(next(x.split()[1] for x in text.splitlines() if x.startswith("CapEff:")), 16)
    except (OSError, StopIteration, IndexError, ValueError):
        return []
    return [name for bit, name in ((2, "CAP_DAC_READ_SEARCH"), (19, "CAP_SYS_PTRACE")) if not eff >> bit & 1]


def _safe(call: Callable[[], T]) -> T | None:
    """psutil getter -> value, or None when access is denied for that one field."""
    import psutil

    try:
        return call()
    except psutil.AccessDenied:
        return None
