"""Host limits besides the backlog that turn connections away: ConntrackTableUsage, ConntrackDrops,
TcpMemoryUsage, TcpMemoryAborts, FileHandleUsage.

(previous Snapshot, current Snapshot) -> Measurements. Pure. Inputs: sources/hostlimits.py.

- ConntrackTableUsage (host, gauge %): the namespace's nf_conntrack_count as % of nf_conntrack_max, with a
  forecast from the count's growth over the interval (seconds to full).
- ConntrackDrops (host, counter): /proc/net/stat/nf_conntrack `drop` delta, summed over CPUs: packets the
  kernel dropped because no conntrack entry could be made. A new connection's SYN is dropped before TCP
  sees it, so clients see the same unanswered SYN as with a full accept queue; the words tell them apart.
- TcpMemoryUsage (host, gauge %): sockstat TCP mem (pages) as % of tcp_mem max; TcpMemoryAborts (host,
  counter): TcpExt TCPAbortOnMemory delta ("out of memory -- consider tuning tcp_mem").
- FileHandleUsage (host, gauge %): file-nr allocated as % of file-max, with the listener owners' own limits.
"""

from __future__ import annotations

from connwatch.attributes.hostlimits_facts import ConntrackFacts, FileHandleFacts, OwnerFds, TcpMemoryFacts
from connwatch.attributes.registry import AttributeSpec, Need, Subject
from connwatch.explain import hostlimits as words
from connwatch.findings import Measurement
from connwatch.model import Snapshot
from connwatch.rules.rule import Rule

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import Any

    from connwatch.rules.config import Config

CT, MEM, FILES = "CONNTRACK(host)", "TCPMEM(host)", "FILES(host)"
HOST = {"port": None}


_CT_NEED = Need("nf_conntrack_count", lambda s: s.conntrack_count is not None and bool(s.sysctls.nf_conntrack_max),
                 "no conntrack data: capture /proc/sys/net/netfilter/nf_conntrack_{count,max} (and conntrack -S)")
_MEM_NEED = Need("net.ipv4.tcp_mem", lambda s: s.sysctls.tcp_mem is not None and "TCP.mem" in s.sockstat,
                  "TCP memory needs net.ipv4.tcp_mem and /proc/net/sockstat from the host's own namespace")
_FILES_NEED = Need("/proc/sys/fs/file-nr", lambda s: s.files_allocated is not None and bool(s.sysctls.file_max),
                    "capture /proc/sys/fs/file-nr")

# What the memory attributes read that /metrics exports by default (`run --kernel-counters needed`).
_MEM_INPUTS = ("TCP.mem", "TCP.orphan", "TcpExt.TCPMemoryPressures", "TcpExt.TCPAbortOnMemory")

SUBJECT_SPECS: tuple[AttributeSpec[Any], ...] = (
    AttributeSpec("ConntrackDrops", "packets", True, words.TEXTS["ConntrackDrops"], ConntrackFacts,
                  words.explain_conntrack, (Rule("ConntrackDrops", 0, severity=2, alert_class="conntrack"),),
                  (_CT_NEED,), scope="host"),
    AttributeSpec("ConntrackTableUsage", "%", False, words.TEXTS["ConntrackTableUsage"], ConntrackFacts,
                  words.explain_conntrack,
                  (Rule("ConntrackTableUsage", 80, severity=3, alert_class="conntrack"),
                   Rule("ConntrackTableUsage", 95, severity=2, alert_class="conntrack")),
                  (_CT_NEED,), scope="host", folds_into=("ConntrackDrops",)),
    AttributeSpec("TcpMemoryUsage", "%", False, words.TEXTS["TcpMemoryUsage"], TcpMemoryFacts, words.explain_memory,
                  (Rule("TcpMemoryUsage", 80, severity=3, alert_class="memory"),
                   Rule("TcpMemoryUsage", 95, severity=2, alert_class="memory")), (_MEM_NEED,), scope="host",
                  folds_into=("TcpMemoryAborts",), inputs=_MEM_INPUTS),
    AttributeSpec("TcpMemoryAborts", "conns", True, words.TEXTS["TcpMemoryAborts"], TcpMemoryFacts,
                  words.explain_memory, (Rule("TcpMemoryAborts", 0, severity=3, alert_class="memory"),),
                  (_MEM_NEED,), scope="host", inputs=_MEM_INPUTS),
    AttributeSpec("FileHandleUsage", "%", False, words.TEXTS["FileHandleUsage"], FileHandleFacts, words.explain_files,
                  (Rule("FileHandleUsage", 80, severity=3, alert_class="files"),
                   Rule("FileHandleUsage", 95, severity=2, alert_class="files")), (_FILES_NEED,), scope="host"),
)


