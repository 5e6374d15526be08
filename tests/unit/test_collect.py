"""collect(): partial failures are named, never silent."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from connwatch.clock import FakeClock
from connwatch.collect import CollectOptions, collect
from connwatch.errors import SourceUnavailable
from connwatch.sources import netlink

real_dump = netlink.dump


def _no_ipv6(sock: socket.socket, family: int, states: int, ext: int, consume: Callable[[bytes], bool]) -> None:
    if family == socket.AF_INET6:
        raise SourceUnavailable("netlink sock_diag IPv6", "kernel refused the dump: ENOENT")
    real_dump(sock, family, states, ext, consume)


def _no_legacy(sock: socket.socket, states: int, ext: int, consume: Callable[[bytes], bool]) -> None:
    raise SourceUnavailable("netlink sock_diag", "kernel refused the dump: EINVAL")


def test_kernel_without_ipv6_diag_keeps_the_ipv4_view(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that refuses the one-walk (legacy, both families) request is asked per family; one that
    then refuses IPv6 keeps the IPv4 view and names what it cannot see."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(3)
    port = srv.getsockname()[1]
    try:
        monkeypatch.setattr(netlink, "dump_both_families", _no_legacy)
        monkeypatch.setattr(netlink, "dump", _no_ipv6)
        snap = collect(FakeClock(), CollectOptions(owners=False))
    finally:
        srv.close()
    [mine] = [x for x in snap.listeners if x.port == port]
    assert mine.backlog == 3 and mine.drops == 0  # still from sock_diag, not the /proc fallback
    assert snap.sockets is not None
    notes = [x for x in snap.limitations if "IPv6 sockets not visible" in x]
    assert len(notes) == 1 and "ENOENT" in notes[0]


def test_netlink_socket_unavailable_falls_back_to_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> socket.socket:
        raise SourceUnavailable("netlink sock_diag", "cannot open NETLINK_SOCK_DIAG socket (Protocol not supported)")

    monkeypatch.setattr(netlink, "open_socket", refuse)
    snap = collect(FakeClock(), CollectOptions(owners=False))
    assert all(x.backlog is None and x.drops is None for x in snap.listeners)
    assert any("netlink sock_diag unavailable" in x for x in snap.limitations)
    failed = {s.name: s.detail for s in snap.statuses if not s.ok}
    assert "Protocol not supported" in failed["netlink sock_diag"]
