"""Judging many namespaces (issue 17): what is now made once gives what was made each time.

- the backlog accounting and accept activity shared through a Pair equal each subject measured alone,
  and reconcile of the pair equals reconcile of the two snapshots;
- rules chosen once per attribute (rules/evaluate._plan) equal evaluate_one for every measurement (fuzzed
  rules and values: generic, per-port, rate, unlimited; NaN, limits exactly met);
- check's JSON written by fastjson (jsonout.check_text) is json.dumps's text of check_dict, and its listener
  rows are the ones listener_row made;
- the first-seen times of more keys than one read takes, and record.replace by position.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from connwatch.alerts.store import AlertStore
from connwatch.attributes import accept, backlog
from connwatch.attributes.backlog import drop_deltas, reconcile
from connwatch.attributes.registry import Pair, measure_all, subjects
from connwatch.engine import CheckResult, judge, merge
from connwatch.findings import Finding, Measurement
from connwatch.model import NetnsInfo, Process, Snapshot
from connwatch.outputs.jsonout import check_dict, check_text, dumps, listener_row
from connwatch.record import Record, field, record, replace
from connwatch.rules.config import Config
from connwatch.rules.evaluate import evaluate, evaluate_one
from connwatch.rules.rule import Rule
from connwatch.rules.spec import default_rules

from .builders import listener, snapshot

T0 = 1_764_627_000.0
OWNER = Process(pid=4242, command="java", user="app", started_at=T0 - 600, open_fds=57, fd_limit=1024)
OTHER = Process(pid=77, command="nginx", cmdline="nginx: worker", user="www", started_at=T0 - 9000)
RULES = Config(rules=default_rules())


def _pair(drops: int = 0, overflows: int = 0, queue: int = 0, blind: bool = False) -> tuple[Snapshot, Snapshot]:
    """Listeners on 12 ports (two owners, IPv4 and IPv6 on some), one full queue, drops on two ports, one
    listener without a drop counter when `blind` (then nothing is accounted per port)."""
    def snap(at: float, dropped: int, counted: int) -> Snapshot:
        made = tuple(listener(8000 + i % 12, queue if i == 3 else 0, 5 if i == 3 else 128,
                              None if blind and i == 15 else dropped if i in (3, 7) else 0,
                              owner=(OWNER, OTHER, None)[i % 3], family=6 if i >= 12 else 4,
                              address="::" if i >= 12 else "0.0.0.0") for i in range(16))
        return snapshot(at, made, counters={"TcpExt.ListenOverflows": counted, "TcpExt.ListenDrops": counted,
                                            "TcpExt.TCPReqQFullDrop": 0, "TcpExt.TCPReqQFullDoCookies": 0})

    return snap(T0, 100, 100), snap(T0 + 5, 100 + drops, 100 + overflows)


PAIRS = [_pair(), _pair(drops=40, overflows=30, queue=6), _pair(drops=9, overflows=0, queue=2, blind=True)]


def test_shared_accounting_equals_each_subject_measured_alone() -> None:
    for prev, cur in PAIRS:
        alone = [m for s in subjects() for m in s.measure(prev, cur, RULES)]
        pair = Pair(prev, cur)
        assert measure_all(prev, cur, RULES, pair) == alone == measure_all(prev, cur, RULES)
        assert reconcile(prev, cur, pair) == reconcile(prev, cur)
        assert backlog.measure_pair(Pair(prev, cur), RULES) == backlog.measure(prev, cur, RULES)
        assert accept.measure_pair(Pair(prev, cur), RULES) == accept.measure(prev, cur, RULES)
    assert any(m.value > 0 for m in measure_all(*PAIRS[1], RULES) if m.attribute == "BacklogRejectsByPort")


def test_pair_makes_each_thing_once_per_arguments() -> None:
    made: list[tuple[object, ...]] = []

    def make(pair: Pair, *args: object) -> tuple[object, ...]:
        made.append(args)
        return (pair.cur.taken_at, *args)

    pair = Pair(*PAIRS[0])
    assert pair.once(make) == pair.once(make) == (T0 + 5,)
    assert pair.once(make, 80, None) == pair.once(make, 80, None) == (T0 + 5, 80, None)
    assert pair.once(make, 80, 1) == (T0 + 5, 80, 1)
    assert made == [(), (80, None), (80, 1)]


_rule = st.builds(Rule, attribute=st.just("A"), high=st.one_of(st.none(), st.sampled_from([0.0, 5.0, 10.0, 80.0])),
                  severity=st.integers(1, 4), alert_class=st.sampled_from(["x", "y"]),
                  mode=st.sampled_from(["value", "value", "rate"]),
                  port=st.one_of(st.none(), st.none(), st.sampled_from([80, 443])),
                  address=st.one_of(st.none(), st.none(), st.just("10.0.0.1")), clear_after=st.integers(1, 3))
_value = st.one_of(st.sampled_from([0.0, 5.0, 10.0, 80.0, math.nan, -1.0]), st.floats(-10, 200))


@settings(max_examples=300, deadline=None)
@given(rules=st.lists(_rule, max_size=5), values=st.lists(st.tuples(_value, st.sampled_from([80, 443, None])),
                                                          min_size=1, max_size=6),
       generic=st.booleans())
def test_rules_chosen_once_equal_evaluate_one(rules: list[Rule], values: list[tuple[float, int | None]],
                                              generic: bool) -> None:
    if generic:  # (the planned path: no rule names a port or address, or judges a rate)
        rules = [replace(r, port=None, address=None, mode="value") for r in rules]
    measured = [Measurement("A", {"port": port}, f"TCP({port})", value, "conns", facts={"interval_s": 5.0})
                for value, port in values] + [Measurement("B", {"port": 1}, "TCP(1)", 1.0, "conns")]
    expected = [f for m in measured if (f := evaluate_one([r for r in rules if r.attribute == m.attribute], m))]
    assert repr(evaluate(rules, measured)) == repr(expected)  # (repr: NaN != NaN)


def _namespaces() -> CheckResult:
    own, blue, green = PAIRS
    b, g = NetnsInfo(4026532000, name="blue"), NetnsInfo(4026532001, name="green", pid=9, command="pause")
    return merge([judge(*own, RULES, None), judge(replace(blue[0], netns=b), replace(blue[1], netns=b), RULES, None),
                  judge(replace(green[0], netns=g), replace(green[1], netns=g), RULES, None)])


def test_check_json_is_json_dumps_text_of_check_dict() -> None:
    result = _namespaces()
    assert result.step.raised  # (alerts, their details and folded breaches are in the document)
    assert check_text(result) == dumps(check_dict(result), "check")
    tables = check_dict(result, tables=True)
    assert tables["listeners"].rows() == check_dict(result)["listeners"]
    data = json.loads(check_text(result))
    assert len(data["listeners"]) == 48 and len(data["namespaces"]) == 2  # (the own one is a capture)


def test_check_listener_rows_are_what_listener_row_made() -> None:
    result = _namespaces()
    rows = []
    for part in result.parts:
        deltas = drop_deltas(part.previous, part.current)
        for x in part.current.listeners:
            row = listener_row(x, deltas.get(x.identity))
            if part.current.netns is not None and not part.current.netns.own:
                from connwatch.snapshot_json import netns_dict

                row["netns"] = netns_dict(part.current.netns)
            rows.append(row)
    assert check_dict(result)["listeners"] == rows
    assert any(r["drops_delta"] for r in rows) and any(r["owner"] for r in rows) and any("netns" in r for r in rows)
    assert any(r["drops_delta"] is None for r in rows)


def test_first_seen_of_more_keys_than_one_read(tmp_path: Path) -> None:
    keys = [f"listen:{p}@netns n{i}" for i in range(3) for p in range(400)]
    with AlertStore.open(tmp_path) as store:
        assert store.mark_seen(keys[:10], 5.0) == dict.fromkeys(keys[:10], 5.0)
        seen = store.mark_seen([*reversed(keys), keys[0]], 9.0)
    assert list(seen) == list(reversed(keys))  # (in the order given, each once)
    assert seen == {k: 5.0 if k in keys[:10] else 9.0 for k in keys}


@record
class _Made(Record):
    a: int
    b: str = "b"
    c: list[int] = field(default_factory=list)


def test_replace_by_position() -> None:
    one = _Made(1, c=[1])
    two = replace(one, b="x")
    assert (two.a, two.b, two.c) == (1, "x", [1]) and two.c is one.c  # (the factory is not called again)
    assert replace(one) == one and replace(one) is not one
    try:
        replace(one, d=2)
    except TypeError as exc:
        assert "'d'" in str(exc)
    else:
        raise AssertionError("replace took a field the record does not have")
    f = Finding(Measurement("A", {}, "TCP(1)", 1.0, "conns"), 0.0, 3, "x", 3, True)
    assert replace(f, folded_into="B TCP(1)").folded_into == "B TCP(1)" and replace(f, severity=1).limit == 0.0
