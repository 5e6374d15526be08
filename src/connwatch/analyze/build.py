"""Capture files -> one Snapshot per capture, streamed in two passes.

Pass 1 parses every non-connection file (counters, sysctls, uptime, snapshot JSON) and collects
listeners from connection lists. Pass 2 re-reads the connection lists and feeds every other
socket to parsers/sock_diag.SocketAggregator with the listening ports of the whole capture, so
inbound and outbound sockets are told apart exactly as on the live path. Memory is bounded by
the number of distinct (source, port) and (local, destination) keys, not by file size.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

from connwatch import snapshot_json
from connwatch.analyze import detect as fmt
from connwatch.analyze.hostfacts import (
    host_counts,
    merge_sysctls,
    parse_date,
    parse_sysctl_lines,
    parse_uptime,
    sysctl_file,
    sysctls_from,
)
from connwatch.analyze.inputs import InputFile, iter_line_blocks, iter_lines, read_head
from connwatch.analyze.rowpass import DIALECT, RowScan, combine, conn_rows, scan_rows, young_limit
from connwatch.errors import ParseError
from connwatch.model import HostInfo, Listener, Snapshot, SocketSummary, Sysctls, TcpState
from connwatch.parsers.conn_rows import ConnRow, raw_address
from connwatch.parsers.conntrack import conntrack_note, parse_conntrack_stats
from connwatch.parsers.conntrack_list import conntrack_list_note, parse_conntrack_list
from connwatch.parsers.netstat_snmp import parse_netstat_snmp, parse_snmp6
from connwatch.parsers.netstat_stats import parse_linux_netstat_s, parse_nstat, parse_windows_netstat_s
from connwatch.parsers.proc_tcp import parse_proc_tcp
from connwatch.parsers.sock_diag import SocketAggregator
from connwatch.parsers.sockstat import parse_sockstat
from connwatch.parsers.ss_text import parse_ss_summary
from connwatch.parsers.windows_text import parse_netsh_dynamicport

_DIALECT = DIALECT
_COUNTER_PARSERS = {fmt.PROC_NETSTAT: parse_netstat_snmp, fmt.PROC_SNMP: parse_netstat_snmp,
                    fmt.PROC_SNMP6: parse_snmp6}
_LISTEN = int(TcpState.LISTEN)
_TEXT_LISTINGS = frozenset({fmt.SS, fmt.POWERSHELL_TCP, fmt.POWERSHELL_LIST, fmt.ZOS_CONN, fmt.LSOF, fmt.SNMP_TCP})


@dataclass
class Capture:
    """What one capture (a file, a set of files, a directory or tarball) showed."""

    name: str
    files: list[dict[str, object]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    formats: set[str] = field(default_factory=set)
    counters: dict[str, int] = field(default_factory=dict)
    sockstat: dict[str, int] = field(default_factory=dict)
    sysctls: Sysctls = field(default_factory=Sysctls)
    conntrack_count: int | None = None  # `sysctl -a` net.netfilter.nf_conntrack_count
    conntrack_stats: dict[str, int] | None = None  # `conntrack -S`, summed over CPUs
    files_allocated: int | None = None  # `sysctl -a` fs.file-nr
    listeners: dict[tuple[int, str, int], list[Listener]] = field(default_factory=dict)
    uptime_s: float | None = None
    taken_at: float | None = None  # from a `date` file in the capture
    hostname: str = ""
    snapshot: Snapshot | None = None
    namespaces: list[Snapshot] = field(default_factory=list)  # a snapshot's other network namespaces
    mtime: float | None = None
    connection_rows: int = 0
    skipped: int = 0
    conn_files: list[tuple[InputFile, str, str]] = field(default_factory=list)
    skipped_parts: list[dict[str, object]] = field(default_factory=list)  # {path, lines, reason}
    conn_counts: dict[int, int] = field(default_factory=dict)  # id(InputFile) -> connection rows
    dropped_conn: list[str] = field(default_factory=list)
    kinds_seen: dict[str, str] = field(default_factory=dict)  # format -> where it was first read
    scans: dict[int, RowScan] = field(default_factory=dict)  # id(InputFile) -> its one pass (analyze/rowpass.py)

    @property
    def timestamped(self) -> bool:
        """True when the capture says when it was taken (snapshot JSON or a `date` file), not file times."""
        return self.snapshot is not None or self.taken_at is not None

    @property
    def platform(self) -> str:
        found = {fmt.PLATFORM.get(k, "linux") for k in self.formats if k not in (fmt.UPTIME, fmt.SYSCTL_A)}
        if self.snapshot is not None:
            found.add(self.snapshot.host.platform)
        return found.pop() if len(found) == 1 else "linux"


def _rows(f: InputFile, kind: str, enc: str, notes: list[str]) -> Iterator[ConnRow]:
    return conn_rows(iter_lines(f, enc), f.name, kind, notes)


def _add_listeners(cap: Capture, found: list[Listener]) -> None:
    """Merge a file's listeners; a later file replaces one that showed less (e.g. -Lan over -an)."""
    mine: dict[tuple[int, str, int], list[Listener]] = {}
    for lst in found:
        mine.setdefault((lst.family, lst.address, lst.port), []).append(lst)
    for key, group in mine.items():
        have = cap.listeners.get(key)
        if have is None or (have[0].backlog is None and group[0].backlog is not None) or (
                have[0].drops is None and group[0].drops is not None):
            cap.listeners[key] = group


