"""Accept activity: counting queued vs accepted while decoding (recorded sock_diag replies), the
verdicts, and the M/M/1/K backlog sizing checked against the queue's stationary distribution."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connwatch.attributes.accept_facts import BURST, IDLE, KEEPING_UP, SATURATED, STUCK
from connwatch.attributes.accept_model import (
    activity,
    backlog_for,
    closed_within,
    load_from_loss,
    loss,
    new_accepted,
    size,
    verdict,
    waited_through,
    with_resends,
)
from connwatch.model import PortAccepts, SocketSummary
from connwatch.parsers.sock_diag import ACCEPT_SAMPLE, SocketAggregator

from .builders import listener, snapshot

FIX = Path(__file__).parents[1] / "fixtures" / "netlink"


def _recorded() -> dict[int, PortAccepts]:
    agg = SocketAggregator(frozenset({8080, 8081}), 1000)
    for line in (FIX / "sockets.hex").read_text().split():
        agg(bytes.fromhex(line))
    summary = agg.summary()
    assert summary.accepts is not None
    return {a.port: a for a in summary.accepts}


def test_recorded_queue_is_inode_zero_and_matches_the_listener_queue() -> None:
    # Recorded on a real kernel (tests/fixtures/netlink/README.md): 8080 never accepts, its queue held 6
    # (ss -ltnm Recv-Q 6 of backlog 5); 8081 accepted its one connection (Recv-Q 0).
    ports = _recorded()
    assert (ports[8080].waiting, ports[8080].accepted, len(ports[8080].waiting_keys)) == (6, 0, 6)
    assert (ports[8081].waiting, ports[8081].accepted) == (0, 1) and ports[8081].inodes == {ports[8081].max_inode}
    assert ports[8080].complete and ports[8081].complete


def _acc(waiting: int = 0, inodes: tuple[int, ...] = (), keys: tuple[int, ...] = (), complete: bool = True,
         ages: tuple[int, ...] = ()) -> PortAccepts:
    return PortAccepts(80, waiting, len(inodes), max(inodes, default=0), frozenset(inodes),
                       frozenset(keys), complete, ages)


def test_new_accepts_exact_by_inode_set_and_a_lower_bound_by_order() -> None:
    prev, cur = _acc(inodes=(10, 50, 30)), _acc(inodes=(50, 20, 60, 70))
    assert new_accepted(prev, cur) == (3, "inode set")  # 20, 60, 70 were not there before
    truncated = _acc(inodes=(10, 50, 30), complete=False)
    assert new_accepted(truncated, cur) == (2, "inode order")  # 20 < 50 is missed: a lower bound


def test_closed_within_counts_server_time_wait_younger_than_the_interval() -> None:
    acc = _acc(ages=(3, 2, 1, 0, 5, 9))
    assert closed_within(acc, 5.0) == 11 and closed_within(acc, 2.9) == 5  # whole seconds younger


def test_verdicts() -> None:
    queued = _acc(waiting=3, keys=(1, 2, 3))
    assert waited_through(queued, _acc(waiting=4, keys=(1, 2, 3, 4))) == 3
    assert verdict(queued, _acc(waiting=4, keys=(1, 2, 3, 4)), 0, 0, (False, False)) == STUCK
    # one of them left the queue (accepted, or reset by its client): not stuck, whatever the counts say
    assert verdict(queued, _acc(waiting=3, keys=(2, 3, 4)), 0, 0, (False, False)) == KEEPING_UP
    assert verdict(queued, _acc(waiting=6, keys=(4, 5, 6, 7, 8, 9)), 40, 25, (True, True)) == SATURATED
    assert verdict(_acc(), _acc(waiting=6, keys=(4, 5, 6, 7, 8, 9)), 40, 25, (False, True)) == SATURATED
    assert verdict(_acc(), _acc(waiting=1, keys=(4,)), 40, 25, (False, False)) == BURST
    assert verdict(_acc(), _acc(), 10, 0, (False, False)) == KEEPING_UP
    assert verdict(_acc(), _acc(), 0, 0, (False, False)) == IDLE
    # past the bound: every waiting connection still there is judged by the counts
    big = _acc(waiting=ACCEPT_SAMPLE + 5, keys=tuple(range(10)), complete=False)
    assert verdict(big, _acc(waiting=ACCEPT_SAMPLE + 9, keys=tuple(range(10))), 0, 3, (True, True)) == STUCK


def _stationary_loss(rho: float, k: int) -> float:
    """The probability that an M/M/1/K system is full, from its birth-death stationary distribution."""
    weights = [rho**n for n in range(k + 1)]
    return weights[-1] / sum(weights)


@given(st.floats(min_value=0.05, max_value=3.0), st.integers(min_value=0, max_value=60))
def test_loss_is_the_stationary_full_probability(rho: float, k: int) -> None:
    assert loss(rho, k) == pytest.approx(_stationary_loss(rho, k), rel=1e-6, abs=1e-12)


@given(st.floats(min_value=0.1, max_value=2.5), st.integers(min_value=1, max_value=40))
def test_load_from_loss_inverts_loss(rho: float, k: int) -> None:
    assert load_from_loss(loss(rho, k), k) == pytest.approx(rho, rel=1e-4)


@given(st.floats(min_value=0.05, max_value=0.999), st.sampled_from([0.1, 0.01, 0.001]))
def test_recommended_backlog_is_the_smallest_that_meets_the_target(rho: float, target: float) -> None:
    b = backlog_for(rho, target)
    assert b is not None
    assert loss(rho, b + 1) <= target and (b == 0 or loss(rho, b) > target)


def test_no_backlog_helps_when_arrivals_exceed_accepts() -> None:
    # queue full at both samples: accept rate = service rate; 60 offered for 40 accepted -> rho 1.5
    s = size(5.0, (6, 6), 40, 20, (True, True), 5, 4096)
    assert s is not None and s.load_with_resends == 1.5 and s.load == 1.0  # admitted = accepted: at capacity
    assert s.no_backlog_helps and s.recommended_backlog is None


def test_sizing_from_the_measured_drop_fraction() -> None:
    s = size(5.0, (0, 2), 98, 20, (False, False), 4, 4096)  # 100 admitted, 20 turned away
    assert s is not None and s.measured_drop_fraction == pytest.approx(20 / 120, abs=1e-4)
    assert s.load_with_resends is not None and loss(s.load_with_resends, 5) == pytest.approx(20 / 120, abs=1e-3)
    assert s.load == pytest.approx(s.load_with_resends * 100 / 120, abs=1e-3)  # re-sent SYNs taken out
    # the fixed point at the current backlog gives back the measured fraction
    assert s.predicted_drop_fraction == pytest.approx(20 / 120, abs=2e-3)
    load, b = s.load, s.recommended_backlog
    assert load is not None and b is not None and b == backlog_for(load / 0.99, 0.01) and not s.no_backlog_helps
    assert with_resends(load, b + 1) <= 0.01 < with_resends(load, b)
    assert size(5.0, (0, 0), 0, 0, (False, False), 4, 4096) is not None  # no drops: nothing to estimate
    assert size(5.0, (0, 0), 10, None, (False, False), 4, 4096) is None  # drops unknown


def test_text_listings_never_read_as_queued(tmp_path: Path) -> None:
    """ss/netstat text has no socket inodes: two captures of a busy server must not make every ESTABLISHED
    connection 'waiting since the previous sample' (a false stuck verdict). Only /proc/net/tcp counts."""
    import json
    import subprocess
    import sys

    ss = Path(__file__).parents[1] / "fixtures" / "captures" / "ss" / "ss_tupna_rhel.txt"  # listeners + inbound
    done = subprocess.run([sys.executable, "-m", "connwatch", "analyze", "--format", "json", "--interval", "5",
                           str(ss), str(ss)], capture_output=True, text=True, timeout=120)
    report = json.loads(done.stdout)
    assert not [f for f in report["findings"] if f["attribute"] == "AcceptActivity"]  # before the fix: an alert
    assert not [a for a in report["alerts"] if a["attribute"] == "AcceptActivity"]
    assert [u for u in report["unsupported"] if u["check"] == "AcceptActivity" and "inodes" in u["reason"]]


def test_one_sample_judged_alone_says_nothing_about_accepting() -> None:
    """A namespace that appears between check's two samples is judged on its second sample alone (the
    same snapshot twice): its 2 waiting connections must not read as 'still waiting, nothing accepted'
    (seen on a host where a busy server's namespace started mid-check: a false stuck alert)."""
    busy = SocketSummary(total=2, by_state={"ESTABLISHED": 2}, accepts=(_acc(waiting=2, keys=(1, 2)),))
    cur = snapshot(10.0, (listener(80, queue=2, backlog=4096),), sockets=busy)
    assert activity(cur, cur, 80, None) is None
    earlier = snapshot(5.0, (listener(80, queue=2, backlog=4096),), sockets=busy)
    facts = activity(earlier, cur, 80, None)  # two real samples 5 s apart: the same two still wait
    assert facts is not None and facts.verdict == STUCK and facts.waited_through == 2
