"""Words for backlog alerts, built from measured facts.

Answers the questions support asked in seed 000: did it clear, were other ports hit, is the
application new; and says why (backlog in force = min(listen() argument, somaxconn), fixed at
listen() time) and what to change.
"""

from __future__ import annotations

from connwatch.attributes.backlog_facts import (
    BacklogContext,
    HostFacts,
    ListenerFacts,
    OwnerFacts,
    PortFacts,
    PortRejectFacts,
)
from connwatch.explain import accept, process_words, rejects
from connwatch.findings import Explanation, Finding, format_number
from connwatch.timewords import age_words  # (its home: the tables word ages without the rules)

TEXTS = {
    "BacklogRejectsByPort": "Counter attribute BacklogRejectsByPort counts the connection requests the port's "
    "backlog turned away — accept-queue overflows and SYNs dropped with a full SYN queue — over every listener "
    "on the port; the namespace's TcpExt ListenOverflows and TCPReqQFullDrop bound it, so listener drops that "
    "are not rejections (TCP_DEFER_ACCEPT discards, the second count of an ACK-time overflow) are left out. "
    "It counts dropped requests, not distinct clients.",
    "AcceptQueueFill": "AcceptQueueFill measures the accept-queue length as a percentage of the backlog in "
    "force; the kernel admits one connection beyond the backlog, so a full queue reads above 100 %.",
    "ListenOverflows": "Counter attribute ListenOverflows is the host-wide TcpExt ListenOverflows delta: "
    "packets dropped because some listener's accept queue was full.",
    "SynQueueDrops": "Counter attribute SynQueueDrops is the host-wide TcpExt TCPReqQFullDrop delta: SYNs "
    "dropped because the SYN queue was full and syncookies could not be used.",
}

HOST_CLIENT_VIEW = (
    "A client whose SYN is dropped sees no error: it re-sends the SYN with backoff until connect() times "
    "out; each re-send that is dropped counts again, so one client can account for several drops."
)


def over(d: BacklogContext) -> str:
    """'over 5.0 s', or 'since boot' for a single offline capture (no interval)."""
    return f"over {d.interval_s} s" if d.interval_s is not None else "since boot"


def owner_words(listener: ListenerFacts) -> str:
    owner = listener.owner
    if owner is None:
        return "owner unknown (not visible to this user)"
    return process_words({"pid": owner.pid, "command": owner.command, "user": owner.user})


def _cleared(d: PortFacts) -> str:
    worst = max(d.listeners, key=lambda x: x.fill or 0)
    if d.queue_full_now:
        return (f"It persists: at the last sample the queue of {worst.endpoint} held {worst.queue} "
                f"of a backlog of {worst.backlog} (full), so new connections are still being dropped.")
    return (f"At the last sample the queue had room again ({worst.queue} of {worst.backlog} on "
            f"{worst.endpoint}): the burst has passed for now; watch whether it recurs.")


def _application(d: PortFacts, first_seen_s: float | None) -> list[str]:
    out = []
    for lst in d.listeners:
        owner = lst.owner
        if owner is None:
            continue
        if owner.age_s is not None:
            new = " (recently started: a new or restarted application)" if owner.age_s < 3600 else ""
            out.append(f"{lst.endpoint} is served by {owner_words(lst)}, running for {age_words(owner.age_s)}"
                       f"{new}; the listener is at most that old.")
        if _at_fd_limit(owner):
            out.append(f"pid {owner.pid} holds {owner.open_fds} of its {owner.fd_limit} file "
                       "descriptors: accept() fails with EMFILE, so the queue cannot drain.")
    if first_seen_s is not None:
        out.append(f"connwatch first saw this port listening {age_words(first_seen_s)} ago.")
    return out


def _at_fd_limit(owner: OwnerFacts) -> bool:
    """Within 5 % of RLIMIT_NOFILE: the next accept() is likely to fail with EMFILE."""
    fds, limit = owner.open_fds, owner.fd_limit
    return fds is not None and limit is not None and limit > 0 and fds >= 0.95 * limit


def _fd_starved(d: PortFacts) -> bool:
    return any(_at_fd_limit(x.owner) for x in d.listeners if x.owner is not None)


# Where the somaxconn cap lives, per platform: (sysctl name, command that sets it, file that keeps it).
SOMAXCONN = {
    "bsd": ("kern.ipc.somaxconn", "sysctl kern.ipc.somaxconn={n}", "/etc/sysctl.conf"),
    "linux": ("net.core.somaxconn", "sysctl -w net.core.somaxconn={n}", "/etc/sysctl.d/"),
}


