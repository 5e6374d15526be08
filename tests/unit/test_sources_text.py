"""`connwatch sources` text off a terminal, made without rich (reports/sources.py plain), equals what rich
prints through the command's Console; where plain lines cannot match it, rich draws the whole report."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connwatch.reports.sources import plain, render

from .builders import plain_utc_terminal, printed_report

WORDS = st.text("abz09-_./ ", min_size=1, max_size=24) | st.text("abz09-_.[]:/ é日\t\\", min_size=1, max_size=24)
# what the kernel's addresses become (a source is never free text): rich reads markup in the source cell,
# as it always did; owners and namespace names are free text (a Text, or escaped)
SOURCES = st.sampled_from(["10.0.0.7", "192.168.1.0/24", "2001:db8::1", "::1", "2001:db8::/64", "fe80::1%eth0",
                           "127.0.0.1", "203.0.113.9", "::ffff:10.0.0.1"])
OWNERS = st.lists(st.fixed_dictionaries({
    "owner": st.none() | st.fixed_dictionaries({"pid": st.none() | st.integers(-1, 4_194_304), "command": WORDS,
                                                "user": st.none() | WORDS}),
    "endpoint": st.sampled_from(["0.0.0.0:80", "[::]:443", "127.0.0.1:1414"]) | WORDS}), max_size=3)


@st.composite
def reports(draw: Any, depth: int = 1) -> dict[str, Any]:
    ports, rows = [], []
    for port in draw(st.lists(st.integers(1, 65535), unique=True, max_size=3)):
        shown = draw(st.integers(0, 6))
        limit = draw(st.none() | st.sampled_from([20.0, 100.0, 2.5]))
        for rank in range(1, shown + 1):
            rows.append({"source": draw(SOURCES), "port": port, "value": draw(st.integers(1, 10**7)),
                         "limit": limit, "half_open": draw(st.integers(0, 5000)),
                         "states": draw(st.dictionaries(st.sampled_from(["ESTABLISHED", "CLOSE_WAIT", "SYN_RECV"]),
                                                        st.integers(1, 10**6), max_size=3)),
                         "rank": rank, "local": draw(st.booleans()), "member_count": draw(st.integers(1, 300))})
        ports.append({"port": port, "owners": draw(OWNERS), "limit": limit,
                      "sources": shown + draw(st.integers(0, 10**6)), "connections": draw(st.integers(0, 10**7)),
                      "half_open": draw(st.integers(0, 10**5)),
                      "over_limit": draw(st.integers(0, 10**5)), "shown": shown})
    data: dict[str, Any] = {
        "ports": ports, "sources": rows,
        "ports_per_source": draw(st.lists(st.fixed_dictionaries({
            "source": SOURCES, "value": st.integers(2, 50), "ports": st.lists(st.integers(1, 65535), max_size=12)}),
            max_size=2))}
    if depth:
        data["namespaces"] = [{**draw(reports(depth=0)), "netns": {"label": draw(WORDS)}}
                              for _ in range(draw(st.integers(0, 2)))]
    return data


def _printed(monkeypatch: pytest.MonkeyPatch, data: dict[str, Any], fast: bool, columns: str | None = None) -> str:
    return printed_report(monkeypatch, data, "sources", render, plain if fast else None, columns)


@settings(max_examples=150, deadline=None)
@given(reports(), st.sampled_from(["", "40", "80", "200"]))
def test_plain_text_equals_what_rich_prints(data: dict[str, Any], columns: str) -> None:
    with pytest.MonkeyPatch.context() as mp:
        plain_utc_terminal(mp)
        assert _printed(mp, data, True, columns) == _printed(mp, data, False, columns)


def test_a_usual_report_is_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """The common case takes the plain path (it is not always left to rich), and prints what rich would."""
    data = {"ports": [{"port": 1414, "owners": [{"owner": {"pid": 4242, "command": "runmqlsr", "user": "mqm"},
                                                 "endpoint": "0.0.0.0:1414"}],
                       "limit": 100.0, "sources": 12, "connections": 310, "half_open": 3, "over_limit": 1, "shown": 2}],
            "sources": [{"source": "10.0.0.7", "port": 1414, "value": 150, "limit": 100.0, "half_open": 0,
                         "states": {"ESTABLISHED": 140, "CLOSE_WAIT": 10}, "rank": 1, "local": False,
                         "member_count": 1},
                        {"source": "2001:db8::/64", "port": 1414, "value": 20, "limit": 100.0, "half_open": 3,
                         "states": {"ESTABLISHED": 17, "SYN_RECV": 3}, "rank": 2, "local": False,
                         "member_count": 4}],
            "ports_per_source": [{"source": "203.0.113.9", "value": 12, "ports": [22, 80, 443]}]}
    plain_utc_terminal(monkeypatch)
    monkeypatch.delenv("COLUMNS", raising=False)
    lines = plain(data, 160)
    assert lines is not None
    assert lines[0] == "TCP(1414): 12 sources, 310 connections, 3 half-open; limit 100 per source, 1 over"
    assert lines[1] == "served by pid 4242 (runmqlsr, user mqm) on 0.0.0.0:1414"
    assert lines[4].split() == ["1", "10.0.0.7", "150", "0", "ESTABLISHED", "140,", "CLOSE_WAIT", "10", "no"]
    assert lines[-2] == "  ... and 10 more sources (top 2 shown; --top N)"
    assert lines[-1] == "203.0.113.9 used 12 listening ports: 22, 80, 443"
    assert _printed(monkeypatch, data, True) == "\n".join(lines) + "\n" == _printed(monkeypatch, data, False)
    assert plain({**data, "ports_per_source": [{"source": "[b]x[/b]", "value": 2, "ports": [1, 2]}]}, 160) is None
    other = {**data, "netns": {"label": "[red]x[/]"}}  # a namespace's name that looks like markup: printed as it is
    both = _printed(monkeypatch, {**data, "namespaces": [other]}, True)
    assert both.endswith("\nin [red]x[/]\n" + "\n".join(lines) + "\n")
    assert both == _printed(monkeypatch, {**data, "namespaces": [other]}, False)


@pytest.mark.parametrize("label", ["\\\\", "ns\\", "[bold]x[/bold]", "a:smile:b"])
def test_a_namespace_title_is_printed_as_named(monkeypatch: pytest.MonkeyPatch, label: str) -> None:
    """Rich's drawing prints another namespace's name as it is, as the plain path does: not read as markup,
    and trailing backslashes kept (an escaped name once merged them with the closing tag)."""
    empty: dict[str, Any] = {"ports": [], "sources": [], "ports_per_source": []}
    data = {**empty, "namespaces": [{**empty, "netns": {"label": label}}]}
    plain_utc_terminal(monkeypatch)
    drawn = _printed(monkeypatch, data, False, "80")
    assert f"\nin {label}\n" in drawn, drawn
    assert _printed(monkeypatch, data, True, "80") == drawn
