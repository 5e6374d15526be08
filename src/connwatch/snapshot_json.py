"""Snapshot <-> JSON-safe dict. The `snapshot` command's output is a capture `analyze` can read back."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

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
    SourceUsage,
    Sysctls,
)

FORMAT = "connwatch-snapshot"
VERSION = 1


def listener_dict(lst: Listener) -> dict[str, Any]:
    d = dataclasses.asdict(lst)
    d["endpoint"] = lst.endpoint
    return d


def netns_dict(info: NetnsInfo) -> dict[str, Any]:
    """{inode, name, container {runtime, id, name}, pod {uid, namespace, name}, pid, command, own, label}."""
    return {**dataclasses.asdict(info), "label": info.label}


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
            "destinations": [dataclasses.asdict(d) for d in s.destinations],
            "sources": [dataclasses.asdict(x) for x in s.sources],
        }
    out = {
        "format": FORMAT, "version": VERSION, "taken_at": snap.taken_at, "monotonic": snap.monotonic,
        "host": dataclasses.asdict(snap.host), "counters": dict(snap.counters),
        "sockstat": dict(snap.sockstat), "sysctls": dataclasses.asdict(snap.sysctls),
        "listeners": [listener_dict(x) for x in snap.listeners], "sockets": sockets,
        "sources": [dataclasses.asdict(x) for x in snap.statuses], "limitations": list(snap.limitations),
    }
    if snap.netns is not None:  # only on per-namespace samples: single-namespace captures are unchanged
        out["netns"] = netns_dict(snap.netns)
    if snap.conntrack_count is not None or snap.files_allocated is not None:  # host limits (issue 16)
        out["conntrack"] = {"count": snap.conntrack_count, "stats": None if snap.conntrack_stats is None
                            else dict(snap.conntrack_stats)}
        out["files_allocated"] = snap.files_allocated
    return out


def _build(cls: Any, data: Mapping[str, Any], source: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except TypeError as exc:
        raise ParseError(source, f"bad {cls.__name__} record: {exc}") from exc


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
    srcs = tuple(_build(SourceUsage, x, source) for x in data.get("sources", []))
    return SocketSummary(total=int(data.get("total", 0)), by_state=dict(data.get("by_state", {})),
                         destinations=dests, sources=srcs)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _stats(data: Any) -> dict[str, int] | None:
    return None if data is None else {str(k): int(v) for k, v in data.items()}


def from_dict(data: Any, source: str) -> Snapshot:
    """Rebuild a Snapshot written by to_dict; ParseError naming `source` when it is not one."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ParseError(source, f"not a connwatch snapshot (no \"format\": \"{FORMAT}\")")
    try:
        return Snapshot(
            taken_at=float(data["taken_at"]), monotonic=float(data.get("monotonic") or data["taken_at"]),
            host=_build(HostInfo, data.get("host", {"hostname": "?"}), source),
            counters={str(k): int(v) for k, v in data.get("counters", {}).items()},
            sockstat={str(k): int(v) for k, v in data.get("sockstat", {}).items()},
            sysctls=_sysctls(data.get("sysctls", {}), source),
            listeners=tuple(_listener(x, source) for x in data.get("listeners", [])),
            sockets=_sockets(data.get("sockets"), source),
            statuses=tuple(_build(SourceStatus, x, source) for x in data.get("sources", [])),
            limitations=tuple(str(x) for x in data.get("limitations", [])),
            netns=_netns(data.get("netns"), source),
            conntrack_count=_opt_int((data.get("conntrack") or {}).get("count")),
            conntrack_stats=_stats((data.get("conntrack") or {}).get("stats")),
            files_allocated=_opt_int(data.get("files_allocated")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ParseError(source, f"bad snapshot field: {exc}") from exc
