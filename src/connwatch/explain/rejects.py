"""Words for what the kernel turned away: the split of a port's rejects, what clients experience under
the sysctls in force, whether the cause is specific to one service, and SYN cookies."""

from __future__ import annotations

from connwatch.attributes.backlog_facts import BacklogContext, CookieFacts, PortFacts, PortRejectFacts
from connwatch.findings import Explanation, Finding, format_number

COOKIES_TEXT = ("Counter attribute SynCookiesSent counts SYNs the kernel answered with a SYN cookie because "
                "the listener's SYN queue was full (TcpExt TCPReqQFullDoCookies), attributed to the port whose "
                "half-open handshakes filled it.")


def times_words(times: tuple[float, ...]) -> str:
    """'1, 2, 3, 4, 5, 7 s' (the first few re-sends)."""
    shown = ", ".join(format_number(t) for t in times[:6])
    return f"{shown} s" if len(times) <= 6 else f"{shown} s and later"


def split_words(d: PortRejectFacts) -> str:
    """What the value is made of, and that it counts requests, not clients."""
    r, parts = d.rejects, []
    if r.accept_queue_overflows:
        when = ""
        if r.ack_time:
            when = f" ({r.syn_time} at SYN time, {r.ack_time} at ACK time, when the handshake completed into " \
                   "the full queue)"
        parts.append(f"{r.accept_queue_overflows} accept-queue overflow(s){when}")
    if r.syn_queue_drops:
        parts.append(f"{r.syn_queue_drops} SYN(s) dropped with a full SYN queue")
    made = f": {', '.join(parts)}" if parts else ""
    rate = f" ({format_number(d.rate_per_s)}/s)" if d.rate_per_s is not None else ""
    return (f"The kernel turned away {r.accept_queue_overflows + r.syn_queue_drops} connection request(s){rate}"
            f"{made}. These are dropped requests, not distinct clients: a waiting Linux client re-sends its SYN "
            f"at about {times_words(d.syn_retry_times)} after connect(), and each re-send that meets a full queue "
            "counts again.")


def not_rejections_words(d: PortRejectFacts) -> str:
    n = d.not_rejections
    if not (n.deferred_accept or n.double_counted or n.other):
        return ""
    parts = []
    if n.deferred_accept:
        parts.append(f"{n.deferred_accept} handshake ACK(s) discarded by TCP_DEFER_ACCEPT while the server "
                     "waited for data (TCPDeferAcceptDrop; normal)")
    if n.double_counted:
        parts.append(f"{n.double_counted} second count(s) of the ACK-time overflows")
    if n.other:
        parts.append(f"{n.other} other listener drop(s)")
    return (f"The listener's own drop counter (ss -ltnm d) rose by {d.listener_drops}; not rejections among them: "
            f"{'; '.join(parts)}.")


def client_view(d: PortRejectFacts) -> str:
    """What a client experiences, from the sysctls in force and what was counted."""
    give_up = f"about {format_number(d.syn_give_up_s)} s"
    silent = (f"A SYN that meets a full queue is dropped silently: the client sees no error and re-sends it; "
              f"connect() fails with ETIMEDOUT after {give_up} if the queue stays full.")
    if d.tcp_abort_on_overflow == 1:
        reset = (f"{d.resets_sent} client(s) were reset" if d.resets_sent else "Clients are reset")
        return (f"tcp_abort_on_overflow is 1: {reset} when their handshake completed into the full accept queue "
                f"(a RST; the client's read or write fails with ECONNRESET). {silent}")
    r = d.rejects
    completed = (f"{r.ack_time} client(s) completed the handshake into the full queue: their connect() returned "
                 "and their first data is dropped silently and re-sent, so they see a stalled request, not an "
                 "error." if r.ack_time else "")
    if r.ack_time and not (r.syn_time or r.syn_queue_drops):
        return completed
    return " ".join(x for x in (f"Clients are not refused, they wait. {silent}", completed) if x)


def persistence(d: PortRejectFacts) -> str:
    """Is it still happening? The accept queue, then the SYN queue."""
    worst = max(d.listeners, key=lambda x: x.fill or 0)
    if d.queue_full_now:
        return (f"It persists: at the last sample the queue of {worst.endpoint} held {worst.queue} of a backlog of "
                f"{worst.backlog} (full), so new connections are still being turned away.")
    r = d.rejects
    if r.syn_queue_drops:
        cookies = "tcp_syncookies is 0, so " if d.tcp_syncookies == 0 else ""
        now = (f"{d.half_open} half-open handshakes (SYN_RECV) are waiting for their final ACK now; " if d.half_open
               else "")
        return (f"The SYN queue was full: {now}{cookies}SYNs beyond it are dropped instead of being answered with "
                "a SYN cookie. Half-open handshakes that never complete (a SYN flood, or clients whose ACKs are "
                "lost) keep it full while the accept queue stays empty.")
    return (f"At the last sample the accept queue had room again ({worst.queue} of {worst.backlog} on "
            f"{worst.endpoint}): the burst has passed for now; watch whether it recurs.")


def other_ports(d: PortFacts) -> str:
    """Other ports rejecting: separate stuck applications, or one cause across ports?"""
    others = [p for p in d.rejecting_ports if p != d.port]
    if not others:
        return "No other port rejected connections in this interval: the cause is specific to this service."
    stuck = [p for p in others if p in d.stuck_ports]
    listed = ", ".join(map(str, others))
    if stuck and len(stuck) == len(others):
        return (f"Port(s) {listed} also rejected connections, each with its own accept queue full: several "
                "applications are not accepting; look at each owner (a shared dependency they wait on is the "
                "common cause to rule out).")
    return (f"Port(s) {listed} also rejected connections in this interval"
            f"{' while their queues had room again' if not stuck else ''}: a burst across services points at a "
            "common cause (a flood of connection attempts, CPU or memory starvation) rather than one application; "
            "see `connwatch sources`.")


def explain_cookies(f: Finding, d: CookieFacts) -> Explanation:
    where = f"port {d.port}" if d.port is not None else "a listener (the flood ended before the sample saw it)"
    queue = (f" {d.half_open} half-open handshakes were waiting against a backlog of {d.syn_backlog}."
             if d.port is not None and d.syn_backlog is not None else "")
    per = f" over {d.interval_s} s" if d.interval_s is not None else " since boot"
    text = (f"The SYN queue of {where} overflowed: the kernel answered {format_number(f.measurement.value)} SYN(s) "
            f"with SYN cookies{per}.{queue} Connections still succeed — nothing was dropped — but a full SYN queue "
            "means a SYN flood (half-open handshakes that never complete) or a backlog too small for the burst, "
            "and a cookie connection loses the TCP options its SYN carried (window scaling and SACK, unless TCP "
            "timestamps are on at both ends), so it can be slower.")
    port = d.port if d.port is not None else "PORT"
    action = (f"If the half-open handshakes come from few sources, it is a flood: `connwatch sources --port {port}` "
              "(HalfOpenPerSource) names them; rate-limit new connections per source. If they are legitimate "
              "clients, raise the listen backlog (the SYN queue follows min(listen() backlog, somaxconn), and "
              "net.ipv4.tcp_max_syn_backlog) and restart the service. Keep tcp_syncookies at 1 (the default): with "
              "0 these SYNs would have been dropped.")
    return Explanation(COOKIES_TEXT, text, action, "")


def context_of(d: BacklogContext) -> str:
    """A short phrase for the interval ('over 5.0 s' or 'since boot')."""
    return f"over {d.interval_s} s" if d.interval_s is not None else "since boot"
