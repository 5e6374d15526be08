"""Ephemeral-port attributes on hand-built Snapshots driven by a fake clock: percentages, reserved and
listening ports, TIME_WAIT reuse (tcp_tw_reuse 0/1/2, loopback or not), the Little's-law forecast,
host-wide TIME_WAIT and orphans, the words, and the `destinations` report."""

from __future__ import annotations

import dataclasses
import io
import socket
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from connwatch.attributes import ephemeral
from connwatch.attributes.ephemeral_facts import DestinationFacts, DestinationRecord, EphemeralContext
from connwatch.attributes.registry import spec
from connwatch.clock import FakeClock
from connwatch.engine import judge
from connwatch.explain import explain
from connwatch.findings import Finding, Measurement
from connwatch.model import (
    DestinationUsage,
    HostInfo,
    Listener,
    Process,
    Snapshot,
    SocketSummary,
    Sysctls,
)
from connwatch.parsers.sock_diag import SocketAggregator
from connwatch.reports.destinations import build_report, render
from connwatch.rules.config import Config
from connwatch.rules.evaluate import evaluate
from connwatch.rules.spec import default_rules
from connwatch.snapshot_json import from_dict, to_dict

LO, HOSTIP, REMOTE = "127.0.0.1", "10.0.0.1", "10.0.0.9"


def dest(remote: str = REMOTE, port: int = 5432, local: str = HOSTIP, young: int = 0,
         owners: tuple[Process, ...] = (), **states: int) -> DestinationUsage:
    return DestinationUsage(local_address=local, remote_address=remote, remote_port=port, states=states,
                            time_wait_young=young, owners=owners)


def sysctls(low: int = 40000, high: int = 40199, reuse: int | None = 0,
            reserved: tuple[tuple[int, int], ...] = (), **kw: int) -> Sysctls:
    return Sysctls(ip_local_port_range=(low, high), ip_local_reserved_ports=reserved, tcp_tw_reuse=reuse,
                   tcp_tw_reuse_delay=1000, tcp_max_tw_buckets=kw.get("buckets", 10000),
                   tcp_max_orphans=kw.get("orphans_max", 1000))


def snap(clock: FakeClock, dests: Sequence[DestinationUsage], sys: Sysctls, counters: Mapping[str, int] | None = None,
         inbound_tw: int = 0, listeners: tuple[Listener, ...] = (), platform: str = "linux",
         sockstat: Mapping[str, int] | None = None) -> Snapshot:
    by_state: dict[str, int] = {}
    for d in dests:
        for name, n in d.states.items():
            by_state[name] = by_state.get(name, 0) + n
    by_state["TIME_WAIT"] = by_state.get("TIME_WAIT", 0) + inbound_tw
    summary = SocketSummary(total=sum(by_state.values()), by_state=by_state, destinations=tuple(dests))
    return Snapshot(taken_at=clock.time(), monotonic=clock.monotonic(), host=HostInfo("h", platform=platform),
                    counters=dict(counters or {}), sockstat=dict(sockstat or {"TCP.tw": by_state["TIME_WAIT"]}),
                    sysctls=sys, listeners=listeners, sockets=summary)


def pair(dests: Sequence[DestinationUsage], sys: Sysctls, tw_delta: int, seconds: float = 5.0,
         **kw: object) -> tuple[Snapshot, Snapshot]:
    clock = FakeClock()
    base = {"TcpExt.TW": 1000, "Tcp.ActiveOpens": 5000, "Tcp.AttemptFails": 3, "TcpExt.TCPTimeWaitOverflow": 0}
    prev = snap(clock, dests, sys, base, **kw)  # type: ignore[arg-type]
    clock.advance(seconds)
    after = {**base, "TcpExt.TW": 1000 + tw_delta, "Tcp.ActiveOpens": 5000 + tw_delta}
    return prev, snap(clock, dests, sys, after, **kw)  # type: ignore[arg-type]


def by_attr(ms: Sequence[Measurement], attribute: str, destination: str | None = None) -> list[Measurement]:
    return [m for m in ms if m.attribute == attribute
            and (destination is None or m.resource.get("destination") == destination)]


def findings(prev: Snapshot, cur: Snapshot) -> dict[tuple[str, str], Finding]:
    return {f.key: f for f in evaluate(default_rules(), ephemeral.measure(prev, cur))}


# --- percentages and the port budget -------------------------------------------------------------

