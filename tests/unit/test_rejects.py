"""Rejection accounting (attributes/rejects.py): the counter arithmetic measured in kernel-facts.md."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connwatch.attributes.rejects import Deltas, PortEvidence, account, unattributed


def deltas(overflows: int = 0, synq: int = 0, deferred: int = 0, cookies: int = 0, rsts: int = 0) -> Deltas:
    return Deltas(overflows, synq, overflows + synq, deferred, cookies, rsts)


def port(drops: int, full: bool = False, half_open: int = 0, backlog: int = 5) -> PortEvidence:
    return PortEvidence(drops, full, half_open, backlog)


def test_deferred_accept_discards_are_not_rejections() -> None:
    """A healthy TCP_DEFER_ACCEPT server: d +300, TCPDeferAcceptDrop +300, ListenOverflows 0."""
    [r] = account({80: port(300)}, deltas(deferred=300)).values()
    assert r.total == 0 and r.deferred_accept == 300 and r.other == 0


def test_ack_time_overflows_are_counted_once() -> None:
    """4 ACK-time overflows gave d +8 and ListenOverflows +4 (kernel-facts); plus 10 SYN-time ones."""
    [r] = account({8080: port(18, full=True)}, deltas(overflows=14)).values()
    assert r.total == 14 and (r.syn_time, r.ack_time, r.double_counted) == (10, 4, 4)


def test_resets_go_to_the_port_that_overflowed_at_ack_time() -> None:
    got = account({8080: port(8, full=True), 9090: port(0)}, deltas(overflows=4, rsts=4))
    assert got[8080].resets == 4 and got[9090].resets == 0


def test_a_full_syn_queue_is_attributed_to_the_port_whose_half_open_reached_its_backlog() -> None:
    got = account({80: port(42, half_open=5), 443: port(3)}, deltas(synq=42, deferred=3))
    assert got[80].syn_queue_drops == 42 and got[80].accept_queue_overflows == 0
    assert got[443].total == 0 and got[443].deferred_accept == 3


def test_cookies_are_attributed_where_the_syn_queue_was_full_else_left_for_the_host() -> None:
    got = account({80: port(0, half_open=128, backlog=128), 22: port(0)}, deltas(cookies=500))
    assert got[80].cookies == 500 and got[22].cookies == 0
    nowhere = account({80: port(0, half_open=3, backlog=128)}, deltas(cookies=500))
    assert nowhere[80].cookies == 0


def test_the_full_queue_gets_the_overflows_before_a_busy_deferred_accept_port() -> None:
    got = account({8080: port(20, full=True), 80: port(300)}, deltas(overflows=20, deferred=300))
    assert got[8080].total == 20 and got[80].total == 0 and got[80].deferred_accept == 300


def test_a_listener_that_closed_leaves_unattributed_rejections() -> None:
    d = deltas(overflows=50)
    got = account({8080: port(30, full=True)}, d)
    assert got[8080].total == 30 and unattributed(d, got) == 20


@given(st.dictionaries(st.integers(1, 65535), st.tuples(st.integers(0, 10_000), st.booleans(),
                                                         st.integers(0, 300)), max_size=8),
       st.integers(0, 20_000), st.integers(0, 5_000), st.integers(0, 5_000))
def test_never_more_than_the_kernel_counted_nor_than_a_port_dropped(
        ports: dict[int, tuple[int, bool, int]], overflows: int, synq: int, deferred: int) -> None:
    evidence = {p: port(d, full, half) for p, (d, full, half) in ports.items()}
    d = deltas(overflows, synq, deferred)
    got = account(evidence, d)
    assert sum(r.total for r in got.values()) <= overflows + synq
    for p, r in got.items():
        used = r.total + r.deferred_accept + r.double_counted + r.other
        assert used == evidence[p].drops and min(r.total, r.other, r.double_counted) >= 0
    left = unattributed(d, got)
    assert left is not None and left >= 0
    if sum(e.drops for e in evidence.values()) >= overflows + synq and overflows + synq:
        assert left == 0 or any(e.drops for e in evidence.values())