def first_pass(cap: Capture, f: InputFile, kind: str, enc: str, scan: RowScan | None = None) -> int:
    """Parse one file; returns the number of records it gave. `scan`: the file's connection listing,
    already read (analyze/run.py reads a plain file's lines once for its parts and its rows)."""
    lines = iter_lines(f, enc)
    if kind == fmt.SNAPSHOT:
        try:
            data = json.loads(joined(lines, f.name, MAX_JSON), parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            raise ParseError(f.name, f"invalid JSON ({exc.msg})", exc.lineno) from None
        except (ValueError, RecursionError) as exc:  # a 5,000-digit number, NaN, nesting too deep
            raise ParseError(f.name, f"invalid JSON ({str(exc)[:80]})") from None
        cap.snapshot = snapshot_json.from_dict(data, f.name)
        more = data.get("namespaces") if isinstance(data, dict) else None
        if isinstance(more, list):  # `connwatch snapshot --netns all`: each namespace a capture of its own
            cap.namespaces = [snapshot_json.from_dict(x, f"{f.name} namespaces[{i}]") for i, x in enumerate(more)]
        return 1 + len(cap.namespaces)
    if kind in _COUNTER_PARSERS:
        got = _COUNTER_PARSERS[kind](joined(lines, f.name, MAX_TABLE), f.name)
    elif kind == fmt.NETSTAT_S_LINUX:
        got = parse_linux_netstat_s(lines, f.name, cap.notes)
    elif kind == fmt.NETSTAT_S_WINDOWS:
        got = parse_windows_netstat_s(lines, f.name, cap.notes)
    elif kind == fmt.NSTAT:
        got = parse_nstat(lines, f.name)
    elif kind in (fmt.PROC_SOCKSTAT, fmt.PROC_SOCKSTAT6, fmt.SS_SUMMARY):
        stat = parse_ss_summary(lines, f.name) if kind == fmt.SS_SUMMARY else parse_sockstat(
            joined(lines, f.name, MAX_TABLE), f.name)
        cap.sockstat.update(stat)
        return len(stat)
    elif kind == fmt.UPTIME:
        number, text = next(((n, x) for n, x in enumerate(lines, start=1) if x.strip()), (1, ""))
        cap.uptime_s = parse_uptime(text, f.name, number)
        return 1
    elif kind == fmt.CONNTRACK_S:
        stats = parse_conntrack_stats(lines, f.name)
        cap.notes.append(conntrack_note(stats, f.label))
        cap.conntrack_stats = stats
        return stats["cpus"]
    elif kind == fmt.CONNTRACK_L:
        listed = parse_conntrack_list(lines, f.name)
        cap.notes.append(conntrack_list_note(listed, f.label))
        return listed.entries
    elif kind == fmt.NETSH_DYNAMICPORT:
        cap.sysctls = merge_sysctls(cap.sysctls, Sysctls(ip_local_port_range=parse_netsh_dynamicport(lines, f.name)))
        return 1
    elif kind == fmt.SYSCTL_A:
        values = parse_sysctl_lines(lines, f.name)
        cap.sysctls = merge_sysctls(cap.sysctls, sysctls_from(values, f.name))
        count, files = host_counts(values, f.name)
        cap.conntrack_count = count if count is not None else cap.conntrack_count
        cap.files_allocated = files if files is not None else cap.files_allocated
        return len(values)
    else:
        return _first_pass_sockets(cap, f, kind, enc, scan)
    cap.counters.update(got)
    return len(got)


MAX_JSON = 64 << 20  # a snapshot of 100,000 listeners is about 30 MB
MAX_TABLE = 4 << 20  # /proc/net/netstat, snmp, sockstat: a few KB on any kernel


def joined(lines: Iterator[str], name: str, limit: int) -> str:
    """The lines of a file read whole (JSON, the /proc counter tables), at most `limit` characters."""
    out: list[str] = []
    size = 0
    for line in lines:
        size += len(line) + 1
        if size > limit:
            raise ParseError(name, f"more than {limit >> 20} MiB for a file read whole: not this format")
        out.append(line)
    return "\n".join(out)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number a snapshot holds")


def listening_ports(cap: Capture) -> set[int]:
    return {x.port for group in cap.listeners.values() for x in group}


def _first_pass_sockets(cap: Capture, f: InputFile, kind: str, enc: str, scan: RowScan | None) -> int:
    found: list[Listener] = []
    count = 0
    if kind in (fmt.PROC_TCP, fmt.PROC_TCP6):
        seen = [0]
        parse_proc_tcp(_counting(iter_lines(f, enc), seen), f.name, 6 if kind == fmt.PROC_TCP6 else 4, found, None)
        count = max(seen[0] - 1, 0)  # minus the header line
    else:
        if scan is None:
            scan = scan_rows(lambda: iter_line_blocks(f, enc), f.name, kind, listening_ports(cap),
                             young_limit(cap.sysctls.tcp_tw_reuse_delay))
        cap.notes.extend(n for n in dict.fromkeys(scan.notes) if n not in cap.notes)
        found, count = scan.listeners, scan.rows
        cap.scans[id(f)] = scan
    _add_listeners(cap, found)
    connections = count - len(found)
    if connections and (kind in _DIALECT or kind in _TEXT_LISTINGS):
        _replace_connections(cap, f)
    cap.connection_rows += connections
    cap.conn_counts[id(f)] = connections
    cap.conn_files.append((f, kind, enc))
    return count


def _replace_connections(cap: Capture, f: InputFile) -> None:
    """A second text listing of connections (two `ss -tan`, or ss and netstat) would count each socket
    twice: its connections replace the earlier listing's (listeners are merged, not replaced)."""
    earlier = [(g, k, e) for g, k, e in cap.conn_files
               if (k in _DIALECT or k in _TEXT_LISTINGS) and cap.conn_counts.get(id(g), 0) > 0]
    if not earlier:
        return
    for item in earlier:
        cap.conn_files.remove(item)
        cap.scans.pop(id(item[0]), None)
        cap.connection_rows -= cap.conn_counts.pop(id(item[0]), 0)
        cap.dropped_conn.append(item[0].label)
    cap.notes.append(f"several connection listings in one capture: the connections of the last ({f.label}) are "
                     f"used, not also those of {', '.join(x[0].label for x in earlier)} (that would count sockets "
                     "twice); pass captures taken at different times as separate files with --interval")


def _counting(lines: Iterator[str], seen: list[int]) -> Iterator[str]:
    """Pass lines through, counting the non-blank ones (streamed: no list of the file)."""
    for line in lines:
        if line.strip():
            seen[0] += 1
        yield line


def _text_summary(cap: Capture, ports: frozenset[int]) -> SocketSummary:
    """The sockets of text listings from their one pass; a file whose pass guessed the listening ports
    or the reuse delay wrong (analyze/rowpass.py) is read again with the capture's."""
    young = young_limit(cap.sysctls.tcp_tw_reuse_delay)
    scans = []
    for f, kind, enc in cap.conn_files:
        scan = cap.scans.get(id(f))
        if scan is None or not scan.valid_for(ports, young):
            try:
                scan = scan_rows(functools.partial(iter_line_blocks, f, enc), f.name, kind, ports, young)
            except ParseError as exc:  # the file changed since the first pass (analyze/archive.py)
                cap.errors.append(str(exc))
                continue
        scans.append(scan)
    summary, unresolved = combine(scans)
    if unresolved:
        cap.notes.append(f"{unresolved} sockets were shown with host names (no -n): counted by state only, "
                         "not per destination or source")
    return summary


def _second_pass(cap: Capture, agg: SocketAggregator) -> None:
    unresolved = 0
    for f, kind, enc in cap.conn_files:
        try:
            if kind in (fmt.PROC_TCP, fmt.PROC_TCP6):
                parse_proc_tcp(iter_lines(f, enc), f.name, 6 if kind == fmt.PROC_TCP6 else 4, [], agg)
                continue
            for row in _rows(f, kind, enc, []):
                if row.state == _LISTEN:
                    continue
                if not row.resolved or row.remote is None:
                    agg.total += 1
                    agg.by_state[row.state & 15] += 1
                    unresolved += 1
                    continue
                _feed(agg, row)
        except ParseError as exc:  # cannot happen after a clean first pass unless the file changed
            cap.errors.append(str(exc))
    if unresolved:
        cap.notes.append(f"{unresolved} sockets were shown with host names (no -n): counted by state only, "
                         "not per destination or source")


def _feed(agg: SocketAggregator, row: ConnRow) -> None:
    fam, src = raw_address(row.local, row.family)
    rfam, dst = raw_address(row.remote or "", row.family)
    if rfam != fam:  # IPv4 local with IPv6 peer text (or the reverse): use the IPv6 form for both
        fam = socket.AF_INET6
        src = src if len(row.local) and ":" in row.local else b"\0" * 10 + b"\xff\xff" + src[:4]
        dst = dst if ":" in (row.remote or "") else b"\0" * 10 + b"\xff\xff" + dst[:4]
    agg.add(fam, row.state, 0, 0, socket.htons(row.local_port), socket.htons(row.remote_port), src, dst,
            0, 0, 0, row.expires_ms, row.recv_q or 0, row.send_q or 0, 0, 0)


def read_file_into(cap: Capture, f: InputFile, explicit_kind: str | None = None) -> None:
    """Detect and parse one file (pass 1); a bad file is recorded in cap.errors, never raised."""
    try:
        head, enc = read_head(f)
        sysctl = sysctl_file(f.rel)
        if sysctl is not None:
            value = head.decode(enc, "replace")
            cap.sysctls = merge_sysctls(cap.sysctls, sysctls_from({sysctl: value}, f.name))
            return
        base = f.rel.rsplit("/", 1)[-1]
        if base == "hostname" and not f.explicit:
            cap.hostname = head.decode(enc, "replace").strip()[:255]
            return
        if base == "date" and not f.explicit:
            cap.taken_at = parse_date(head.decode(enc, "replace"))
            return
        kind = explicit_kind or fmt.detect(head.decode(enc, "replace"), f.rel)
        if kind is None:
            if f.explicit:
                raise ParseError(f.name, "unrecognised format (not ss, netstat, netstat -s, nstat, /proc/net "
                                 "or a connwatch snapshot)")
            cap.skipped += 1
            return
        records = first_pass(cap, f, kind, enc)
    except ParseError as exc:
        if f.explicit or kind_known(f):
            cap.errors.append(str(exc))
        else:
            cap.skipped += 1
        return
    cap.formats.add(kind)
    cap.mtime = max(cap.mtime or 0.0, f.mtime or 0.0) or None
    cap.files.append({"path": f.name, "format": kind, "records": records})


def kind_known(f: InputFile) -> bool:
    """Inside a directory: files whose path says they are a source we read (errors there are reported)."""
    rel = f.rel
    return rel.startswith(("proc/net/", "net/")) or "/proc/net/" in rel or "sos_commands/networking/" in rel


def finish(cap: Capture, port_range: tuple[int, int]) -> Snapshot:
    """The capture's Snapshot: listeners, socket aggregates, counters, sysctls, host."""
    if cap.snapshot is not None and not cap.conn_files and not cap.counters:
        return cap.snapshot
    listeners = [x for group in cap.listeners.values() for x in group]
    ports = frozenset(x.port for x in listeners)
    if not listeners and cap.conn_files:
        ports = _inferred_ports(cap, port_range)
    summary = None
    complete = any(kind in (fmt.PROC_TCP, fmt.PROC_TCP6) for _f, kind, _e in cap.conn_files)  # every socket
    if cap.conn_files and cap.connection_rows == 0 and not complete:
        cap.notes.append("the socket listings show only listening sockets (`ss -l`, `netstat -L`): no "
                         "connections to measure per destination or source")
    elif cap.conn_files and not any(kind in (fmt.PROC_TCP, fmt.PROC_TCP6) for _f, kind, _e in cap.conn_files):
        summary = _text_summary(cap, frozenset(ports))
    elif cap.conn_files:  # /proc/net/tcp (inodes, accept queues): one aggregator for the capture, as live
        agg = SocketAggregator(ports, cap.sysctls.tcp_tw_reuse_delay)
        _second_pass(cap, agg)
        summary = agg.summary()
        if not all(kind in (fmt.PROC_TCP, fmt.PROC_TCP6) for _f, kind, _e in cap.conn_files):
            # only /proc/net/tcp carries socket inodes: elsewhere "inode 0" would read as "not accepted yet"
            summary = dataclasses.replace(summary, accepts=None)
    listeners.sort(key=lambda x: (x.port, x.family, x.address))
    if any(x.backlog is None for x in listeners) and cap.formats & {fmt.NETSTAT_WINDOWS, fmt.NETSTAT_BSD,
                                                                       fmt.POWERSHELL_TCP, fmt.ZOS_CONN, fmt.LSOF,
                                                                       fmt.SNMP_TCP, fmt.POWERSHELL_LIST}:
        cap.notes.append("this netstat shows no accept-queue lengths: the listeners' queue reads 0 for "
                         "'not shown'")
    base = cap.snapshot
    taken = base.taken_at if base else (cap.taken_at or cap.mtime or 0.0)
    host = base.host if base else HostInfo(hostname=cap.hostname or "unknown host", platform=cap.platform)
    return Snapshot(
        taken_at=taken, monotonic=base.monotonic if base else taken, host=host,
        counters={**(base.counters if base else {}), **cap.counters},
        sockstat={**(base.sockstat if base else {}), **cap.sockstat},
        sysctls=merge_sysctls(base.sysctls, cap.sysctls) if base else cap.sysctls,
        listeners=tuple(listeners) if listeners or not base else base.listeners,
        sockets=summary if summary is not None else (base.sockets if base else None),
        statuses=base.statuses if base else (), limitations=tuple(cap.notes),
        conntrack_count=cap.conntrack_count if cap.conntrack_count is not None else (
            base.conntrack_count if base else None),
        conntrack_stats=cap.conntrack_stats if cap.conntrack_stats is not None else (
            base.conntrack_stats if base else None),
        files_allocated=cap.files_allocated if cap.files_allocated is not None else (
            base.files_allocated if base else None),
    )


def _inferred_ports(cap: Capture, port_range: tuple[int, int]) -> frozenset[int]:
    """No LISTEN rows (a grep'ed listing): a local port outside the ephemeral range that several sockets
    share is taken as a listening port, so their peers count as sources, not destinations."""
    counts: dict[int, int] = {}
    texts = [(f, kind, enc) for f, kind, enc in cap.conn_files if kind not in (fmt.PROC_TCP, fmt.PROC_TCP6)]
    known = [cap.scans[id(f)].local_ports for f, _k, _e in texts if id(f) in cap.scans]
    if len(known) == len(texts) and all(x is not None for x in known):  # counted in the one pass
        for per_port in known:
            for port, n in (per_port or {}).items():
                counts[port] = counts.get(port, 0) + n
        texts = []
    for f, kind, enc in texts:
        try:
            for row in _rows(f, kind, enc, []):
                if row.remote is not None and row.state != int(TcpState.SYN_SENT):
                    counts[row.local_port] = counts.get(row.local_port, 0) + 1
        except ParseError as exc:  # the file changed since the first pass (analyze/archive.py)
            cap.errors.append(str(exc))
    low, high = port_range
    ports = frozenset(p for p, n in counts.items() if n >= 2 and not low <= p <= high)
    if ports:
        cap.notes.append(f"the capture shows no LISTEN rows; port(s) {', '.join(map(str, sorted(ports)))} "
                         "taken as listening (several sockets share them outside the ephemeral range)")
    return ports