def test_percentage_of_the_range_per_destination_and_local_address() -> None:
    busy = dest(ESTABLISHED=40, TIME_WAIT=100)
    light = dest(port=6379, TIME_WAIT=5)
    other_local = dest(local="10.0.0.2", TIME_WAIT=190)  # same destination, another source address
    prev, cur = pair([busy, light, other_local], sysctls(), tw_delta=0)
    usage = {(m.resource["destination"], m.resource["local_address"]): m.value
             for m in by_attr(ephemeral.measure(prev, cur), "EphemeralPortUsage")}
    assert usage == {("10.0.0.9:5432", HOSTIP): 70.0, ("10.0.0.9:6379", HOSTIP): 2.5,
                     ("10.0.0.9:5432", "10.0.0.2"): 95.0}
    f = findings(prev, cur)
    assert f[("EphemeralPortUsage", "TCP(10.0.0.1->10.0.0.9:5432)")].severity == 3  # > 50 % Medium
    assert f[("EphemeralPortUsage", "TCP(10.0.0.2->10.0.0.9:5432)")].severity == 2  # > 80 % High
    assert not f[("EphemeralPortUsage", "TCP(10.0.0.1->10.0.0.9:6379)")].breached


def test_reserved_and_listening_ports_shrink_the_range() -> None:
    listeners = (Listener(4, "0.0.0.0", 40150, 0, 128, 0, 1, 0), Listener(6, "::", 40150, 0, 128, 0, 2, 0),
                 Listener(4, "0.0.0.0", 40010, 0, 128, 0, 3, 0), Listener(4, "0.0.0.0", 8080, 0, 128, 0, 4, 0))
    sys = sysctls(reserved=((40000, 40049), (39000, 40010)))  # overlapping, sticking out of the range
    cur = snap(FakeClock(), [dest(ESTABLISHED=149)], sys, listeners=listeners)
    budget = ephemeral.port_budget(cur)
    # 200 ports - 50 reserved - 1 listening in range (40150; 40010 is reserved anyway; 8080 outside)
    assert (budget.usable, budget.reserved, budget.listening_in_range) == (149, 50, 1)
    [m] = by_attr(ephemeral.measure(cur, cur), "EphemeralPortUsage")
    assert m.value == 100.0 and m.detail["usable_ports"] == 149


def test_value_reaches_100_only_when_every_port_blocks() -> None:
    assert ephemeral.percent(199, 200) == 99.5
    assert ephemeral.percent(1999, 2000) == 99.9  # 99.95 would round up to a false "full"
    assert ephemeral.percent(200, 200) == 100.0
    assert ephemeral.percent(230, 200) == 115.0  # sockets bound outside the range still hold 4-tuples
    assert ephemeral.percent(5, None) is None and ephemeral.percent(5, 0) is None


@given(st.integers(0, 70000), st.integers(1, 65535))
def test_percent_is_monotonic_and_never_falsely_full(count: int, usable: int) -> None:
    value = ephemeral.percent(count, usable)
    assert value is not None
    assert (value >= 100) == (count >= usable)
    assert ephemeral.percent(count + 1, usable) >= value  # type: ignore[operator]


def test_full_destination_is_critical_and_unreadable_range_measures_nothing() -> None:
    prev, cur = pair([dest(TIME_WAIT=160, ESTABLISHED=40)], sysctls(), tw_delta=0)
    f = findings(prev, cur)[("EphemeralPortUsage", "TCP(10.0.0.1->10.0.0.9:5432)")]
    assert f.measurement.value == 100.0 and f.severity == 1 and f.breached
    blind = dataclasses.replace(cur, sysctls=dataclasses.replace(cur.sysctls, ip_local_port_range=None))
    assert not by_attr(ephemeral.measure(prev, blind), "EphemeralPortUsage")


# --- TIME_WAIT reuse -----------------------------------------------------------------------------

@pytest.mark.parametrize(("reuse", "local", "remote", "applies"), [
    (0, LO, LO, False), (0, HOSTIP, REMOTE, False),
    (1, LO, LO, True), (1, HOSTIP, REMOTE, True),
    (2, LO, LO, True), (2, HOSTIP, REMOTE, False), (2, HOSTIP, "127.0.0.53", True),
    (2, "::1", "::1", True), (2, "2001:db8::1", "2001:db8::2", False), (2, "::ffff:127.0.0.1", LO, True),
    (None, LO, LO, False), (7, LO, LO, False),
])
def test_reuse_classification(reuse: int | None, local: str, remote: str, applies: bool) -> None:
    ok, reason = ephemeral.reuse_for(reuse, local, remote)
    assert ok is applies
    assert (f"tcp_tw_reuse={reuse}" in reason) or reuse is None


