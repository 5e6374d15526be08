"""`connwatch destinations` text off a terminal, made without rich (reports/destinations.py plain), equals what
rich prints through the command's Console; where plain lines cannot match it, rich draws the whole report."""

from __future__ import annotations

import io
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.errors import MarkupError

from connwatch.outputs.fit import wrapped
from connwatch.reports.destinations import build_report, plain, render
from connwatch.rules.spec import default_rules

from .builders import plain_utc_terminal, printed_report
from .test_ephemeral import LO, dest, pair, sysctls

WORDS = st.text("abz09-_./ ", min_size=1, max_size=24) | st.text("abz09-_.[]:/ é日\t\\▒", min_size=1, max_size=24)
SENTENCES = st.text("ab z09-_./,;()'", max_size=220) | st.text("ab z:[]/日\\", max_size=60)  # wrapped by rich
# what the kernel's addresses become (an address is never free text); owners, notes and namespace names are
DESTINATIONS = st.sampled_from(["10.0.0.9:5432", "127.0.0.1:8080", "[2001:db8::1]:443", "[::1]:25",
                                "203.0.113.7:65535", "[fe80::1%eth0]:22"])
LOCALS = st.sampled_from(["10.0.0.1", "127.0.0.1", "::1", "2001:db8::2", "0.0.0.0"])
STATES = st.dictionaries(st.sampled_from(["ESTABLISHED", "TIME_WAIT", "SYN_SENT", "FIN_WAIT2", "CLOSE_WAIT",
                                          "NEW_SYN_RECV"]), st.integers(1, 10**6), min_size=1, max_size=4)
PERCENT = st.none() | st.floats(0, 150, allow_nan=False) | st.sampled_from([0.0, 0.4, 50.0, 80.5, 100.0])
NUMBER = st.none() | st.integers(0, 10**7)


@st.composite
def rows(draw: Any) -> dict[str, Any]:
    pct = draw(PERCENT)
    forecast = draw(st.none() | st.fixed_dictionaries({
        "rate_per_s": st.floats(0, 10**5, allow_nan=False), "steady_percent": st.floats(0, 10**4, allow_nan=False),
        "seconds_to_full": st.none() | st.floats(0, 10**6, allow_nan=False)}))
    return {"destination": draw(DESTINATIONS), "local_address": draw(LOCALS), "percent": pct,
            "percent_without_reuse": None if pct is None else draw(st.none() | st.floats(pct, 200, allow_nan=False)),
            "held": draw(st.integers(0, 10**6)), "forecast": forecast, "states": draw(STATES),
            "safe_only_by_reuse": draw(st.booleans()),
            "owners": draw(st.lists(st.fixed_dictionaries({"command": WORDS, "pid": st.integers(1, 4_194_304)}),
                                    max_size=2))}


@st.composite
def reports(draw: Any, depth: int = 1) -> dict[str, Any]:
    listed = draw(st.lists(rows(), max_size=4))
    rates: dict[str, Any] = {"interval_s": draw(st.sampled_from([0.0, 1.0, 5.002]))}
    if draw(st.booleans()):
        rates.update({"active_opens_per_s": draw(st.floats(0, 10**5, allow_nan=False)),
                      "time_wait_entered_per_s": draw(st.floats(0, 10**5, allow_nan=False)),
                      "attempt_fails_per_s": draw(st.floats(0, 100, allow_nan=False))})
    data: dict[str, Any] = {
        "host": {"port_range": draw(st.none() | st.sampled_from([[32768, 60999], [1024, 65535], [40000, 40199]])),
                 "usable_ports": draw(NUMBER), "reserved_ports": draw(st.integers(0, 60000)),
                 "listening_ports_in_range": draw(st.integers(0, 5000)),
                 "tcp_tw_reuse": draw(st.none() | st.integers(0, 2)),
                 "time_wait": draw(NUMBER), "tcp_max_tw_buckets": draw(NUMBER), "orphans": draw(NUMBER),
                 "tcp_max_orphans": draw(NUMBER)},
        "rates": rates, "rate_method": draw(SENTENCES), "destinations": listed,
        "destinations_total": len(listed) + draw(st.integers(0, 10**5)),
        "limitations": draw(st.lists(SENTENCES, max_size=2))}
    if depth:
        data["namespaces"] = [{**draw(reports(depth=0)), "netns": {"label": draw(WORDS)}}
                              for _ in range(draw(st.integers(0, 2)))]
    return data


