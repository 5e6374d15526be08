"""Rejection accounting: what the kernel turned away, per listening port, from counters it exposes.

Pure. The inputs are one namespace's counter deltas over the interval and, per port, the listeners'
SK_MEMINFO_DROPS delta with what the two samples saw of its queues. Measured on kernel 6.18
(shared/notes/kernel-facts.md) and read in net/ipv4/tcp_ipv4.c, tcp_minisocks.c, tcp_input.c:

- TcpExt ListenOverflows is exact in number: one per connection request dropped because the accept
  queue was full, at SYN time (tcp_conn_request) or at ACK time (tcp_v4_syn_recv_sock).
- TcpExt TCPReqQFullDrop: SYNs dropped because the SYN queue was full and syncookies were off.
- A listener's SK_MEMINFO_DROPS (`ss -ltnm` d) counts those too, but also bare ACKs discarded by
  TCP_DEFER_ACCEPT (TcpExt TCPDeferAcceptDrop; not a rejection: the server is healthy), and an
  ACK-time overflow twice (tcp_listendrop() in tcp_v4_syn_recv_sock, then sk_drops_add at
  discard_and_relse).
- TCPReqQFullDoCookies: SYNs answered with a syncookie because the SYN queue was full (nothing is
  dropped; the connection loses TCP options), EmbryonicRsts: resets sent by tcp_abort_on_overflow=1.

So the namespace's ListenOverflows + TCPReqQFullDrop is what was rejected, and the per-listener
counters say where: each budget is split over the ports whose drops rose, the ports whose queue was
seen full first, never more than a port's own drops and never more than the kernel counted. What is
left of a port's drops is not a rejection: deferred-accept discards, ACK-time double counts, other.
"""

from __future__ import annotations

from collections.abc import Mapping

from connwatch.record import Record, record, replace

OVERFLOWS, REQ_Q_FULL, LISTEN_DROPS = "TcpExt.ListenOverflows", "TcpExt.TCPReqQFullDrop", "TcpExt.ListenDrops"
DEFER_DROPS, COOKIES, EMBRYONIC_RSTS = "TcpExt.TCPDeferAcceptDrop", "TcpExt.TCPReqQFullDoCookies", \
    "TcpExt.EmbryonicRsts"
COOKIES_RECV = "TcpExt.SyncookiesRecv"
REJECT_COUNTERS = (OVERFLOWS, REQ_Q_FULL, LISTEN_DROPS, DEFER_DROPS, COOKIES, EMBRYONIC_RSTS,  # the accounting's inputs
                   COOKIES_RECV)


@record
class PortEvidence(Record):
    """What the samples saw of one listening port."""

    drops: int  # SK_MEMINFO_DROPS delta, summed over the port's listeners
    queue_full: bool  # an accept queue of the port held more than its backlog at either sample
    half_open: int  # SYN_RECV (request) sockets of the port, the larger of the two samples
    syn_backlog: int  # the SYN queue limit: the largest backlog of the port's listeners


@record
class Deltas(Record):
    """One namespace's counter deltas over the interval; None = not available."""

    overflows: int | None
    syn_queue_drops: int | None
    listen_drops: int | None
    deferred_accept: int | None
    cookies: int | None
    embryonic_rsts: int | None
    cookies_recv: int | None = None  # valid syncookie ACKs: a cookie connection that overflows did so at ACK time


@record
class PortRejects(Record):
    accept_queue_overflows: int
    syn_queue_drops: int
    syn_time: int | None  # accept-queue overflows at SYN time (counted once by the listener)
    ack_time: int | None  # at ACK time (counted twice by the listener); None when not separable
    deferred_accept: int  # listener drops that were TCP_DEFER_ACCEPT discards
    double_counted: int  # listener drops that were the second count of an ACK-time overflow
    other: int  # listener drops none of the above explains
    cookies: int  # SYNs of this port answered with syncookies
    resets: int  # clients reset by tcp_abort_on_overflow=1

    @property
    def total(self) -> int:
        return self.accept_queue_overflows + self.syn_queue_drops


def deltas_of(before: Mapping[str, int], after: Mapping[str, int]) -> Deltas:
    def delta(name: str) -> int | None:
        b, a = before.get(name), after.get(name)
        return None if b is None or a is None or a < b else a - b

    return Deltas(delta(OVERFLOWS), delta(REQ_Q_FULL), delta(LISTEN_DROPS), delta(DEFER_DROPS), delta(COOKIES),
                  delta(EMBRYONIC_RSTS), delta(COOKIES_RECV))


