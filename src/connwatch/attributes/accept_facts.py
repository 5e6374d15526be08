"""The facts of accept activity per listening port (attributes/accept_model.py measures them,
explain/accept.py words them). Field order is the JSON `detail` order (a contract)."""

from __future__ import annotations

from connwatch.record import Record, record

STUCK, SATURATED, BURST, KEEPING_UP, IDLE = "stuck", "saturated", "burst", "keeping up", "idle"


@record
class OwnerState(Record):
    """The port's owner as the stuck verdict needs it: alive, at its fd limit, blocked?"""

    pid: int
    command: str
    state: str | None  # psutil status ("sleeping", "stopped", "disk-sleep", "zombie", ...); None: unknown
    open_fds: int | None
    fd_limit: int | None
    at_fd_limit: bool  # open fds within 5 % of RLIMIT_NOFILE: accept() fails with EMFILE


@record
class SizingFacts(Record):
    """A backlog that keeps drops under the target, from the loss probability of a finite queue.

    Model: M/M/1/K (Poisson arrivals at rate lambda, one exponential server at rate mu: the application's
    accept loop; K = backlog + 1, what the kernel's accept queue holds). Loss probability
    P(K) = (1 - rho) rho^K / (1 - rho^(K+1)) with rho = lambda / mu (1 / (K + 1) at rho = 1). rho comes from
    the measured drop fraction at the current K (inverting P), or from arrivals / accepts when the queue
    stayed full. A dropped SYN comes back (the client re-sends it), so the queue sees rho / (1 - p): the
    predicted drop fraction p solves p = P(rho / (1 - p), K), and the recommended backlog is the smallest
    with P(rho / (1 - target), K) <= target. Assumed: Poisson arrivals, exponential accept times, one
    accepting thread (more threads: M/M/c/K drops less, so the advice errs large).
    """

    model: str
    target_drop_fraction: float
    offered_per_s: float | None  # connection requests reaching the port: admitted + turned away, per second
    accepted_per_s: float | None  # accepted per second (lower bound)
    measured_drop_fraction: float | None  # turned away / offered in the interval
    load: float | None  # rho of new connections = their arrival rate / the accept capacity (re-sent SYNs
    # taken out); None: not estimable (nothing turned away, or the queue never full while accepting)
    load_with_resends: float | None  # rho as the queue saw it in the interval, re-sent SYNs included
    current_backlog: int | None
    predicted_drop_fraction: float | None  # P(K) at the current backlog and the estimated load
    recommended_backlog: int | None  # None when no backlog helps, or when nothing needs changing
    no_backlog_helps: bool  # arrivals above the accept rate (rho >= 1, or the queue full at both samples):
    # a longer queue only adds waiting
    somaxconn: int | None
    capped_by_somaxconn: bool  # the recommendation exceeds somaxconn: raise it too


@record
class AcceptFacts(Record):
    """Accept activity of one listening port between two samples."""

    port: int
    verdict: str  # stuck | saturated | burst | keeping up | idle
    interval_s: float
    waiting_before: int  # in the accept queue (inode 0) at the previous sample
    waiting_now: int
    accepted_now: int  # accepted connections still open now
    accepted_new: int  # accepted since the previous sample and still open (lower bound)
    accepted_new_basis: str  # "inode set" (exact for open connections) or "inode order" (lower bound)
    closed_recent: int  # accepted and closed by the server in the interval (server-side TIME_WAIT, by age)
    accept_rate_per_s: float  # (accepted_new + closed_recent) / interval: a lower bound of the accept rate
    waited_through: int  # connections waiting at both samples: they waited longer than the interval
    turned_away: int | None  # accept-queue overflows + SYN-queue drops of the port (None: unknown)
    backlog: int | None  # the smallest backlog in force on the port
    queue_full_before: bool
    queue_full_now: bool
    owners: tuple[OwnerState, ...]
    sizing: SizingFacts | None
