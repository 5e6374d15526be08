"""Words for accept activity: is the application accepting (stuck, saturated, burst), and how big the
backlog should be (or that no backlog helps), with where each common server sets it."""

from __future__ import annotations

from connwatch.attributes.accept_facts import BURST, SATURATED, STUCK, AcceptFacts, OwnerState, SizingFacts
from connwatch.findings import Explanation, Finding, format_number

TEXT = ("AcceptActivity counts the connections of the port that were waiting in its accept queue at the "
        "previous sample and still wait now (the same socket by its cookie; a queued connection has no file, "
        "so sock_diag shows inode 0 until accept()): they waited longer than the interval. The detail says "
        "whether the owner is stuck (accepted nothing), saturated, or hit by a burst.")

WHERE_SET = ("The backlog is the listen() argument: nginx `listen 80 backlog=N;`, Node "
             "`server.listen(port, host, N)` (default 511), Java/Tomcat `acceptCount` (Netty `SO_BACKLOG`), "
             "gunicorn `--backlog N` (default 2048), CICS TCPIPSERVICE `BACKLOG(N)`, z/OS TCP/IP PROFILE "
             "`SOMAXCONN`. net.core.somaxconn caps it (effective backlog = min(listen argument, somaxconn)) and "
             "both apply at the next listen(): restart the service after changing them.")


def _owner(o: OwnerState) -> str:
    who = f"pid {o.pid} ({o.command})"
    if o.at_fd_limit:
        return (f"{who} holds {o.open_fds} of its {o.fd_limit} file descriptors: accept() fails with EMFILE, "
                "so the queue cannot drain")
    state = {"stopped": "is stopped (SIGSTOP, or a debugger holds it)",
             "tracing-stop": "is stopped by a tracer",
             "disk-sleep": "is blocked in uninterruptible I/O (D state: storage or NFS)",
             "zombie": "has exited (zombie) while its listener is still open",
             "running": "is alive and running (busy: its accept loop does not get to accept())",
             "sleeping": "is alive but sleeping: its accept loop waits on something else (a lock, a "
                         "downstream call, a full worker pool)"}.get(o.state or "", "")
    return f"{who} {state}" if state else f"{who} (state unknown)"


def verdict_words(d: AcceptFacts) -> str:
    """One sentence on the owner's accepting, for this attribute and the backlog alerts."""
    rate = f"{format_number(d.accept_rate_per_s)}/s"
    if d.verdict == STUCK:
        owners = "; ".join(_owner(o) for o in d.owners) or "its owner is not visible here"
        return (f"Stuck: the {d.waiting_before} connection(s) waiting at the previous sample still wait "
                f"{d.interval_s} s later and nothing was accepted, so a bigger backlog will not help: {owners}.")
    if d.verdict == SATURATED:
        return (f"Saturated: the owner accepts (at least {rate}: {d.accepted_new} new open connection(s), "
                f"{d.closed_recent} accepted and closed), but arrivals exceed it: the queue is full now.")
    if d.verdict == BURST:
        return (f"Burst: the queue filled and drained ({d.waiting_now} waiting now, accepting at least {rate}): "
                "the backlog is too small for the burst.")
    return (f"The owner keeps up: {d.waiting_now} waiting, at least {rate} accepted "
            f"({d.accepted_now} accepted connection(s) open).")


def sizing_words(s: SizingFacts | None) -> str:
    if s is None or s.load is None:
        return ""
    pct = format_number(round(100 * s.target_drop_fraction, 2))
    measured = ""
    if s.measured_drop_fraction is not None and s.offered_per_s is not None:
        measured = (f"{format_number(round(100 * s.measured_drop_fraction, 2))} % of "
                    f"{format_number(s.offered_per_s)} requests/s were turned away, ")
    resent = f", {format_number(s.load_with_resends)} with re-sent SYNs" if s.load_with_resends is not None else ""
    head = (f"Load: {measured}an estimated load of {format_number(s.load)} (new connections / accept capacity"
            f"{resent}; {s.model})")
    if s.no_backlog_helps:
        return (f"{head}: arrivals exceed the accept rate for good, so no backlog keeps drops under {pct} %; a "
                "longer queue only makes clients wait longer. Add accept capacity (workers, SO_REUSEPORT "
                "listeners) or shed load.")
    predicted = format_number(round(100 * (s.predicted_drop_fraction or 0.0), 2))
    if s.recommended_backlog is None or s.recommended_backlog <= (s.current_backlog or 0):
        return f"{head}: the current backlog of {s.current_backlog} should drop about {predicted} % at this load."
    cap = (f" somaxconn ({s.somaxconn}) is below it: raise net.core.somaxconn too." if s.capped_by_somaxconn
           else "")
    return (f"{head}: the current backlog of {s.current_backlog} drops about {predicted} %; a backlog of "
            f"{s.recommended_backlog} keeps drops under {pct} % at this load (Poisson arrivals, exponential accept "
            f"times assumed; bursts beyond them need more).{cap}")


STUCK_ACTION = ("Look at the owner, not the backlog (it accepts nothing: py-spy dump, gdb or `cat /proc/PID/stack`, "
                "and strace -p PID show where its accept loop is blocked). Raise LimitNOFILE if it is at its fd "
                "limit; restart it if it is stopped or deadlocked.")


def action_words(d: AcceptFacts) -> str:
    """What to change, from the verdict and the sizing: the owner, capacity, or a backlog of N."""
    s = d.sizing
    if d.verdict == STUCK:
        return STUCK_ACTION
    if s is not None and s.no_backlog_helps:
        return "Add accept capacity (more workers or SO_REUSEPORT listeners) or shed load; a bigger backlog will " \
               "not help."
    if s is not None and s.recommended_backlog is not None and s.recommended_backlog > (s.current_backlog or 0):
        return f"Raise the backlog to at least {s.recommended_backlog}. " + WHERE_SET
    return ""


def explain(f: Finding, d: AcceptFacts) -> Explanation:
    m = f.measurement
    facts = [f"{format_number(m.value)} connection(s) waited in the accept queue of port {d.port} for longer than "
             f"{d.interval_s} s; the high limit is {format_number(f.limit)}.", verdict_words(d),
             sizing_words(d.sizing)]
    action = action_words(d) or "Raise the application's backlog to absorb the bursts. " + WHERE_SET
    owners = "; ".join(f"pid {o.pid} ({o.command})" for o in d.owners)
    return Explanation(TEXT, " ".join(x for x in facts if x), action, owners)
