"""Snapshot <-> JSON-safe dict. The `snapshot` command's output is a capture `analyze` can read back."""

from __future__ import annotations

import functools
import math
import types
from collections.abc import Mapping

from connwatch.errors import ParseError
from connwatch.model import (
    Container,
    DestinationUsage,
    HostInfo,
    Listener,
    NetnsInfo,
    Pod,
    Process,
    Snapshot,
    SocketSummary,
    SourceStatus,
    SourceTable,
    SourceUsage,
    Sysctls,
)
from connwatch.record import Record, asdict, items

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record; typing is
if TYPE_CHECKING:  # imported only to read a capture back, ~3 ms of a `snapshot` that only writes one)
    from typing import Any

FORMAT = "connwatch-snapshot"
VERSION = 1


def listener_dict(lst: Listener) -> dict[str, Any]:
    d = asdict(lst)
    d["endpoint"] = lst.endpoint
    return d


def netns_dict(info: NetnsInfo) -> dict[str, Any]:
    """{inode, name, container {runtime, id, name}, pod {uid, namespace, name}, pid, command, own, label}.
    As dataclasses.asdict (its fields are plain values and two flat dataclasses) without its deep copies:
    a check of 100 namespaces writes it thousands of times."""
    return {**_flat(info), "label": info.label}


def _flat(obj: Record) -> dict[str, Any]:
    return {name: _flat(v) if isinstance(v, Record) else v for name, v in items(obj)}


def _netns(data: Mapping[str, Any] | None, source: str) -> NetnsInfo | None:
    if data is None:
        return None
    fixed = {**data, "container": _build(Container, data["container"], source) if data.get("container") else None,
             "pod": _build(Pod, data["pod"], source) if data.get("pod") else None}
    return _build(NetnsInfo, fixed, source)  # type: ignore[no-any-return]


def to_dict(snap: Snapshot) -> dict[str, Any]:
    sockets = None
    if snap.sockets is not None:
        s = snap.sockets
        sockets = {
            "total": s.total, "by_state": dict(s.by_state),
            "destinations": [asdict(d) for d in s.destinations],
            "sources": [asdict(x) for x in s.sources],
        }
    out = {
        "format": FORMAT, "version": VERSION, "taken_at": snap.taken_at, "monotonic": snap.monotonic,
        "host": asdict(snap.host), "counters": dict(snap.counters),
        "sockstat": dict(snap.sockstat), "sysctls": asdict(snap.sysctls),
        "listeners": [listener_dict(x) for x in snap.listeners], "sockets": sockets,
        "sources": [asdict(x) for x in snap.statuses], "limitations": list(snap.limitations),
    }
    if snap.netns is not None:  # only on per-namespace samples: single-namespace captures are unchanged
        out["netns"] = netns_dict(snap.netns)
    if snap.conntrack_count is not None or snap.files_allocated is not None:  # host limits (issue 16)
        out["conntrack"] = {"count": snap.conntrack_count, "stats": None if snap.conntrack_stats is None
                            else dict(snap.conntrack_stats)}
        out["files_allocated"] = snap.files_allocated
    return out


def _build(cls: Any, data: Mapping[str, Any], source: str) -> Any:
    """One model record from its dict; every field's value must have the field's type (a JSON file can
    hold anything: a string for a port, 1e999, a 400-digit counter), else a ParseError naming it."""
    import dataclasses  # (reading a capture back: `analyze`; writing one needs no dataclasses)

    names = {f.name for f in dataclasses.fields(cls)}
    try:
        obj = cls(**{k: v for k, v in data.items() if k in names})
    except TypeError as exc:
        raise ParseError(source, f"bad {cls.__name__} record: {exc}") from exc
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if not _fits(getattr(obj, f.name), hints[f.name]):
            raise ParseError(source, f"bad {cls.__name__} record: {f.name} = {_shown(getattr(obj, f.name))} "
                             f"is not {_type_name(hints[f.name])}")
    return obj


@functools.cache
def _hints(cls: Any) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(cls)


@functools.cache
def _shape(hint: Any) -> tuple[Any, tuple[Any, ...], bool]:
    """typing.get_origin and get_args of a type hint, and whether it is a union (once per hint)."""
    import typing

    origin = typing.get_origin(hint)
    return origin, typing.get_args(hint), origin in (typing.Union, types.UnionType)


MAX_INT = 2**64  # counters, queues, inodes, pids: 64-bit in the kernel
MAX_TEXT = 4096  # a host name, a command line, a limitation sentence


