"""Hand-built snapshots for pure tests (attributes, rules, explanations)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from connwatch.model import HostInfo, Listener, Process, Snapshot, SocketSummary, Sysctls


def listener(port: int, queue: int = 0, backlog: int | None = 128, drops: int | None = 0, *,
             address: str = "0.0.0.0", family: int = 4, inode: int | None = None,
             owner: Process | None = None) -> Listener:
    return Listener(family=family, address=address, port=port, queue=queue, backlog=backlog, drops=drops,
                    inode=inode if inode is not None else port * 10 + family, uid=0, cookie=port * 100 + family,
                    owner=owner)


def snapshot(at: float, listeners: tuple[Listener, ...] = (), counters: Mapping[str, int] | None = None,
             somaxconn: int = 4096, sockets: SocketSummary | None = None) -> Snapshot:
    return Snapshot(taken_at=at, monotonic=at, host=HostInfo(hostname="testhost"),
                    counters=dict(counters or {}), sockstat={}, sysctls=Sysctls(somaxconn=somaxconn),
                    listeners=listeners, sockets=sockets)


def plain_utc_terminal(monkeypatch: Any) -> None:
    """No colour, no forced terminal, times in UTC: text output the same on every machine (undo with
    monkeypatch.undo() and time.tzset())."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("NO_COLOR", "1")
    time.tzset()


def printed_report(monkeypatch: Any, data: dict[str, Any], kind: str, render: Any, plain: Any,
                   columns: str | None = None) -> str:
    """What print_report writes for a text report: plain (the piped path) when `plain` is given, else rich's
    drawing; at COLUMNS=columns when given ("" = unset)."""
    import io
    import sys

    from connwatch.commands.common import print_report

    if columns is not None:
        if columns:
            monkeypatch.setenv("COLUMNS", columns)
        else:
            monkeypatch.delenv("COLUMNS", raising=False)
    sink = io.StringIO()
    monkeypatch.setattr(sys, "stdout", sink)
    print_report(data, "text", render, kind, plain)
    return sink.getvalue()
