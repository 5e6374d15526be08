"""Real captures written by others, analysed: findings must match the golden JSON."""

from __future__ import annotations

import json

import pytest

from connwatch.attributes import known_attributes

from .analyze_golden import CASES, GOLDEN, run_case, summary


@pytest.mark.parametrize("name", sorted(CASES))
def test_capture_matches_golden(name: str) -> None:
    golden = json.loads((GOLDEN / f"{name}.json").read_text())
    attributes = set(golden["attributes"]) & set(known_attributes())
    code, report, err = run_case(golden["inputs"])
    assert err == "", err
    got = summary(report, attributes)
    want = {k: golden[k] for k in got}
    if attributes != set(golden["attributes"]):  # an attribute module went away: compare what remains
        want["alerts"] = [a for a in want["alerts"] if a["attribute"] in attributes]
        want["findings"] = [f for f in want["findings"] if f[0] in attributes]
    assert got == want
    if attributes == set(known_attributes()):
        assert code == golden["exit_code"]


def test_golden_cases_cover_every_format() -> None:
    formats = {fmt for name in CASES for _path, fmt in json.loads((GOLDEN / f"{name}.json").read_text())["formats"]}
    assert formats >= {"ss", "ss-summary", "netstat-linux", "netstat-windows", "netstat-bsd-listen",
                       "netstat-s-linux", "netstat-s-windows", "nstat", "proc-net-tcp", "proc-net-tcp6",
                       "proc-net-netstat", "proc-net-sockstat6"}
