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
from collections.abc import Callable, Iterable
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


def scan_socket_owners(inodes: Iterable[int], root: str | Path = "/proc") -> OwnerScan:
    """Map the given socket inodes to the pid holding them (first holder found)."""
    wanted = {f"socket:[{inode}]": inode for inode in inodes if inode}
    owners: dict[int, int] = {}
    unreadable = 0
    if not wanted:
        return OwnerScan(owners, 0)
    for entry in os.scandir(root):
        if not entry.name.isdecimal():
            continue
        pid = int(entry.name)
        try:
            fds = os.scandir(f"{entry.path}/fd")
        except PermissionError:
            unreadable += 1
            continue
        except OSError:
            continue  # the process exited
        with fds:
            if not _match_fds(fds, wanted, owners, pid):
                unreadable += 1
        if len(owners) == len(wanted):
            break
    return OwnerScan(owners, unreadable)


def _match_fds(fds: Iterable[os.DirEntry[str]], wanted: dict[str, int], owners: dict[int, int],
               pid: int) -> bool:
    """Record the wanted inodes among one process's fds; False when its links may not be read
    (listing the directory needs less privilege than reading the links: see the module doc)."""
    for fd in fds:
        try:
            target = os.readlink(fd.path)
        except PermissionError:
            return False
        except OSError:
            continue  # the fd was closed meanwhile
        inode = wanted.get(target)
        if inode is not None and inode not in owners:
            owners[inode] = pid
            if len(owners) == len(wanted):
                return True  # all found: the rest of this process's fds need not be read
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
