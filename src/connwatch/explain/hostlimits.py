"""Words for the host limits besides the backlog: a full conntrack table (told apart from a full
accept queue), TCP memory, and file handles."""

from __future__ import annotations

from connwatch.attributes.hostlimits_facts import ConntrackFacts, FileHandleFacts, TcpMemoryFacts
from connwatch.findings import Explanation, Finding, format_number

TEXTS = {
    "ConntrackDrops": "Counter attribute ConntrackDrops counts packets the kernel dropped because no connection "
    "tracking entry could be made (/proc/net/stat/nf_conntrack `drop`, summed over CPUs; the table was full).",
    "ConntrackTableUsage": "ConntrackTableUsage is this namespace's nf_conntrack_count as a percentage of "
    "nf_conntrack_max (one host-wide value each namespace is held to).",
    "TcpMemoryUsage": "TcpMemoryUsage is the memory of TCP buffers (/proc/net/sockstat TCP mem, pages, host-wide) "
    "as a percentage of the net.ipv4.tcp_mem maximum.",
    "TcpMemoryAborts": "Counter attribute TcpMemoryAborts counts connections the kernel reset because TCP was out "
    "of memory (TcpExt TCPAbortOnMemory).",
    "FileHandleUsage": "FileHandleUsage is the host's allocated file handles (/proc/sys/fs/file-nr) as a "
    "percentage of fs.file-max.",
}


def _forecast(d: ConntrackFacts) -> str:
    if d.growth_per_s is None:
        return ""
    if d.seconds_to_full is None:
        return f" The count did not grow over the last {d.interval_s} s ({format_number(d.growth_per_s)}/s)."
    return (f" It grew by {format_number(d.growth_per_s)} entries/s over the last {d.interval_s} s: at that pace the "
            f"table is full in about {format_number(d.seconds_to_full)} s.")


def explain_conntrack(f: Finding, d: ConntrackFacts) -> Explanation:
    where = f" in {d.netns}" if d.netns else ""
    drops = (f" {d.drop} packet(s) were dropped for lack of an entry in the last {d.interval_s} s"
             f" ({d.early_drop or 0} entries evicted early, {d.insert_failed or 0} inserts failed)."
             if d.drop is not None else "")
    apart = ("Clients see the same unanswered SYN as with a full accept queue (they re-send it and time out), but "
             "the packet is dropped by netfilter before TCP sees it: ")
    if d.listen_overflows is not None:
        apart += (f"the namespace's ListenOverflows rose by {d.listen_overflows} while conntrack dropped "
                  f"{d.drop if d.drop is not None else 'an unknown number of'} packet(s); ")
    apart += ("the listeners' drop counters stay still, and the kernel logs \"nf_conntrack: table full, dropping "
              "packet\". A bigger backlog will not help.")
    text = (f"The conntrack table{where} holds {d.count} of {d.max} entries ({format_number(d.percent)} %)."
            f"{_forecast(d)}{drops} {apart}")
    action = ("Raise net.netfilter.nf_conntrack_max (host-wide: set it in the host's own namespace, e.g. `sysctl -w "
              f"net.netfilter.nf_conntrack_max={max(d.max * 2, 262144)}`, with nf_conntrack_buckets about max/4), "
              "shorten the timeouts that hold entries (nf_conntrack_tcp_timeout_established, _time_wait), or take "
              "the service's traffic out of tracking (nftables `notrack` in a raw-priority prerouting chain for its "
              "port). See `conntrack -S` and `conntrack -L | sort | uniq -c` for who holds the entries.")
    return Explanation(TEXTS[f.measurement.attribute], text, action, "")


def explain_memory(f: Finding, d: TcpMemoryFacts) -> Explanation:
    state = ("above the pressure threshold: TCP shrinks socket buffers" if d.under_pressure
             else "below the pressure threshold")
    counted = []
    if d.pressures:
        counted.append(f"entered memory pressure {d.pressures} time(s) (TCPMemoryPressures)")
    if d.aborts_on_memory:
        counted.append(f"reset {d.aborts_on_memory} connection(s) for lack of memory (TCPAbortOnMemory; the kernel "
                       "logs \"out of memory -- consider tuning tcp_mem\" or \"too many orphaned sockets\")")
    orphans = (f" {d.orphans} orphaned socket(s) (closed by their application, still sending) of tcp_max_orphans "
               f"{d.tcp_max_orphans}." if d.orphans is not None and d.tcp_max_orphans else "")
    text = (f"TCP buffers use {d.pages} pages, {format_number(d.percent_of_max)} % of tcp_mem max {d.tcp_mem_max} "
            f"(pressure at {d.tcp_mem_pressure}): {state}. In the last {d.interval_s} s the kernel "
            f"{'; '.join(counted) if counted else 'reset no connection for lack of memory'}.{orphans} Above the "
            "maximum, new sockets cannot get buffer memory and connections are reset, on every port at once.")
    action = ("Find what holds buffer memory (`ss -tm`: large Recv-Q/Send-Q on slow or stuck peers, orphans); raise "
              "net.ipv4.tcp_mem if the host has the RAM (pages: min pressure max), and lower tcp_rmem/tcp_wmem maxima "
              "if a few sockets hoard it.")
    return Explanation(TEXTS[f.measurement.attribute], text, action, "")


def explain_files(f: Finding, d: FileHandleFacts) -> Explanation:
    owners = "; ".join(f"{o.endpoint} pid {o.pid} ({o.command}) {o.open_fds} of {o.fd_limit}" for o in d.owners
                       if o.fd_limit)
    text = (f"The host has {d.allocated} of {d.file_max} file handles allocated ({format_number(d.percent)} %). "
            "At file-max, accept() and socket() fail with ENFILE in every process, whatever its own limit."
            + (f" Listener owners against their own RLIMIT_NOFILE (EMFILE): {owners}." if owners else ""))
    action = ("Find the processes holding most descriptors (`ls /proc/*/fd | wc -l` per pid, lsof) and fix leaks; "
              "raise fs.file-max (sysctl -w fs.file-max=N, persisted in /etc/sysctl.d/) if the load is legitimate.")
    return Explanation(TEXTS[f.measurement.attribute], text, action, "")
