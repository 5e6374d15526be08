"""The listener-only poll between full samples: one LISTEN dump over a kept-open netlink socket.

About 0.2 ms for a few dozen listeners (the kernel filters by state), against ~2 ms for a
`collect(sockets=False)` that also rereads counters and sysctls. Without netlink (or if the dump
fails) it falls back to that collect, so the poll never stops.

A listener whose reply is byte for byte the last poll's (same socket, queue, backlog, drop counter) is
the last poll's Listener object (MemoListenerDecoder), and a poll whose listeners are all the last
poll's, in the same order, returns the last poll's tuple itself: the agent then knows by identity that
nothing changed (its peaks and owned copies stand; agent/loop.py listener_poll).
"""

from __future__ import annotations

from connwatch.clock import Clock
from connwatch.collect import SKMEMINFO_EXT, CollectOptions, collect, listener_order, netlink_listeners
from connwatch.errors import ParseError, SourceUnavailable
from connwatch.model import Listener
from connwatch.parsers.sock_diag_listeners import MemoListenerDecoder
from connwatch.sources import netlink


class ListenerPoller:
    def __init__(self, proc_root: str, use_netlink: bool) -> None:
        self.proc_root = proc_root
        self.use_netlink = use_netlink
        self._sock: netlink.DiagSocket | None = None
        self.one_walk = True
        self.last: tuple[Listener, ...] = ()  # the latest poll's listeners
        self._memo: dict[bytes, Listener] = {}  # the last one-walk dump's replies (MemoListenerDecoder)

    def poll(self, clock: Clock) -> tuple[Listener, ...]:
        """The listeners now, in a full sample's order; the last poll's tuple itself when they are all the
        last poll's objects (unchanged replies), in the same order."""
        got = self._poll(clock)
        if len(got) != len(self.last) or any(a is not b for a, b in zip(got, self.last, strict=True)):
            self.last = got
        return self.last

    def _poll(self, clock: Clock) -> tuple[Listener, ...]:
        if self.use_netlink:
            try:
                return self._dump()
            except (SourceUnavailable, ParseError):
                self.close()  # reopened next time; this poll falls back to procfs
        opts = CollectOptions(proc_root=self.proc_root, use_netlink=self.use_netlink, sockets=False,
                              owners=False)
        return collect(clock, opts).listeners

    def _dump(self) -> tuple[Listener, ...]:
        if self._sock is None:
            self._sock = netlink.open_socket()
        if self.one_walk:  # both families in one walk of the listening hash (the legacy request)
            decoder = MemoListenerDecoder([], self._memo, {})
            try:
                netlink.dump_both_families(self._sock, netlink.TCPF_LISTEN, SKMEMINFO_EXT, decoder)
            except SourceUnavailable:
                self.one_walk = False  # refused by this kernel: one dump per family from now on
            else:
                self._memo = decoder.seen
                return tuple(sorted(decoder.listeners, key=listener_order))
        return tuple(sorted(netlink_listeners(self._sock, []), key=listener_order))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
