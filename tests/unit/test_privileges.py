"""What lost privileges hide is said: the owner's fd limit read without prlimit, owners whose fd
limit or open fds are unreadable named in `limitations`, the scan's denied processes counted."""

from __future__ import annotations

import os
import resource
import socket

import pytest

from connwatch.collect_owners import _with_owners
from connwatch.errors import ParseError
from connwatch.model import Process
from connwatch.parsers.proc_limits import parse_nofile_soft
from connwatch.sources import processes

from .builders import listener


def test_fd_limit_from_proc_limits_matches_getrlimit() -> None:
    # The live file of this process, not a copy: the kernel's own table format.
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert processes.fd_limit_from_proc(os.getpid()) == soft
    with open(f"/proc/{os.getpid()}/limits") as fh:
        assert parse_nofile_soft(fh.read(), "limits") == soft
    assert processes.fd_limit_from_proc(2**22 + 1) is None  # no such process: None, not 0


def test_proc_limits_parser_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ParseError, match="no 'Max open files' row"):
        parse_nofile_soft("Limit  Soft Limit  Hard Limit  Units\n", "limits")
    with pytest.raises(ParseError, match=r"limits:2: soft limit is not a number"):
        parse_nofile_soft("Limit\nMax open files            12x4  4096  files\n", "limits")
    assert parse_nofile_soft("Max open files  unlimited  unlimited  files\n", "limits") is None


def test_owner_without_fd_limit_or_open_fds_is_named() -> None:
    blind = Process(pid=4242, command="?")  # psutil AccessDenied: nothing of it could be read
    no_limit = Process(pid=77, command="java", open_fds=900, fd_limit=None)
    seen = Process(pid=5, command="nginx", open_fds=12, fd_limit=1024)
    lsts = [listener(80, owner=None, inode=1), listener(81, inode=2), listener(82, inode=3), listener(83, inode=4)]
    owners = {2: blind, 3: no_limit, 4: seen}
    limits: list[str] = []
    out = _with_owners(lsts, processes.OwnerScan({2: 4242, 3: 77, 4: 5}, 0),
                       lambda pid: next(p for p in owners.values() if p.pid == pid), limits)
    assert [x.owner for x in out] == [None, blind, no_limit, seen]
    assert ("owner fd limit unreadable for pid 77, 4242: the 'owner at its fd limit' check cannot run for them"
            in limits)
    assert "owner open fds unreadable for pid 4242: the 'owner at its fd limit' check cannot run for it" in limits
    assert not any("pid 5" in n for n in limits)


def test_scan_of_own_process_finds_the_socket_and_counts_nothing_unreadable() -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        inode = os.fstat(srv.fileno()).st_ino
        scan = processes.scan_socket_owners([inode])
    assert scan.owners == {inode: os.getpid()}
    me = processes.describe_process(os.getpid())
    assert me is not None and me.fd_limit == resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def test_missing_capabilities_reads_capeff(tmp_path: os.PathLike[str]) -> None:
    status = os.path.join(tmp_path, "status")
    with open(status, "w") as fh:  # the two lines as the kernel prints them (fs/proc/array.c render_cap_t)
        fh.write("CapPrm:\t0000000000080004\nCapEff:\t0000000000080004\n")
    assert processes.missing_capabilities(status) == []
    with open(status, "w") as fh:
        fh.write("CapEff:\t0000000000000004\n")
    assert processes.missing_capabilities(status) == ["CAP_SYS_PTRACE"]
    assert processes.missing_capabilities(os.path.join(tmp_path, "none")) == []
