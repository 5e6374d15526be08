"""Process details read from /proc equal psutil's (what describe_process used before; psutil is only
imported here, to compare): real processes of this host."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from connwatch.sources import processes
from connwatch.sources.processes import describe_process


def _psutil(pid: int) -> tuple[object, ...]:
    proc = psutil.Process(pid)
    with proc.oneshot():
        return (proc.name(), " ".join(proc.cmdline())[:300], proc.username(), proc.create_time(), proc.num_fds(),
                proc.rlimit(psutil.RLIMIT_NOFILE)[0], proc.status())


def _ours(pid: int) -> tuple[object, ...]:
    p = describe_process(pid)
    assert p is not None
    return (p.command, p.cmdline, p.user, p.started_at, p.open_fds, p.fd_limit, p.state)


@pytest.fixture
def long_named(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process whose name is longer than the 15 characters of comm, with arguments and spaces."""
    link = tmp_path / "connwatch-a-long-process-name"
    link.symlink_to(sys.executable)
    proc = subprocess.Popen([str(link), "-c", "import sys, time; print(flush=True); time.sleep(30)", "an argument"],
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.readline()  # started (exec done)
    deadline = time.monotonic() + 10  # and asleep: between its print and its sleep it is still running
    while psutil.Process(proc.pid).status() != psutil.STATUS_SLEEPING and time.monotonic() < deadline:
        time.sleep(0.01)
    yield proc
    proc.kill()
    proc.wait()


def test_details_equal_psutils_for_real_processes(long_named: subprocess.Popen[bytes]) -> None:
    pids = [os.getpid(), os.getppid(), long_named.pid] + ([1] if os.path.exists("/proc/1/stat") else [])
    for pid in pids:
        try:
            theirs = _psutil(pid)
        except psutil.AccessDenied:
            continue
        ours = _ours(pid)
        assert ours[:3] == theirs[:3] and ours[5] == theirs[5], (pid, ours, theirs)
        if pid == long_named.pid:  # (idle: its open fds and state stand still; pid 1's moved between reads on CI)
            assert ours[4:] == theirs[4:], (pid, ours, theirs)
        assert abs(float(ours[3]) - float(theirs[3])) < 0.01  # type: ignore[arg-type]
    assert _ours(long_named.pid)[0] == "connwatch-a-long-process-name"  # not comm's "connwatch-a-lon"


def test_a_process_that_is_gone_is_none() -> None:
    done = subprocess.Popen(["true"])
    done.wait()
    assert describe_process(done.pid) is None


def _fd_tree(root: Path, holders: dict[int, list[int]]) -> None:
    """A /proc-shaped tree of fd links only (pid -> the socket inodes of its fds 0..n-1): the scan's mechanism."""
    for pid, inodes in holders.items():
        (root / str(pid) / "fd").mkdir(parents=True)
        for fd, inode in enumerate(inodes):
            (root / str(pid) / "fd" / str(fd)).symlink_to(f"socket:[{inode}]")


def test_hinted_owners_are_read_first_and_a_stale_hint_changes_nothing(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # pid 10 holds 400 other sockets, pid 20 the two listeners (the listing's order decides who is read first)
    _fd_tree(tmp_path, {10: list(range(1000, 1400)), 20: [5000, 5001, 5002]})
    reads: list[int] = []
    real = os.readlink

    def counted(path: str, *, dir_fd: int | None = None) -> str:
        reads.append(1)
        return real(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "readlink", counted)
    plain = processes.scan_socket_owners([5001, 5002], str(tmp_path))
    plain_reads, reads[:] = len(reads), []
    hinted = processes.scan_socket_owners([5001, 5002], str(tmp_path), hints={5001: 20, 5002: 20})
    assert plain.owners == hinted.owners == {5001: 20, 5002: 20}
    assert len(reads) == 3 and plain_reads >= 3  # pid 20's fds only, up to its last listener
    assert hinted.open_fds == {20: 3}  # the hinted process's fds are still counted (its owner details)
    reads[:] = []
    stale = processes.scan_socket_owners([5001, 5002], str(tmp_path), hints={5001: 10, 5002: 99})
    assert stale.owners == plain.owners and len(reads) >= 403  # a pid that no longer holds it (or is gone)
    _fd_tree(tmp_path, {30: [5001]})  # pid 30 shares a listener (as a forked worker does)
    shared = processes.scan_socket_owners([5001], str(tmp_path), hints={5001: 30})
    assert shared.owners == {5001: 30}  # the hinted holder of a shared socket stays its owner
