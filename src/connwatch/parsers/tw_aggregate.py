"""Counted TIME_WAIT keys into SocketAggregator's tables, for both ways a run of TIME_WAIT replies is
counted (parsers/sock_diag_run.py key by key, parsers/sock_diag_columns.py by columns): the same tables,
in the same order as the slim loop fills them (per distinct key, not per message)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from connwatch.model import STATE_UNIT, address_key
from connwatch.parsers.sock_diag import _NSTATES, _ST_TIME_WAIT, _TW_MASK, _TW_SLOTS, TIME_WAIT_LEN_MS, SocketAggregator


def add_destinations(agg: SocketAggregator, rows: Iterable[tuple[tuple[int, bytes, bytes, int], int, int]]) -> None:
    """Outbound TIME_WAIT: (destination key, count, how many are younger than the reuse delay) each."""
    dests = agg.destinations
    for dkey, count, young in rows:
        counts = dests.get(dkey)
        if counts is None:
            counts = dests[dkey] = [0] * (_NSTATES + 1)
        counts[_ST_TIME_WAIT] += count
        counts[_NSTATES] += young


def add_sources(agg: SocketAggregator, rows: Iterable[tuple[int, int, bytes, int]]) -> None:
    """Inbound TIME_WAIT: (family, listening port in network order, the peer's 16 address bytes, count) each,
    as packed counts per source address (model.STATE_UNIT)."""
    sources, unit = agg.sources, STATE_UNIT[_ST_TIME_WAIT]
    for family, sport, dst, count in rows:
        addrs = sources.get(sport)
        if addrs is None:
            addrs = sources[sport] = defaultdict(int)
        addrs[address_key(family, dst)] += unit * count


def add_ages(agg: SocketAggregator, rows: Iterable[tuple[int, int, int]]) -> None:
    """Inbound TIME_WAIT by age: (listening port in network order, ceil(expires / 1000), count) each; the age
    in whole seconds is (60000 - expires) // 1000 = 60 - ceil(expires / 1000)."""
    closed = agg.closed
    for sport, up, count in rows:
        ages = closed.get(sport)
        if ages is None:
            ages = closed[sport] = [0] * _TW_SLOTS
        ages[(TIME_WAIT_LEN_MS // 1000 - up) & _TW_MASK] += count
