"""Which process owns a socket: /proc/<pid>/fd links ("socket:[inode]"), and its details from /proc.

The inode -> pid scan is written here because psutil offers it only as net_connections(), which
builds an object per socket (295 ms for 34k sockets here); we need owners for a handful of inodes.
Process details (command, user, start time, open fds, RLIMIT_NOFILE, state) are read from /proc/<pid>
as psutil reads them: psutil's import alone cost ~20 ms of a 35k-socket `snapshot` process (issue 17),
more than its whole owner lookup; tests/unit/test_processes.py checks the fields equal psutil's.

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

from connwatch.errors import ParseError
from connwatch.model import Process
from connwatch.record import Record, field, record

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:  # (pathlib is not loaded by a sample: see sources/procfs.py's LIVE_ROOT)
    from pathlib import Path
    from typing import TypeVar

    T = TypeVar("T")


@record
class OwnerScan(Record):
    """Result of one fd scan: inode -> pid, and how many processes we were not allowed to read."""

    owners: dict[int, int]
    unreadable: int
    open_fds: dict[int, int] = field(default_factory=dict)  # pid -> how many fds the scan listed


def scan_socket_owners(inodes: Iterable[int], root: str | Path = "/proc",
                       netns_of: Mapping[int, int] | None = None, hints: Mapping[int, int] | None = None) -> OwnerScan:
    """Map the given socket inodes to the pid holding them (first holder found, in pid order).

    `netns_of` (socket inode -> the nsfs inode of its network namespace) orders the search: first each
    process is searched only while sockets of its own namespace (/proc/<pid>/ns/net) are still unowned,
    so a process holding thousands of fds is passed over once its namespace's sockets are named;
    then, for any socket still unowned (held from another namespace), every process not fully read.
    The fds read are what costs (a readlink each): `ss -tan` reads none.

    `hints` (socket inode -> the pid that held it at an earlier scan) are read first, each only until its
    hinted sockets are named: a refresh of known owners then reads a few fds of a few processes instead of
    every fd of every process until a socket closed since the dump is given up (see
    agent/owned.py KnownOwners.hints for the figures). A hinted pid that no longer holds its socket is searched
    as without hints; a socket is still named by the first holder found, the hinted one first.
    """
    wanted = {f"socket:[{inode}]": inode for inode in inodes if inode}
    if not wanted:
        return OwnerScan({}, 0)
    left: dict[int, set[int]] = {}  # namespace -> its sockets not yet owned
    for inode in wanted.values():
        if netns_of and inode in netns_of:
            left.setdefault(netns_of[inode], set()).add(inode)
    scan = _Scan(wanted, str(root), {i: group for group in left.values() for i in group})
    for pid, theirs in _by_pid(hints, wanted).items():
        if len(scan.owners) == len(wanted):
            break
        scan.read(pid, theirs)
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
    return OwnerScan(scan.owners, len(scan.unreadable), scan.open_fds)


def _by_pid(hints: Mapping[int, int] | None, wanted: dict[str, int]) -> dict[int, set[int]]:
    """The hinted pids (in order) and the wanted sockets each held at the earlier scan."""
    out: dict[int, set[int]] = {}
    if hints:
        asked = set(wanted.values())
        for inode, pid in hints.items():
            if inode in asked:
                out.setdefault(pid, set()).add(inode)
    return out


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
        self.open_fds: dict[int, int] = {}  # pid -> its fds listed by the scan

    def read(self, pid: int, until: set[int] | None) -> bool:
        """Record the wanted sockets among pid's fds; stop early once `until` (inodes) are all owned.
        True when every fd was read (nothing more to find in this process). The links are read relative
        to the open fd directory (readlinkat): the path to it is not walked again for every fd."""
        try:
            dir_fd = os.open(f"{self.root}/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY)
        except PermissionError:
            self.unreadable.add(pid)
            return True
        except OSError:
            return True  # the process exited
        try:
            return self._links(pid, dir_fd, until)
        finally:
            os.close(dir_fd)

    def _links(self, pid: int, dir_fd: int, until: set[int] | None) -> bool:
        try:
            fds = os.listdir(dir_fd)
        except PermissionError:
            self.unreadable.add(pid)
            return True
        except OSError:
            return True  # the process exited
        self.open_fds[pid] = len(fds)
        wanted, owners, readlink = self.wanted, self.owners, os.readlink
        for fd in fds:
            if until is not None and not until:
                return False
            try:
                target = readlink(fd, dir_fd=dir_fd)
            except PermissionError:  # listing the directory needs less privilege than reading the links
                self.unreadable.add(pid)
                return True
            except OSError:
                continue  # the fd was closed meanwhile
            inode = wanted.get(target)
            if inode is not None and inode not in owners:
                owners[inode] = pid
                self.groups.get(inode, set()).discard(inode)
                if until is not None:  # (a hinted pid's sockets: see scan_socket_owners)
                    until.discard(inode)
                if len(owners) == len(wanted):
                    return False  # all found: the rest of this process's fds need not be read
        return True


# /proc/<pid>/stat state letters, in the words psutil's status() uses (fs/proc/array.c task_state_array)
STATES = {"R": "running", "S": "sleeping", "D": "disk-sleep", "T": "stopped", "t": "tracing-stop",
          "Z": "zombie", "X": "dead", "x": "dead", "K": "wake-kill", "W": "waking", "I": "idle", "P": "parked"}


def describe_process(pid: int, root: str | Path = "/proc", open_fds: int | None = None) -> Process | None:
    """Details of one process from /proc (as psutil reads them, without psutil's import cost); None when
    it vanished or is a zombie. Fields we may not read stay None; "?" when nothing can be read.
    `open_fds`: its fds as an owner scan just listed them (OwnerScan.open_fds), not listed again."""
    base = f"{root}/{pid}"
    try:
        with open(f"{base}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except PermissionError:
        return Process(pid=pid, command="?")
    except OSError:
        return None
    name, _, rest = stat[stat.index("(") + 1:].rpartition(")")
    fields = rest.split()
    if not fields or fields[0] == "Z":
        return None
    cmdline = _attempt(lambda: _cmdline(base))
    if len(name) >= 15 and cmdline and os.path.basename(cmdline[0]).startswith(name):
        name = os.path.basename(cmdline[0])  # comm is cut at 15 characters
    return Process(
        pid=pid, command=name, cmdline=" ".join(cmdline or [])[:300], user=_attempt(lambda: _user(base)),
        started_at=_attempt(lambda: int(fields[19]) / os.sysconf("SC_CLK_TCK") + _boot_time(root)),
        open_fds=open_fds if open_fds is not None else _attempt(lambda: len(os.listdir(f"{base}/fd"))),
        fd_limit=_fd_limit(pid, root), state=STATES.get(fields[0], "?"),
    )


def _fd_limit(pid: int, root: str | Path) -> int | None:
    """Soft RLIMIT_NOFILE: prlimit(2) of a live process, else (not allowed, or a copied tree) its limits file."""
    live = _attempt(lambda: _nofile(pid)) if str(root) == "/proc" else None
    return live if live is not None else fd_limit_from_proc(pid, root)


def _attempt(call: Callable[[], T]) -> T | None:
    """One field's value, or None when it may not be read (or the process went away meanwhile)."""
    try:
        return call()
    except (OSError, ValueError, IndexError, KeyError):
        return None


def _cmdline(base: str) -> list[str]:
    """Arguments split as psutil does: on NULs, or on spaces for a process that rewrote its title."""
    with open(f"{base}/cmdline", encoding="utf-8", errors="surrogateescape") as fh:
        data = fh.read()
    sep = "\x00" if data.endswith("\x00") else " "
    data = data.removesuffix(sep)
    args = data.split(sep) if data else []
    return data.split(" ") if sep == "\x00" and len(args) == 1 and " " in data else args


def _user(base: str) -> str:
    """The name of the process's real uid (its number when no name resolves)."""
    import pwd

    with open(f"{base}/status") as fh:
        uid = int(next(line.split()[1] for line in fh if line.startswith("Uid:")))
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _boot_time(root: str | Path) -> float:
    with open(f"{root}/stat") as fh:
        return float(next(line.split()[1] for line in fh if line.startswith("btime")))


def _nofile(pid: int) -> int:
    import resource

    return resource.prlimit(pid, resource.RLIMIT_NOFILE)[0]


def fd_limit_from_proc(pid: int, root: str | Path = "/proc") -> int | None:
    """Soft RLIMIT_NOFILE from /proc/<pid>/limits; None when it cannot be read or parsed."""
    from connwatch.parsers.proc_limits import parse_nofile_soft  # (its `re`: not loaded by a sample as root)

    try:
        with open(f"{root}/{pid}/limits", errors="replace") as fh:  # (as Path.read_text reads it)
            text = fh.read()
        return parse_nofile_soft(text, f"{root}/{pid}/limits")
    except (OSError, ParseError):
        return None


def missing_capabilities(status_path: str | Path = "/proc/self/status") -> list[str]:
    """Which of the two capabilities an owner lookup needs this process lacks (CapEff of
    /proc/self/status: bit 2 CAP_DAC_READ_SEARCH, bit 19 CAP_SYS_PTRACE); [] when unknown."""
    try:
        with open(status_path) as fh:
            text = fh.read()
        eff = int(next(x.split()[1] for x in text.splitlines() if x.startswith("CapEff:")), 16)
    except (OSError, StopIteration, IndexError, ValueError):
        return []
    return [name for bit, name in ((2, "CAP_DAC_READ_SEARCH"), (19, "CAP_SYS_PTRACE")) if not eff >> bit & 1]
