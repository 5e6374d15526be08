"""The facts the ephemeral-port, TIME_WAIT and orphan explanations read (attributes/ephemeral.py
measures them, explain/ephemeral.py words them). Field order is the JSON `detail` order of the alert
(a contract)."""

from __future__ import annotations

from collections.abc import Mapping

from connwatch.record import Record, record


@record
class ProcessFacts(Record):
    """A process that probably causes the load (inferred from its ESTABLISHED sockets), or a
    listener's owner (attributes/sources.py)."""

    pid: int
    command: str
    cmdline: str
    user: str | None


@record
class HostRates(Record):
    """Per-second host rates between the two samples; a rate is None when its counter is missing or reset."""

    interval_s: float
    active_opens_per_s: float | None  # Tcp ActiveOpens
    time_wait_entered_per_s: float | None  # TcpExt TW
    attempt_fails_per_s: float | None  # Tcp AttemptFails
    time_wait_overflow_per_s: float | None  # TcpExt TCPTimeWaitOverflow


@record
class Forecast(Record):
    rate_per_s: float  # TIME_WAIT entered per second toward this destination
    basis: str  # how the rate was apportioned
    hold_s: float  # how long each TIME_WAIT blocks a port (60 s, or the reuse delay)
    steady_sockets: float
    steady_percent: float
    seconds_to_full: float | None  # None: settles below 100 %


@record
class EphemeralContext(Record):
    """What every ephemeral measurement shares: the host's rates and TIME_WAIT settings."""

    interval_s: float | None  # None: a single capture without uptime (engine)
    rates: HostRates
    platform: str
    tcp_tw_reuse: int | None
    tcp_tw_reuse_delay_ms: int | None
    rate_method: str  # how the host TIME_WAIT rate was apportioned to destinations
    host_time_wait: int | None  # sockstat TCP tw
    time_wait_s: float  # how long a TIME_WAIT socket lives on this platform
    tcp_max_tw_buckets: int | None


@record
class DestinationRecord(Record):
    """One destination's own facts (also a row of `connwatch destinations --format json`)."""

    destination: str  # remote ip:port
    local_address: str
    remote_address: str
    remote_port: int
    addresses: tuple[str, str]  # remote, local (what a rule's `address` matches)
    states: Mapping[str, int]  # most sockets first
    held: int  # sockets in any state
    time_wait: int
    time_wait_reusable: int
    time_wait_young: int
    blocking: int
    percent: float | None
    percent_without_reuse: float | None
    usable_ports: int | None
    port_range: tuple[int, int] | None
    reserved_ports: int
    listening_ports_in_range: int
    reuse_applies: bool
    reuse_reason: str
    safe_only_by_reuse: bool
    owners: tuple[ProcessFacts, ...]
    owners_inferred: bool
    forecast: Forecast | None


@record
class DestinationFacts(EphemeralContext):
    """EphemeralPortUsage, EphemeralPortUsageWithoutReuse, EphemeralPortExhaustion: the context, then
    the fields of DestinationRecord in its order (attributes/ephemeral.py `destination_facts`; a test checks
    that its fields are EphemeralContext's and DestinationRecord's). Declared again rather than inherited:
    two slotted bases cannot be combined, and as records (not dataclasses) judging loads no dataclasses."""

    destination: str  # remote ip:port
    local_address: str
    remote_address: str
    remote_port: int
    addresses: tuple[str, str]  # remote, local (what a rule's `address` matches)
    states: Mapping[str, int]  # most sockets first
    held: int  # sockets in any state
    time_wait: int
    time_wait_reusable: int
    time_wait_young: int
    blocking: int
    percent: float | None
    percent_without_reuse: float | None
    usable_ports: int | None
    port_range: tuple[int, int] | None
    reserved_ports: int
    listening_ports_in_range: int
    reuse_applies: bool
    reuse_reason: str
    safe_only_by_reuse: bool
    owners: tuple[ProcessFacts, ...]
    owners_inferred: bool
    forecast: Forecast | None


@record
class TopDestination(Record):
    destination: str
    local_address: str
    time_wait: int
    percent: float | None


@record
class TimeWaitFacts(EphemeralContext):
    """TimeWaitSockets (tcp_max_tw_buckets, from the context, is set: the measurement needs it)."""

    time_wait: int
    overflow_delta: int | None  # TcpExt TCPTimeWaitOverflow between the samples
    top_destinations: tuple[TopDestination, ...]
    outbound_time_wait: int


@record
class OrphanFacts(EphemeralContext):
    """OrphanSockets."""

    orphans: int
    tcp_max_orphans: int
    fin_wait: Mapping[str, int]  # closing states now: FIN_WAIT1, FIN_WAIT2, LAST_ACK, CLOSING
    tcp_fin_timeout: int | None
