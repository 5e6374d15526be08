"""`connwatch top` without a terminal: the frame fits the screen exactly at 80x24 and 200x50, the hot
listener comes first with its rejects per second, and the keys sort, filter, switch panes and quit
(the real terminal is driven in tmux by tests/live/test_top_live.py)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from connwatch.commands.topkeys import handle, keys
from connwatch.model import Process
from connwatch.outputs.top import ListenerRow, TopData, TopView, frame

from .builders import listener

T0 = 1_764_627_000.0


def data(n: int = 30) -> TopData:
    hot = ListenerRow("", listener(8080, 6, 5, 900, owner=Process(pid=42, command="java")), 27.2)
    quiet = tuple(ListenerRow("pod shop/web" if i % 2 else "", listener(9000 + i, 0, 128, 0), 0.0)
                  for i in range(n))
    dests: tuple[dict[str, Any], ...] = tuple({
        "destination": f"10.0.0.{i}:5432", "local_address": "10.0.0.1", "remote_port": 5432,
        "percent": float(i), "percent_without_reuse": float(i), "held": i * 10, "states": {"TIME_WAIT": i},
                   "forecast": None, "owners": [], "namespace": ""} for i in range(20))
    srcs: tuple[dict[str, Any], ...] = tuple({
        "source": f"192.0.2.{i}", "port": 25, "value": 200 - i, "limit": 100.0, "half_open": 0,
        "states": {"ESTABLISHED": 200 - i}, "namespace": ""} for i in range(20))
    return TopData(host="testhost", taken_at=T0, listeners=(*quiet, hot), destinations=dests, sources=srcs,
                   full_at=T0, full_ms=40.0)


def draw(d: TopData, view: TopView, width: int, height: int) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, height=height, color_system=None).print(frame(d, view, width, height), end="")
    return out.getvalue().split("\n")


@pytest.mark.parametrize(("width", "height"), [(80, 24), (200, 50)])
@pytest.mark.parametrize("pane", ["all", "listeners", "destinations", "sources", "alerts"])
def test_frame_fills_the_screen_exactly(width: int, height: int, pane: str) -> None:
    lines = draw(data(), TopView(pane=pane), width, height)
    assert len(lines) == height and max(map(len, lines)) <= width
    assert lines[0].startswith("connwatch top — testhost") and lines[-1].startswith("q quit")
    if pane in ("all", "listeners"):
        first = next(x for x in lines if x.strip().startswith(("8080", "9000")))
        assert first.split()[0] == "8080" and "27.2" in first  # the hot port first, with its rate


def test_keys_sort_filter_switch_and_quit() -> None:
    view = TopView()
    assert keys(b"s\x1b[Aq") == ["s", "\x1b[A", "q"]  # an arrow key is one (ignored) key
    for k in "s":
        assert handle(view, k)
    assert view.sort_key("listeners") == "fill"
    for k in ["f", "9", "x", "0", "0", "1", "\r"]:  # digits only in the port prompt
        handle(view, k)
    assert view.port == 9001 and view.prompt is None
    lines = draw(data(), view, 80, 24)
    assert "port=9001" in lines[0]
    assert [x.split()[0] for x in lines if x.strip()[:1].isdigit() and "/" in x][:1] == ["9001"]
    for k in ["n", "s", "h", "o", "p", "\r"]:
        handle(view, k)
    assert view.namespace == "shop"
    handle(view, "c")
    assert view.port is None and view.namespace is None
    handle(view, "\t")
    assert view.pane == "listeners"
    handle(view, "3")
    assert view.pane == "sources"
    handle(view, "p")
    assert view.paused and "PAUSED" in draw(data(), view, 80, 24)[0]
    assert handle(view, "q") is False
