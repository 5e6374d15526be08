"""model.SourceTable (per-source counts as packed ints) and the per-source tallies computed on it, against
a plain computation over one SourceUsage per source (what the code did before issue 17)."""

from __future__ import annotations

import heapq
import json
import socket
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connwatch.attributes import sources as attr
from connwatch.errors import ParseError
from connwatch.model import (
    SocketSummary,
    SourceTable,
    SourceUsage,
    half_open,
    held,
    pack_states,
    packed_total,
    state_counts,
)
from connwatch.parsers.sock_diag import SocketAggregator
from connwatch.rules.sources import SourceSettings
from connwatch.snapshot_json import from_dict, to_dict

from .builders import listener, snapshot

ADDRESSES = ["192.0.2.1", "192.0.2.2", "10.1.2.3", "10.1.2.200", "2001:db8::1", "2001:db8::2", "::1", "127.0.0.1"]
STATES = ["ESTABLISHED", "CLOSE_WAIT", "SYN_RECV", "TIME_WAIT", "FIN_WAIT1", "LAST_ACK", "STATE_0"]
USAGE = st.builds(lambda a, p, s: SourceUsage(a, p, s), st.sampled_from(ADDRESSES), st.sampled_from([25, 80, 443]),
                  st.dictionaries(st.sampled_from(STATES), st.integers(1, 70_000), min_size=1, max_size=4))


def _merged(usages: list[SourceUsage]) -> dict[tuple[str, int], Counter[str]]:
    out: dict[tuple[str, int], Counter[str]] = {}
    for u in usages:
        out.setdefault((u.source, u.port), Counter()).update(u.states)
    return out


def _snap(usages: list[SourceUsage]) -> object:
    return snapshot(1.0, (listener(25), listener(80), listener(443)),
                    sockets=SocketSummary(0, {}, sources=SourceTable.of(usages)))


@given(st.lists(USAGE, max_size=12))
def test_table_keeps_every_count(usages: list[SourceUsage]) -> None:
    table = SourceTable.of(usages)
    assert {(u.source, u.port): dict(u.states) for u in table} == {k: dict(v) for k, v in _merged(usages).items()}
    assert len(table) == len(_merged(usages))
    for u in table:
        packed = pack_states(u.states)
        assert state_counts(packed) == dict(u.states) and packed_total(packed) == u.total
        assert held(packed) == u.states.get("ESTABLISHED", 0) + u.states.get("CLOSE_WAIT", 0)
        assert half_open(packed) == u.states.get("SYN_RECV", 0)


@given(st.lists(USAGE, max_size=12), st.integers(1, 5))
def test_busiest_is_the_full_sort(usages: list[SourceUsage], n: int) -> None:
    table = SourceTable.of(usages)
    want = sorted(table, key=lambda u: (-u.total, u.source, u.port))[:n]
    assert table.busiest(n) == want


@settings(deadline=None)
@given(st.lists(USAGE, max_size=14), st.lists(USAGE, max_size=6), st.integers(1, 4), st.booleans())
def test_tally_and_ports_per_source_equal_a_plain_count(usages: list[SourceUsage], before: list[SourceUsage],
                                                         top: int, aggregate: bool) -> None:
    settings_ = SourceSettings(aggregate=aggregate, ipv4_prefix=24, ipv6_prefix=64)
    merged: dict[tuple[str, int], Counter[str]] = {}
    for (source, port), states in _merged(usages).items():
        merged.setdefault((attr.prefix_of(source, settings_), port), Counter()).update(states)
    cur, prev = _snap(usages), _snap(before)
    got = attr.tally(cur, settings_, top)  # type: ignore[arg-type]
    assert sorted(got) == sorted({p for _, p in merged})
    for port, t in got.items():
        rows = {s: c for (s, p), c in merged.items() if p == port}
        conns = {s: c["ESTABLISHED"] + c["CLOSE_WAIT"] for s, c in rows.items()}
        halfs = {s: c["SYN_RECV"] for s, c in rows.items()}
        assert (t.sources, t.connections, t.half_open) == (len(rows), sum(conns.values()), sum(halfs.values()))
        assert dict(t.histogram) == {v: n for v, n in Counter(conns.values()).items() if v}
        best = heapq.nlargest(top, (s for s in rows if conns[s]), key=lambda s: (conns[s], halfs[s]))
        assert [(r.source, r.connections, r.half_open) for r in t.top_connections] == \
            [(s, conns[s], halfs[s]) for s in best]
        assert all(dict(r.states) == {k: v for k, v in rows[r.source].items() if v} for r in t.top_connections)
    ports: dict[str, set[int]] = {}
    for u in [*before, *usages]:
        ports.setdefault(attr.prefix_of(u.source, settings_), set()).add(u.port)
    spread = attr.ports_per_source(prev, cur, settings_)  # type: ignore[arg-type]
    assert spread.sources == len(ports)
    assert spread.multi == {s: frozenset(p) for s, p in ports.items() if len(p) > 1}
    assert dict(spread.histogram()) == Counter(len(p) for p in ports.values())


def test_decoder_counts_an_ipv4_mapped_source_as_its_ipv4_address() -> None:
    """The kernel shows a v4 client of a dual-stack listener as ::ffff:a.b.c.d: one source, not two."""
    agg = SocketAggregator(frozenset({80}))
    v4 = socket.inet_pton(socket.AF_INET, "192.0.2.7") + bytes(12)
    mapped = bytes(10) + b"\xff\xff" + socket.inet_pton(socket.AF_INET, "192.0.2.7")
    here = socket.inet_pton(socket.AF_INET, "192.0.2.1") + bytes(12)
    for family, state, dst in ((socket.AF_INET, 1, v4), (socket.AF_INET6, 1, mapped), (socket.AF_INET6, 3, mapped),
                               (socket.AF_INET, 6, v4)):
        agg.add(family, state, 0, 0, socket.htons(80), socket.htons(40000), here, dst, 0, 1, 0, 30000, 0, 0, 0, 5)
    [usage] = list(agg.summary().sources)
    assert (usage.source, usage.port, dict(usage.states)) == \
        ("192.0.2.7", 80, {"ESTABLISHED": 2, "SYN_RECV": 1, "TIME_WAIT": 1})


def test_snapshot_json_round_trip_and_bad_sources() -> None:
    snap = _snap([SourceUsage("192.0.2.1", 80, {"ESTABLISHED": 3}), SourceUsage("2001:db8::1", 443, {"SYN_RECV": 2})])
    data = json.loads(json.dumps(to_dict(snap)))  # type: ignore[arg-type]
    again = from_dict(data, "x.json")
    assert again.sockets is not None and list(again.sockets.sources) == list(snap.sockets.sources)  # type: ignore[attr-defined]
    for bad in ({"source": "not-an-ip", "port": 80, "states": {"ESTABLISHED": 1}},
                {"source": "192.0.2.1", "port": 80, "states": {"ESTABLISHED": -1}}):
        data["sockets"]["sources"] = [bad]
        with pytest.raises(ParseError, match=r"x\.json"):
            from_dict(data, "x.json")