def _delta(before: int | None, after: int | None) -> int | None:
    return None if before is None or after is None or after < before else after - before


def _stat(prev: Snapshot, cur: Snapshot, key: str) -> int | None:
    if prev.conntrack_stats is None or cur.conntrack_stats is None:
        return None
    return _delta(prev.conntrack_stats.get(key), cur.conntrack_stats.get(key))


def _conntrack(prev: Snapshot, cur: Snapshot, interval: float) -> list[Measurement]:
    count, maximum = cur.conntrack_count, cur.sysctls.nf_conntrack_max
    if count is None or not maximum:
        return []
    growth = None if prev.conntrack_count is None else (count - prev.conntrack_count) / interval
    to_full = round((maximum - count) / growth, 1) if growth and growth > 0 else None
    facts = ConntrackFacts(
        round(interval, 3), count, maximum, round(100.0 * count / maximum, 3), prev.conntrack_count,
        None if growth is None else round(growth, 3), to_full, _stat(prev, cur, "drop"),
        _stat(prev, cur, "early_drop"), _stat(prev, cur, "insert_failed"),
        _delta(prev.counters.get("TcpExt.ListenOverflows"), cur.counters.get("TcpExt.ListenOverflows")),
        cur.netns.label if cur.netns is not None else None)
    out = [Measurement("ConntrackTableUsage", HOST, CT, facts.percent, "%", "value", facts)]
    if facts.drop is not None:
        out.append(Measurement("ConntrackDrops", HOST, CT, float(facts.drop), "packets", "value", facts))
    return out


def _memory(prev: Snapshot, cur: Snapshot, interval: float) -> list[Measurement]:
    mem, pages = cur.sysctls.tcp_mem, cur.sockstat.get("TCP.mem")
    if mem is None or pages is None or not mem[2]:
        return []

    def counter(name: str) -> int | None:
        return _delta(prev.counters.get(name), cur.counters.get(name))

    facts = TcpMemoryFacts(round(interval, 3), pages, *mem, round(100.0 * pages / mem[2], 3), pages > mem[1],
                           counter("TcpExt.TCPMemoryPressures"), counter("TcpExt.TCPAbortOnMemory"),
                           cur.sockstat.get("TCP.orphan"), cur.sysctls.tcp_max_orphans)
    out = [Measurement("TcpMemoryUsage", HOST, MEM, facts.percent_of_max, "%", "value", facts)]
    if facts.aborts_on_memory is not None:
        out.append(Measurement("TcpMemoryAborts", HOST, MEM, float(facts.aborts_on_memory), "conns", "value",
                               facts))
    return out


def _files(cur: Snapshot) -> list[Measurement]:
    """Host-wide: judged once, in connwatch's own namespace (every namespace shows the same file-nr)."""
    allocated, maximum = cur.files_allocated, cur.sysctls.file_max
    if allocated is None or not maximum or (cur.netns is not None and not cur.netns.own):
        return []
    owners = tuple(OwnerFds(x.endpoint, x.owner.pid, x.owner.command, x.owner.open_fds, x.owner.fd_limit)
                   for x in cur.listeners if x.owner is not None and x.owner.open_fds is not None)
    facts = FileHandleFacts(allocated, maximum, round(100.0 * allocated / maximum, 3), owners)
    return [Measurement("FileHandleUsage", HOST, FILES, facts.percent, "%", "value", facts)]


def measure(prev: Snapshot, cur: Snapshot, config: Config | None = None) -> list[Measurement]:
    interval = max(cur.monotonic - prev.monotonic, 1e-9)
    return [*_conntrack(prev, cur, interval), *_memory(prev, cur, interval), *_files(cur)]


SUBJECT = Subject("hostlimits", SUBJECT_SPECS, measure)
