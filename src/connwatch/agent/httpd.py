"""A WSGI server with bounded threads, bounded idle time and bounded request time.

One thread accepts connections and waits, with a selector, for each one's first bytes; only a
connection that has sent something goes to one of `workers` threads. So idle connections cost a file
descriptor, not a thread (the systemd unit's TasksMax is never reached), and are closed after
`idle_s`; beyond `max_idle` of them the oldest is closed. A request that takes longer than
`request_s` (a client trickling its headers, a stalled TLS handshake) has its socket shut down,
which frees its worker. Problems are logged once per kind and minute (ProblemLog), without
tracebacks: a plain-HTTP request to the TLS port is one line, not 23.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

Conn = socket.socket
Addr = Any


@dataclass(frozen=True, slots=True)
class Limits:
    workers: int = 4  # threads serving requests (plus one accepting)
    idle_s: float = 10.0  # a connection that sends nothing for this long is closed
    request_s: float = 10.0  # the longest one request may take once its first byte arrived
    max_idle: int = 256  # connections waiting for their first byte; beyond, the oldest is closed
    backlog: int = 256  # connections with a request waiting for a free worker; beyond, closed


class ProblemLog:
    """One log line per kind of problem and `every_s`; the next line says how many were not logged."""

    def __init__(self, logger: logging.Logger, every_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger, self.every_s, self.clock = logger, every_s, clock
        self._seen: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def say(self, kind: str, level: int, message: str) -> None:
        now = self.clock()
        with self._lock:
            last, hidden = self._seen.get(kind, (float("-inf"), 0))
            if now - last < self.every_s:
                self._seen[kind] = (last, hidden + 1)
                return
            self._seen[kind] = (now, 0)
        more = f" ({hidden} more since, not logged)" if hidden else ""
        self.logger.log(level, "/metrics: %s%s", message, more)


def classify(exc: BaseException, limits: Limits) -> tuple[str, int, str]:
    """(kind, log level, one line) for an exception met while serving one connection."""
    if isinstance(exc, ssl.SSLError):
        if exc.reason == "HTTP_REQUEST":
            return "plain-http", logging.WARNING, "a plain-HTTP request reached the TLS port (scrape with https://)"
        return "tls", logging.WARNING, f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        return "slow", logging.WARNING, f"a client sent its request too slowly: closed after {limits.request_s:g} s"
    if isinstance(exc, OSError):  # reset, broken pipe, our own shutdown of a request past its time
        return "conn", logging.DEBUG, f"connection error: {exc.strerror or exc}"
    return "internal", logging.ERROR, f"internal error: {type(exc).__name__}: {exc}"


def _hung_up(conn: Conn) -> bool:
    """True when a readable connection is only the peer's close (EOF), peeked on the plain socket
    (an SSLSocket refuses flags), without blocking and without taking its bytes."""
    try:
        return socket.socket.recv(conn, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:  # reset by the peer
        return True


def _cut(conn: Conn) -> None:
    """Shut a connection down under the worker reading it (which then sees EOF or an error). The
    plain socket's shutdown, not SSLSocket's: that one drops its SSL object under the worker."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(conn, socket.SHUT_RDWR)