def _backlog_cause(d: PortFacts) -> tuple[str, str]:
    somax = d.somaxconn
    name, setter, keep = SOMAXCONN.get(d.platform or "linux", SOMAXCONN["linux"])
    backlogs = sorted({x.backlog for x in d.listeners if x.backlog is not None})
    if not backlogs:
        return ("The backlog in force could not be read (no sock_diag: /proc/net/tcp shows no backlog).", "")
    if somax is None:
        return (f"The backlog in force is {backlogs[0]}; {name} could not be read, so whether it or "
                "the application's listen() argument set the backlog is unknown.",
                f"Raise the application's backlog setting (listen() argument) and {name} if it "
                "caps it, then restart the service.")
    b = backlogs[0]
    if b >= somax:
        return (f"The backlog in force ({b}) equals {name} ({somax}): the application's listen() "
                f"argument was capped by somaxconn (effective backlog = min(listen backlog, somaxconn), fixed "
                f"when listen() is called).",
                f"Raise {name} ({setter.format(n=max(somax * 4, 1024))}, persisted in {keep}) and the "
                "application's backlog, then restart the service: an existing listener keeps its backlog until "
                "it calls listen() again.")
    return (f"The application asked listen() for a backlog of {b}; somaxconn ({somax}) would allow up to "
            f"{somax}. Effective backlog = min(listen backlog, somaxconn), fixed when listen() is called.",
            f"Raise the application's backlog setting (listen() argument; e.g. nginx `listen ... backlog=`, "
            f"a server's `backlog`/`acceptCount` option) towards {somax}, then restart it.")


def explain_port(f: Finding, d: PortFacts) -> Explanation:
    m = f.measurement
    first_seen = m.get("first_seen_s")
    cause, change = _backlog_cause(d)
    if m.attribute == "AcceptQueueFill":
        facts = [f"The fullest listener's accept queue is at {format_number(m.value)} % of its backlog; the high "
                 f"limit is {format_number(f.limit)} %. A queue that stays full means the application does not "
                 "call accept() as fast as connections complete; once it is full, new SYNs are dropped.",
                 _cleared(d), *_application(d, first_seen), cause]
    elif isinstance(d, PortRejectFacts):
        facts = [
            f"The latest sample value is {format_number(m.value)} {m.unit} {over(d)}; the high "
            f"limit is {format_number(f.limit)} {m.unit}.", rejects.split_words(d),
            rejects.persistence(d), *_accepting(d), rejects.other_ports(d), *_application(d, first_seen), cause,
            rejects.client_view(d), rejects.not_rejections_words(d), _reconciliation(d),
        ]
    else:
        facts = [_cleared(d), rejects.other_ports(d), *_application(d, first_seen), cause]
    sized = accept.action_words(d.accept) if isinstance(d, PortRejectFacts) and d.accept is not None else ""
    if sized.startswith("Look at the owner") and change:
        change = f"{sized} Once it accepts again, if bursts still overflow: {change}"
    elif sized:
        change = sized
    actions = [
        "Check that the owner is alive and calling accept() fast enough (py-spy dump / strace -p PID; a "
        "stuck or saturated worker pool stops accepting)." if not sized.startswith("Look at the owner") else "",
        "Raise the owner's file-descriptor limit (LimitNOFILE= in its systemd unit, or ulimit -n) and look "
        "for descriptor leaks (ls /proc/PID/fd)." if _fd_starved(d) else "", change,
        "If the load is legitimate, add accept throughput (more workers or SO_REUSEPORT listeners).",
        "If it is a flood from few sources, see `connwatch sources` and limit them.",
    ]
    owners = "; ".join(f"{x.endpoint} {owner_words(x)}" for x in d.listeners)
    return Explanation(TEXTS[m.attribute], " ".join(x for x in facts if x), " ".join(a for a in actions if a),
                       owners)


def _accepting(d: PortRejectFacts) -> list[str]:
    """Is the owner accepting (stuck, saturated, burst), and the backlog that would keep drops down."""
    if d.accept is None:
        return []
    return [accept.verdict_words(d.accept), accept.sizing_words(d.accept.sizing)]


def _reconciliation(d: BacklogContext) -> str:
    rec = d.reconciliation
    if rec.host_listen_overflows is None:
        return ""
    text = (f"The namespace counted {rec.host_listen_overflows} accept-queue overflow(s) (TcpExt ListenOverflows) "
            f"and {rec.host_syn_queue_drops or 0} SYN-queue drop(s) (TCPReqQFullDrop)")
    if rec.attributed is not None:
        text += f"; live listeners account for {rec.attributed}"
    if rec.unattributed:
        text += f", {rec.unattributed} belong to no live listener (one that closed in the interval)"
    return text + "."


def explain_host(f: Finding, d: HostFacts) -> Explanation:
    ports, rec = d.rejecting_ports, d.reconciliation
    where = (f"Per-listener counters show rejects on port(s) {', '.join(map(str, ports))}."
             if ports else "No current listener's counter rose: the drops belong to a listener that has "
             "closed, or per-listener counters are unavailable.")
    if rec.unattributed:
        where += (f" {rec.unattributed} of the namespace's rejections belong to no live listener (it closed in the "
                  "interval): they cannot be tied to a port.")
    cookies = d.cookies_sent
    extra = f" The SYN queue overflowed into syncookies {cookies} times." if cookies else ""
    return Explanation(TEXTS[f.measurement.attribute],
                       f"{format_number(f.measurement.value)} drops {over(d)}. {where}{extra} "
                       + HOST_CLIENT_VIEW + " " + _reconciliation(d),
                       "See the per-port alerts (connwatch listeners) for the service concerned; check "
                       "tcp_max_syn_backlog and tcp_syncookies for SYN-queue drops.")
