"""The owner scan searches a socket's own network namespace first (issue 17): real processes, real /proc."""

from __future__ import annotations

import os
import socket

from connwatch.sources import processes
from connwatch.sources.netns import run_in_netns

from .netns import Netns

PORT = 9131


def _inode(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


def test_owners_found_in_their_namespace_and_across_namespaces(ns: Netns) -> None:
    listener = ns.python("listener.py", "--port", str(PORT))  # a process inside the namespace holds it
    ns_inode = processes.netns_inode("/proc", listener.pid)
    own_inode = processes.netns_inode("/proc")
    assert ns_inode is not None and own_inode is not None and ns_inode != own_inode
    [theirs] = [int(link[8:-1]) for fd in os.listdir(f"/proc/{listener.pid}/fd")
                if (link := os.readlink(f"/proc/{listener.pid}/fd/{fd}")).startswith("socket:[")]
    fd = os.open(f"/run/netns/{ns.name}", os.O_RDONLY | os.O_CLOEXEC)
    try:  # a socket of the namespace held by this process, outside it (as `ip netns exec` tools may do)
        crossed = run_in_netns(fd, socket.socket)
    finally:
        os.close(fd)
    with crossed, socket.socket() as mine:
        netns_of = {theirs: ns_inode, _inode(crossed): ns_inode, _inode(mine): own_inode}
        scan = processes.scan_socket_owners(netns_of, "/proc", netns_of)
        plain = processes.scan_socket_owners(netns_of, "/proc")
        expected = {theirs: listener.pid, _inode(crossed): os.getpid(), _inode(mine): os.getpid()}
    assert scan.owners == expected
    assert plain.owners == scan.owners  # the order changes the work, not the answer