@pytest.mark.parametrize(("reuse", "remote", "blocking", "reusable"), [
    (0, LO, 200, 0),  # nothing reused: all 200 block
    (1, REMOTE, 30, 170),  # all but the 30 younger than tcp_tw_reuse_delay
    (2, LO, 30, 170),  # loopback: as 1
    (2, REMOTE, 200, 0),  # not loopback: as 0
])
def test_reusable_time_wait_is_counted_apart(reuse: int, remote: str, blocking: int, reusable: int) -> None:
    local = LO if remote == LO else HOSTIP
    d = dest(remote=remote, local=local, port=8080, young=30, TIME_WAIT=200)
    cur = snap(FakeClock(), [d], sysctls(reuse=reuse))
    [load] = ephemeral.loads(cur)
    assert (load.blocking, load.reusable) == (blocking, reusable)
    ms = ephemeral.measure(cur, cur)
    [usage] = by_attr(ms, "EphemeralPortUsage")
    assert usage.value == ephemeral.percent(blocking, 200)
    without = by_attr(ms, "EphemeralPortUsageWithoutReuse")
    assert bool(without) == bool(reusable)  # emitted only where reuse applies
    if reusable:
        assert without[0].value == 100.0 and usage.detail["safe_only_by_reuse"] is True
        f = findings(cur, cur)
        assert not f[("EphemeralPortUsage", usage.resource_key)].breached
        safe = f[("EphemeralPortUsageWithoutReuse", usage.resource_key)]
        assert safe.breached and safe.severity == 4
        words = explain(safe).explanation
        assert "safe only because of TIME_WAIT reuse" in words and f"{reusable} are reusable" in words


def test_aggregator_young_split_feeds_the_reuse_count() -> None:
    agg = SocketAggregator(frozenset(), tw_reuse_delay_ms=1000)
    src, dst = socket.inet_aton(LO).ljust(16, b"\0"), socket.inet_aton(LO).ljust(16, b"\0")
    for i, expires in enumerate([59_500] * 3 + [30_000] * 7):  # 3 entered < 1 s ago, 7 older
        agg.add(socket.AF_INET, 6, 0, 0, socket.htons(40000 + i), socket.htons(8080), src, dst, 0, 0, 0,
                expires, 0, 0, 0, 0)
    summary = agg.summary()
    cur = dataclasses.replace(snap(FakeClock(), [], sysctls(reuse=2)), sockets=summary)
    [load] = ephemeral.loads(cur)
    assert (load.time_wait, load.reusable, load.blocking) == (10, 7, 3)


# --- rates and the Little's-law forecast ---------------------------------------------------------

def test_forecast_settles_below_at_a_steady_rate() -> None:
    # 100 TIME_WAIT entered in 5 s = 20/s; each holds a port 60 s -> 1200, + 10 ESTABLISHED = 1210.
    d = dest(ESTABLISHED=10, TIME_WAIT=100, young=20)
    prev, cur = pair([d], sysctls(high=41999), tw_delta=100)
    [m] = by_attr(ephemeral.measure(prev, cur), "EphemeralPortExhaustion")
    fc = m.detail["forecast"]
    assert fc["rate_per_s"] == 20.0 and fc["hold_s"] == 60.0
    assert fc["steady_sockets"] == 1210.0 and m.value == 60.5 and fc["seconds_to_full"] is None
    assert m.detail["rates"]["active_opens_per_s"] == 20.0
    f = findings(prev, cur)[("EphemeralPortExhaustion", m.resource_key)]
    assert not f.breached  # 60.5 % is below the Medium limit of 80 %
    words = explain(dataclasses.replace(f, breached=True)).explanation
    assert "Little's law" in words and "settles below 100 %" in words


def test_forecast_time_to_exhaustion() -> None:
    # 40/s x 60 s = 2400 > 2000 usable: runs out when the 1800 free ports are used at 40/s = 45 s.
    d = dest(TIME_WAIT=200, young=40)
    prev, cur = pair([d], sysctls(high=41999), tw_delta=200)
    [m] = by_attr(ephemeral.measure(prev, cur), "EphemeralPortExhaustion")
    assert m.value == 120.0 and m.detail["forecast"]["seconds_to_full"] == 45.0
    f = findings(prev, cur)[("EphemeralPortExhaustion", m.resource_key)]
    assert f.breached and f.severity == 2
    assert "reaches 100 % in about 45 s" in explain(f).explanation