def _split(budget: int, weights: Mapping[int, int], caps: Mapping[int, int]) -> dict[int, int]:
    """Split `budget` over the keys in proportion to `weights`, each at most its cap (largest remainder)."""
    out = dict.fromkeys(weights, 0)
    left = budget
    while left > 0:
        open_ = {k: w for k, w in weights.items() if w > 0 and out[k] < caps[k]}
        total = sum(open_.values())
        if not total:
            break
        shares = {k: min(caps[k] - out[k], left * w // total) for k, w in open_.items()}
        if not any(shares.values()):  # rounding left less than one each: largest weight first
            for k in sorted(open_, key=lambda k: (-open_[k], k)):
                if left and out[k] < caps[k]:
                    out[k] += 1
                    left -= 1
            continue
        for k, share in shares.items():
            out[k] += share
            left -= share
    return out


def _in_order(budget: int, first: Mapping[int, int], then: Mapping[int, int], caps: dict[int, int]) -> dict[int, int]:
    """The budget over the `first` ports, what is left over the `then` ports; caps shrink as used."""
    got = _split(budget, first, caps)
    for k, n in got.items():
        caps[k] -= n
    more = _split(budget - sum(got.values()), then, caps)
    for k, n in more.items():
        caps[k] -= n
        got[k] = got.get(k, 0) + n
    return got


def account(ports: Mapping[int, PortEvidence], d: Deltas) -> dict[int, PortRejects]:
    """Each port's share of what the namespace's counters say was rejected (see the module doc)."""
    room = {p: max(e.drops, 0) for p, e in ports.items()}
    full = {p: room[p] for p, e in ports.items() if e.queue_full}
    rest = {p: room[p] for p in ports if p not in full}
    ovf = _in_order(d.overflows or 0, full, rest, room)
    synq_full = {p: room[p] for p, e in ports.items() if e.half_open >= max(e.syn_backlog, 1)}
    synq = _in_order(d.syn_queue_drops or 0, synq_full, {p: room[p] for p in ports if p not in synq_full}, room)
    calm = {p: room[p] for p in ports if p not in full}  # deferred-accept servers keep their queue short
    deferred = _in_order(d.deferred_accept or 0, calm, {p: room[p] for p in full}, room)
    cookie_ports = {p: e.half_open for p, e in ports.items() if e.half_open >= max(e.syn_backlog, 1)}
    cookies = _split(d.cookies or 0, cookie_ports, {p: d.cookies or 0 for p in cookie_ports})
    double = {p: min(room[p], ovf.get(p, 0)) for p in ports}  # an ACK-time overflow counts twice in d...
    rest = {p: ovf.get(p, 0) - double[p] for p in ports}
    cookie_acks = _split(d.cookies_recv or 0, rest, rest)  # ...except on the syncookie path: once, SyncookiesRecv
    out: dict[int, PortRejects] = {}
    for p in ports:
        ack = double[p] + cookie_acks.get(p, 0)
        out[p] = PortRejects(ovf.get(p, 0), synq.get(p, 0), ovf.get(p, 0) - ack, ack, deferred.get(p, 0),
                             double[p], room[p] - double[p], cookies.get(p, 0), 0)
    return _with_resets(out, d.embryonic_rsts or 0)


def _with_resets(out: dict[int, PortRejects], resets: int) -> dict[int, PortRejects]:
    """tcp_abort_on_overflow=1 resets at ACK time: the ports with ACK-time overflows sent them."""
    acked = {p: r.ack_time or 0 for p, r in out.items() if r.ack_time}
    got = _split(resets, acked, {p: resets for p in acked})
    return {p: replace(r, resets=got[p]) if got.get(p) else r for p, r in out.items()}  # (resets is 0 as made)


def unattributed(d: Deltas, per_port: Mapping[int, PortRejects]) -> int | None:
    """Rejections the namespace counted that no live listener's drops explain (a listener that closed)."""
    if d.overflows is None and d.syn_queue_drops is None:
        return None
    return (d.overflows or 0) + (d.syn_queue_drops or 0) - sum(r.total for r in per_port.values())
