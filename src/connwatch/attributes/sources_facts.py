"""The facts the per-source explanations read (attributes/sources.py measures them, explain/sources.py
words them). Field order is the JSON `detail` order of the alert (a contract)."""

from __future__ import annotations

from collections.abc import Mapping

from connwatch.attributes.ephemeral_facts import ProcessFacts
from connwatch.record import Record, record

Histogram = tuple[tuple[int, int], ...]  # (value, number of sources), highest value first


@record
class PrefixFacts(Record):
    """Prefix lengths sources are aggregated by."""

    ipv4: int
    ipv6: int


@record
class PortListener(Record):
    """A listener of the port and its owner (None: not visible to this user)."""

    endpoint: str
    owner: ProcessFacts | None


@record
class SourcesContext(Record):
    """What every per-source measurement shares: the settings and the host's SYN settings."""

    interval_s: float | None  # None: a single capture without uptime (engine)
    aggregate: bool
    prefix: PrefixFacts | None  # None: not aggregated
    max_alerts_per_port: int
    tcp_syncookies: int | None
    tcp_max_syn_backlog: int | None


@record
class SourcePortFacts(SourcesContext):
    """ConnectionsPerSource and HalfOpenPerSource: one source (or prefix) on one listening port."""

    port: int
    owners: tuple[PortListener, ...]
    port_sources: int  # distinct sources with any socket on the port
    port_connections: int
    port_half_open: int
    histogram: Histogram  # of this attribute's value over the port's sources
    source: str
    states: Mapping[str, int]
    connections: int  # ESTABLISHED + CLOSE_WAIT
    half_open: int  # SYN_RECV
    rank: int
    members: tuple[str, ...]  # a sample of the addresses merged into a prefix
    member_count: int
    local: bool  # loopback or an address of this host
    counted_states: tuple[str, ...]


@record
class PortsFacts(SourcesContext):
    """PortsPerSource: the distinct listening ports one source held or tried."""

    source: str
    ports: tuple[int, ...]  # the first 100, ascending
    rank: int
    sources_total: int
    histogram: Histogram  # of distinct ports over all sources
    local: bool