def test_exhausted_destination_keeps_its_verdict_while_connect_fails() -> None:
    """200 of 200 ports held: connect() fails with EADDRNOTAVAIL, nothing enters TIME_WAIT any more (rate 0),
    yet the forecast must not read that as recovery (issue 10)."""
    d = dest(ESTABLISHED=20, TIME_WAIT=180)
    prev, cur = pair([d], sysctls(), tw_delta=0)
    [m] = by_attr(ephemeral.measure(prev, cur), "EphemeralPortExhaustion")
    assert m.value >= 100.0 and m.detail["forecast"]["seconds_to_full"] == 0.0
    assert m.detail["forecast"]["basis"].startswith("saturated")
    result = judge(prev, cur, Config(default_rules()), None)
    [alert] = [a for a in result.step.raised if a.resource_key == m.resource_key]  # one alert per destination
    assert alert.attribute == "EphemeralPortUsage" and alert.severity == 1
    assert {x["attribute"] for x in alert.detail["folded"]} == {"EphemeralPortExhaustion"}
    assert "demand cannot be measured" in alert.explanation and "settles below" not in alert.explanation


def test_rate_is_apportioned_by_young_share_and_outbound_share() -> None:
    a = dest(port=80, TIME_WAIT=300, young=30)
    b = dest(port=443, TIME_WAIT=300, young=10)
    # 200 TIME_WAIT sockets held on listening ports (inbound): outbound share = 600 / 800 = 0.75.
    prev, cur = pair([a, b], sysctls(high=49999), tw_delta=400, seconds=5.0, inbound_tw=200)
    host = ephemeral.host_rates(prev, cur)["time_wait_entered_per_s"]
    assert host == 80.0
    rates, basis = ephemeral.destination_rates(cur, host)
    assert rates[(HOSTIP, REMOTE, 80)] == pytest.approx(80 * 0.75 * 30 / 40)
    assert rates[(HOSTIP, REMOTE, 443)] == pytest.approx(80 * 0.75 * 10 / 40)
    assert "younger than tcp_tw_reuse_delay" in basis
    # Too few young sockets to trust: weights fall back to TIME_WAIT held.
    few = snap(FakeClock(), [dest(port=80, TIME_WAIT=30, young=1), dest(port=443, TIME_WAIT=10)], sysctls())
    rates, basis = ephemeral.destination_rates(few, 4.0)
    assert rates[(HOSTIP, REMOTE, 80)] == pytest.approx(3.0) and "TIME_WAIT held" in basis


def test_forecast_with_reuse_holds_ports_only_for_the_reuse_delay() -> None:
    d = dest(remote=LO, local=LO, port=8080, TIME_WAIT=200, young=50)
    prev, cur = pair([d], sysctls(reuse=2), tw_delta=250)  # 50/s x 1 s = 50 of 200 ports
    [m] = by_attr(ephemeral.measure(prev, cur), "EphemeralPortExhaustion")
    assert m.detail["forecast"]["hold_s"] == 1.0 and m.value == 25.0


def test_no_forecast_without_two_good_samples() -> None:
    prev, cur = pair([dest(TIME_WAIT=100, young=20)], sysctls(), tw_delta=100)
    reset = dataclasses.replace(cur, counters={**cur.counters, "TcpExt.TW": 5})  # counter went backwards
    assert not by_attr(ephemeral.measure(prev, reset), "EphemeralPortExhaustion")
    assert not by_attr(ephemeral.measure(cur, cur), "EphemeralPortExhaustion")  # zero interval
    assert by_attr(ephemeral.measure(cur, cur), "EphemeralPortUsage")  # usage needs one sample only


# --- host-wide ----------------------------------------------------------------------------------

def test_time_wait_buckets_and_orphans() -> None:
    dests = [dest(TIME_WAIT=4000), dest(port=6379, TIME_WAIT=500)]
    prev, cur = pair(dests, sysctls(buckets=5000, orphans_max=1000, high=65000), tw_delta=0,
                     sockstat={"TCP.tw": 4900, "TCP.orphan": 600})
    cur = dataclasses.replace(cur, counters={**cur.counters, "TcpExt.TCPTimeWaitOverflow": 25})
    f = findings(prev, cur)
    tw = f[("TimeWaitSockets", "TCP(host)")]
    assert tw.measurement.value == 98.0 and tw.severity == 4 and tw.breached
    assert tw.measurement.detail["overflow_delta"] == 25
    assert tw.measurement.detail["top_destinations"][0]["destination"] == "10.0.0.9:5432"
    text = explain(tw).explanation
    assert "25 sockets skipped TIME_WAIT" in text and "10.0.0.9:5432" in text
    orphans = f[("OrphanSockets", "TCP(host)")]
    assert orphans.measurement.value == 60.0 and orphans.severity == 3
    assert "too many orphaned sockets" in explain(orphans).explanation