def _printed(monkeypatch: pytest.MonkeyPatch, data: dict[str, Any], fast: bool, columns: str | None = None) -> str:
    return printed_report(monkeypatch, data, "destinations", render, plain if fast else None, columns)


@settings(max_examples=150, deadline=None)
@given(reports(), st.sampled_from(["", "40", "80", "119", "120", "200"]))
def test_plain_text_equals_what_rich_prints(data: dict[str, Any], columns: str) -> None:
    with pytest.MonkeyPatch.context() as mp:
        plain_utc_terminal(mp)
        try:
            drawn = _printed(mp, data, False, columns)
        except MarkupError:  # (a note or rate method that reads as a bad tag: rich refuses it either way)
            with pytest.raises(MarkupError):
                _printed(mp, data, True, columns)
            return
        assert _printed(mp, data, True, columns) == drawn


@settings(max_examples=300, deadline=None)
@given(st.text("ab z\u00a0:-", max_size=120) | SENTENCES, st.integers(1, 90))
def test_wrapped_lines_are_richs(text: str, width: int) -> None:
    from rich.console import Console

    got = wrapped(text, width)
    if got is None:
        return
    out = io.StringIO()
    Console(file=out, width=width, markup=False, emoji=False, highlight=False).print(text)
    assert got == [line.rstrip() for line in out.getvalue().split("\n")[:-1]]


def test_a_real_report_is_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """A report built from samples (IPv4 destinations, a full one, loopback reuse, rates) takes the plain path,
    at the piped width and at 80 columns, and prints what rich would."""
    dests = [dest(port=6379, TIME_WAIT=5), dest(ESTABLISHED=40, TIME_WAIT=160),
             dest(remote=LO, local=LO, port=8080, TIME_WAIT=200, young=10)]
    prev, cur = pair(dests, sysctls(reuse=2), tw_delta=50)
    data = build_report(prev, cur, default_rules(), top=10)
    plain_utc_terminal(monkeypatch)
    monkeypatch.delenv("COLUMNS", raising=False)
    lines = plain(data, 160)
    assert lines is not None
    assert lines[0].startswith("Ephemeral ports per destination: range 40000-40199, 200 usable")
    assert lines[1:3] == ["over 5.0 s: 10.0/s opened, 10.0/s entered TIME_WAIT, 0.0/s failed; forecast: Little's "
                          "law, host TcpExt TW rate 10/s x outbound share 1.00, apportioned by",  # (wrapped at 160)
                          "TIME_WAIT younger than tcp_tw_reuse_delay"]
    assert lines[3] == ("Ports in use: blocking █, +reusable TIME_WAIT ▒; Forecast: at the current rate (Little's "
                        "law); (reuse): safe only thanks to tcp_tw_reuse")
    assert lines[4] == "Busiest destinations (3 of 3)"
    full = lines.index(next(x for x in lines if x.startswith("10.0.0.9:5432")))
    assert lines[full].split()[:4] == ["10.0.0.9:5432", "████████████", "100%", "200"]
    assert lines[full].endswith("FULL: EADDRNOTAVAIL   ?") and lines[full + 1] == "from 10.0.0.1"
    assert any(x.startswith("127.0.0.1:8080") and "settles 5% (reuse)" in x for x in lines)
    assert _printed(monkeypatch, data, True) == "\n".join(lines) + "\n" == _printed(monkeypatch, data, False)
    monkeypatch.setenv("COLUMNS", "80")
    narrow = plain(data, 80)
    assert narrow is not None and max(map(len, narrow)) <= 80 and len(narrow) > len(lines)  # wrapped head lines
    assert _printed(monkeypatch, data, True) == "\n".join(narrow) + "\n" == _printed(monkeypatch, data, False)
    ipv6 = {**data, "destinations": [{**data["destinations"][0], "destination": "[2001:db8::1]:443"}]}
    assert plain(ipv6, 160) is None  # '[' and '::': rich's to draw
    assert _printed(monkeypatch, ipv6, True) == _printed(monkeypatch, ipv6, False)