def _fits(value: Any, hint: Any) -> bool:
    """Whether a value read from JSON has the model's declared type (and a sane size)."""
    origin, args, union = _shape(hint)
    if union:
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool) and -MAX_INT < value < MAX_INT
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) \
            and abs(value) < 1e15
    if hint is str:
        return isinstance(value, str) and len(value) <= MAX_TEXT
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args, strict=True))
    if origin in (Mapping, dict):
        return isinstance(value, dict) and all(_fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items())
    if isinstance(hint, type) and issubclass(hint, Record):  # (the model's classes are records)
        return isinstance(value, hint)
    return True


def _type_name(hint: Any) -> str:
    """`int`, `int | None`, `Mapping[str, int]` (not "<class 'int'>")."""
    text = hint.__name__ if isinstance(hint, type) else str(hint)
    return text.replace("collections.abc.", "").replace("connwatch.model.", "")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _sysctls(data: Mapping[str, Any], source: str) -> Sysctls:
    fixed = dict(data)
    for pair in ("ip_local_port_range", "tcp_mem"):
        if fixed.get(pair) is not None:
            fixed[pair] = tuple(fixed[pair])
    if fixed.get("ip_local_reserved_ports") is not None:
        fixed["ip_local_reserved_ports"] = tuple(tuple(r) for r in fixed["ip_local_reserved_ports"])
    return _build(Sysctls, fixed, source)  # type: ignore[no-any-return]


def _listener(data: Mapping[str, Any], source: str) -> Listener:
    owner = data.get("owner")
    fixed = {**data, "owner": _build(Process, owner, source) if owner else None}
    return _build(Listener, fixed, source)  # type: ignore[no-any-return]


def _sockets(data: Mapping[str, Any] | None, source: str) -> SocketSummary | None:
    if data is None:
        return None
    dests = tuple(_build(DestinationUsage, {**d, "owner_inodes": tuple(d.get("owner_inodes", ())),
                                            "owners": tuple(_build(Process, p, source)
                                                            for p in d.get("owners", ()))}, source)
                  for d in data.get("destinations", []))
    try:
        srcs = SourceTable.of(_build(SourceUsage, x, source) for x in data.get("sources", []))
    except ValueError as exc:
        raise ParseError(source, f"sockets.sources: {exc}") from None
    return _build(SocketSummary, {"total": data.get("total", 0), "by_state": data.get("by_state", {}),  # type: ignore[no-any-return]
                                  "destinations": dests, "sources": srcs}, source)


LAST_TIME = 253402300799.0  # 9999-12-31T23:59:59Z: the last second a date can be printed for


def _timestamp(value: Any, key: str, source: str) -> float:
    """A wall-clock time in seconds since 1970; anything else is the file's error, not a crash later
    when the time is printed (a mutated capture once said 1700000001431.1, year 55840)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= LAST_TIME:
        raise ParseError(source, f"{key}: {str(value)[:40]!s} is not a time in seconds since 1970")
    return float(value)


def from_dict(data: Any, source: str) -> Snapshot:
    """Rebuild a Snapshot written by to_dict; ParseError naming `source` when it is not one."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ParseError(source, f"not a connwatch snapshot (no \"format\": \"{FORMAT}\")")
    taken_at = _timestamp(data.get("taken_at"), "taken_at", source)
    try:
        return _build(Snapshot, dict(  # type: ignore[no-any-return]
            taken_at=taken_at, monotonic=data.get("monotonic") or taken_at,
            host=_build(HostInfo, data.get("host", {"hostname": "?"}), source),
            counters=dict(data.get("counters", {})), sockstat=dict(data.get("sockstat", {})),
            sysctls=_sysctls(data.get("sysctls", {}), source),
            listeners=tuple(_listener(x, source) for x in data.get("listeners", [])),
            sockets=_sockets(data.get("sockets"), source),
            statuses=tuple(_build(SourceStatus, x, source) for x in data.get("sources", [])),
            limitations=tuple(str(x)[:MAX_TEXT] for x in data.get("limitations", [])),
            netns=_netns(data.get("netns"), source),
            conntrack_count=(data.get("conntrack") or {}).get("count"),
            conntrack_stats=(data.get("conntrack") or {}).get("stats"),
            files_allocated=data.get("files_allocated"),
        ), source)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise ParseError(source, f"bad snapshot field: {_shown(exc)}") from exc