# --- words and owners ----------------------------------------------------------------------------

def test_explanation_lists_actions_and_inferred_owner() -> None:
    owner = Process(pid=4242, command="curl-loop", user="app")
    prev, cur = pair([dest(ESTABLISHED=3, TIME_WAIT=180, owners=(owner,))], sysctls(reuse=0), tw_delta=0)
    f = findings(prev, cur)[("EphemeralPortUsage", "TCP(10.0.0.1->10.0.0.9:5432)")]
    e = explain(f)
    assert "inferred" in e.owner and "pid 4242 (curl-loop, user app)" in e.owner
    assert "All 180 TIME_WAIT sockets block a port for 60 s: tcp_tw_reuse=0" in e.explanation
    order = [e.action.index(x) for x in ("keep-alive", "tcp_tw_reuse=1", "ip_local_port_range",
                                         "source addresses", "tcp_tw_recycle")]
    assert order == sorted(order)  # connection reuse first
    assert "TcpTimedWaitDelay" not in e.action


def test_windows_capture_gets_windows_actions_and_its_time_wait_length() -> None:
    # 5 TIME_WAIT/s held for TcpTimedWaitDelay's default 240 s = 1200 sockets, 600 % of 200 ports.
    prev, cur = pair([dest(TIME_WAIT=190, young=5)], sysctls(reuse=None), tw_delta=25, platform="windows")
    f = findings(prev, cur)
    usage = explain(f[("EphemeralPortUsage", "TCP(10.0.0.1->10.0.0.9:5432)")])
    assert "TcpTimedWaitDelay (30-240 s" in usage.action and "netsh int ipv4 set dynamicport" in usage.action
    assert "net.ipv4" not in usage.action and usage.action.index("keep-alive") < usage.action.index("netsh")
    assert "block a port for 240 s: windows host" in usage.explanation
    fc = f[("EphemeralPortExhaustion", "TCP(10.0.0.1->10.0.0.9:5432)")].measurement
    assert fc.detail["forecast"]["hold_s"] == 240.0 and fc.value == 600.0


def test_owners_survive_a_snapshot_round_trip() -> None:
    owner = Process(pid=7, command="worker", cmdline="worker --x", user="u")
    cur = snap(FakeClock(), [dest(ESTABLISHED=2, owners=(owner,))], sysctls())
    back = from_dict(to_dict(cur), "capture.json")
    assert back.sockets is not None and back.sockets.destinations[0].owners == (owner,)


# --- the destinations report ---------------------------------------------------------------------

def test_destinations_report_and_table() -> None:
    dests = [dest(port=6379, TIME_WAIT=5), dest(ESTABLISHED=40, TIME_WAIT=160),
             dest(remote=LO, local=LO, port=8080, TIME_WAIT=200, young=10)]
    prev, cur = pair(dests, sysctls(reuse=2), tw_delta=50)
    data = build_report(prev, cur, default_rules(), top=2)
    rows = data["destinations"]
    # Busiest = most blocking sockets: 200, then 10 (190 of the 200 loopback TIME_WAIT are reusable), then 5.
    assert [r["destination"] for r in rows] == ["10.0.0.9:5432", "127.0.0.1:8080"]
    assert rows[0]["value"] == 100.0 and rows[0]["limit"] == 99.9 and rows[0]["breached"] is True
    assert rows[0]["states"] == {"TIME_WAIT": 160, "ESTABLISHED": 40}
    assert data["destinations_total"] == 3
    loop = rows[1]
    assert loop["safe_only_by_reuse"] and loop["time_wait_reusable"] == 190 and loop["value"] == 5.0
    assert loop["breached"] is False and loop["forecast"]["hold_s"] == 1.0
    out = io.StringIO()
    render(build_report(prev, cur, default_rules(), top=10), Console(file=out, width=200))
    text = out.getvalue()
    assert "FULL: EADDRNOTAVAIL" in text and "settles 5% (reuse)" in text
    assert "127.0.0.1:8080" in text and "TW 160" in text
    narrow = io.StringIO()
    render(build_report(prev, cur, default_rules(), top=10), Console(file=narrow, width=80))
    lines = narrow.getvalue().splitlines()
    assert max(map(len, lines)) <= 80  # at 80 columns: destination, usage and forecast stay whole
    row = next(x for x in lines if x.startswith("10.0.0.9:5432"))
    assert "100%" in row and "FULL: EADDRNOTAVAIL" in row and "…" not in row and "Owner" in narrow.getvalue()