class BoundedWSGIServer(WSGIServer):
    allow_reuse_address = True
    request_queue_size = 128  # 100 scrapes/s must not overflow our own accept queue

    def __init__(self, address: tuple[str, int], handler: type[WSGIRequestHandler], limits: Limits,
                 problems: ProblemLog, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(address, handler)
        self.limits, self.problems, self.clock = limits, problems, clock
        self._ready: queue.Queue[tuple[Conn, Addr] | None] = queue.Queue(limits.backlog)
        self._busy: dict[Conn, float] = {}  # connection -> deadline, for connections in a worker
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self.dispatched = 0  # connections handed to a worker
        self.hung_up = 0  # connections closed by their peer before sending anything

    def serve_forever(self, poll_interval: float = 0.2) -> None:
        self._stop.clear()
        self._stopped.clear()
        workers = [threading.Thread(target=self._work, name=f"connwatch-metrics-{i}", daemon=True)
                   for i in range(self.limits.workers)]
        for w in workers:
            w.start()
        waiting: dict[Conn, tuple[float, Addr]] = {}  # insertion order: oldest first
        self.socket.setblocking(False)
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(self.socket, selectors.EVENT_READ)
                while not self._stop.is_set():
                    for key, _ in sel.select(poll_interval):
                        if key.fileobj is self.socket:
                            self._accept(sel, waiting)
                        else:
                            conn = key.fileobj
                            assert isinstance(conn, socket.socket)
                            sel.unregister(conn)
                            addr = waiting.pop(conn)[1]
                            if _hung_up(conn):
                                conn.close()  # closed before sending anything: no worker needed
                                self.hung_up += 1
                            else:
                                self._dispatch(conn, addr)
                    self._expire(sel, waiting)
        finally:
            self._close_all(waiting, workers)
            self._stopped.set()

    def shutdown(self) -> None:
        self._stop.set()
        self._stopped.wait()

    def busy_count(self) -> int:
        with self._lock:
            return len(self._busy)

    # -- the accepting thread ----------------------------------------------------

    def _accept(self, sel: selectors.BaseSelector, waiting: dict[Conn, tuple[float, Addr]]) -> None:
        try:
            conn, addr = self.socket.accept()
        except BlockingIOError:
            return
        except OSError as exc:  # EMFILE: make room, or the listening socket stays readable forever
            self.problems.say("accept", logging.WARNING, f"cannot accept a connection: {exc.strerror or exc}")
            if waiting:
                self._drop_oldest(sel, waiting)
            else:
                time.sleep(0.1)
            return
        if len(waiting) >= self.limits.max_idle:
            self.problems.say("too-many-idle", logging.WARNING,
                              f"more than {self.limits.max_idle} idle connections: closing the oldest")
            self._drop_oldest(sel, waiting)
        waiting[conn] = (self.clock() + self.limits.idle_s, addr)
        sel.register(conn, selectors.EVENT_READ)

    def _drop_oldest(self, sel: selectors.BaseSelector, waiting: dict[Conn, tuple[float, Addr]]) -> None:
        oldest = next(iter(waiting))
        del waiting[oldest]
        sel.unregister(oldest)
        oldest.close()

    def _dispatch(self, conn: Conn, addr: Addr) -> None:
        self.dispatched += 1
        try:
            self._ready.put_nowait((conn, addr))
        except queue.Full:
            self.problems.say("busy", logging.WARNING,
                              f"all {self.limits.workers} workers busy and {self.limits.backlog} requests "
                              "waiting: closing new connections")
            conn.close()

    def _expire(self, sel: selectors.BaseSelector, waiting: dict[Conn, tuple[float, Addr]]) -> None:
        now = self.clock()
        idle = [c for c, (deadline, _) in waiting.items() if deadline <= now]
        for conn in idle:
            del waiting[conn]
            sel.unregister(conn)
            conn.close()
        if idle:
            self.problems.say("idle", logging.INFO, f"closed {len(idle)} connection(s) that sent nothing "
                              f"in {self.limits.idle_s:g} s")
        with self._lock:
            late = [c for c, deadline in self._busy.items() if deadline <= now]
            for conn in late:
                self._busy[conn] = float("inf")
        for conn in late:
            self.problems.say("too-long", logging.WARNING, "a request took longer than "
                              f"{self.limits.request_s:g} s: connection closed")
            _cut(conn)

    def _close_all(self, waiting: dict[Conn, tuple[float, Addr]], workers: list[threading.Thread]) -> None:
        for conn in waiting:
            conn.close()
        with self._lock:
            for conn in self._busy:
                _cut(conn)
        for _ in workers:
            self._ready.put(None)
        for w in workers:
            w.join(timeout=self.limits.request_s)

    # -- worker threads -------------------------------------------------------------

    def _work(self) -> None:
        while (item := self._ready.get()) is not None:
            conn, addr = item
            with self._lock:
                self._busy[conn] = self.clock() + self.limits.request_s
            try:
                conn.settimeout(self.limits.request_s)
                if isinstance(conn, ssl.SSLSocket):
                    conn.do_handshake()
                self.finish_request(conn, addr)
            except Exception as exc:  # one line per kind of problem, never a traceback
                kind, level, message = classify(exc, self.limits)
                self.problems.say(kind, level, message)
            finally:
                with self._lock:
                    del self._busy[conn]
                self.shutdown_request(conn)