# --- the facts: typed, and the JSON detail order -------------------------------------------------

CONTEXT_KEYS = ["interval_s", "rates", "platform", "tcp_tw_reuse", "tcp_tw_reuse_delay_ms", "rate_method",
                "host_time_wait", "time_wait_s", "tcp_max_tw_buckets"]
DETAIL_KEYS = {
    "EphemeralPortUsage": [*CONTEXT_KEYS, "destination", "local_address", "remote_address", "remote_port",
                           "addresses", "states", "held", "time_wait", "time_wait_reusable", "time_wait_young",
                           "blocking", "percent", "percent_without_reuse", "usable_ports", "port_range",
                           "reserved_ports", "listening_ports_in_range", "reuse_applies", "reuse_reason",
                           "safe_only_by_reuse", "owners", "owners_inferred", "forecast"],
    "TimeWaitSockets": [*CONTEXT_KEYS, "time_wait", "overflow_delta", "top_destinations", "outbound_time_wait"],
    "OrphanSockets": [*CONTEXT_KEYS, "orphans", "tcp_max_orphans", "fin_wait", "tcp_fin_timeout"],
}
DETAIL_KEYS["EphemeralPortUsageWithoutReuse"] = DETAIL_KEYS["EphemeralPortExhaustion"] = \
    DETAIL_KEYS["EphemeralPortUsage"]


def test_facts_are_the_specs_type_and_the_detail_keeps_its_key_order() -> None:
    owner = Process(pid=9, command="client", cmdline="client --loop", user="app")
    prev, cur = pair([dest(ESTABLISHED=3, TIME_WAIT=180, young=5, owners=(owner,))], sysctls(reuse=1),
                     tw_delta=25, sockstat={"TCP.tw": 180, "TCP.orphan": 10})
    ms = ephemeral.measure(prev, cur)
    assert sorted(m.attribute for m in ms) == sorted(DETAIL_KEYS)
    for m in ms:
        s = spec(m.attribute)
        assert s is not None and type(m.facts) is s.facts  # the type its explainer is checked against
        assert list(m.detail) == DETAIL_KEYS[m.attribute]
    [usage] = by_attr(ms, "EphemeralPortUsage")
    d = usage.detail
    assert d["owners"] == [{"pid": 9, "command": "client", "cmdline": "client --loop", "user": "app"}]
    assert list(d["rates"]) == ["interval_s", "active_opens_per_s", "time_wait_entered_per_s",
                                "attempt_fails_per_s", "time_wait_overflow_per_s"]
    assert list(d["forecast"]) == ["rate_per_s", "basis", "hold_s", "steady_sockets", "steady_percent",
                                   "seconds_to_full"]
    assert d["addresses"] == [REMOTE, HOSTIP] and d["port_range"] == [40000, 40199]
    [tw] = by_attr(ms, "TimeWaitSockets")
    assert tw.detail["top_destinations"] == [{"destination": "10.0.0.9:5432", "local_address": HOSTIP,
                                              "time_wait": 180, "percent": usage.detail["percent"]}]


def test_destination_facts_are_the_context_then_the_destination_record() -> None:
    def declared(cls: type) -> list[tuple[str, object]]:
        return [(f.name, f.type) for f in dataclasses.fields(cls)]

    assert declared(DestinationFacts) == declared(EphemeralContext) + declared(DestinationRecord)
    prev, cur = pair([dest(ESTABLISHED=3, TIME_WAIT=20)], sysctls(), tw_delta=5)
    [m] = by_attr(ephemeral.measure(prev, cur), "EphemeralPortUsage")
    load = ephemeral.loads(cur)[0]
    row = ephemeral.destination_record(load, ephemeral.port_budget(cur), m.facts.forecast)
    assert {k: m.detail[k] for k in row} == row and list(m.detail)[len(CONTEXT_KEYS):] == list(row)
