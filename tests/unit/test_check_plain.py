"""`check`'s text off a terminal made without rich (outputs/check_plain.py) is what rich printed: the same
lines as render_check through the Console a pipe gets, for results with nothing to report (few and many
listeners, drops and full queues that raise no alert, other namespaces, long notes, a store error, at
widths from 40 to 200); a result with an alert line is left to rich."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from connwatch.engine import CheckResult, judge, merge
from connwatch.model import NetnsInfo, Process, Snapshot
from connwatch.outputs.check_plain import plain_check
from connwatch.outputs.console import Unpadded
from connwatch.outputs.text import render_check
from connwatch.record import replace
from connwatch.rules.config import Config, parse_config
from connwatch.rules.spec import default_rules

from .builders import listener, plain_utc_terminal, snapshot

T0 = 1_764_627_000.0
OWNER = Process(pid=4242, command="java[worker]", user="app", started_at=T0 - 600, open_fds=57, fd_limit=1024)
NOTE = ("1 processes could not be inspected (running as uid 0): their sockets' owners are unknown; even full "
        "root may not read the fds of a process in another user namespace or under a security module; the "
        "listener's own netns and `ss -ltnp` there name it")
QUIET = Config(rules=default_rules())
UNLIMITED = parse_config({"settings": {"replace_defaults": True}, "rules": [
    {"attribute": "AcceptQueueFill", "high": "unlimited"}]}, "test")


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    plain_utc_terminal(monkeypatch)
    yield
    monkeypatch.undo()
    time.tzset()


def _pair(count: int, *, drops: int = 0, queue: int = 0, notes: tuple[str, ...] = ()) -> tuple[Snapshot, Snapshot]:
    def snap(at: float, dropped: int) -> Snapshot:
        made = tuple(listener(7000 + i, queue if i == 3 else 0, 128, dropped if i == 5 else 0,
                              owner=OWNER if i % 3 else None, address="2001:db8::7" if i % 4 == 0 else "127.0.0.1",
                              family=6 if i % 4 == 0 else 4) for i in range(count))
        return replace(snapshot(at, made), limitations=notes)

    return snap(T0, 0), snap(T0 + 5, drops)


def _rich(result: CheckResult, width: int) -> list[str]:
    from rich.console import Console

    out = io.StringIO()
    render_check(result, Console(file=Unpadded(out), width=width))  # type: ignore[arg-type]
    return out.getvalue().splitlines()


def _results() -> Iterator[tuple[str, CheckResult]]:
    for name, pair, config in [("empty", _pair(0), QUIET), ("three", _pair(3), QUIET), ("many", _pair(25), QUIET),
                               ("notes", _pair(12, notes=(NOTE, "IPv6 sockets not visible", NOTE)), QUIET),
                               ("full queue", _pair(14, queue=127), UNLIMITED),
                               ("drops", _pair(14, drops=7), UNLIMITED)]:
        yield name, judge(*pair, config, None)
    own, other = _pair(4), _pair(2)
    blue = NetnsInfo(4026532000, name="blue")
    away = (replace(other[0], netns=blue), replace(other[1], netns=blue))
    yield "namespaces", merge([judge(*own, QUIET, None), judge(*away, QUIET, None)])
    yield "store error", judge(*_pair(2), QUIET, None, store_error="/nowhere: state directory not writable")


@pytest.mark.parametrize("width", [40, 60, 80, 100, 120, 160, 200])
def test_plain_check_text_is_what_rich_prints(width: int) -> None:
    plain = 0
    for name, result in _results():
        assert not result.breached, name
        lines = plain_check(result, width)
        if lines is None:  # (rich's to draw: a word or a table too wide for the line)
            assert width < 80, (name, width)
            continue
        plain += 1
        assert lines == _rich(result, width), (name, width)
    assert plain >= 6 or width < 80


def test_a_problem_is_left_to_rich() -> None:
    """A stuck listener (6 of a backlog of 5, 124 dropped): its alert line and paragraph are rich's."""
    prev = snapshot(T0, (listener(1414, 6, 5, 100, owner=OWNER),),
                    counters={"TcpExt.ListenOverflows": 100, "TcpExt.ListenDrops": 100})
    cur = snapshot(T0 + 5, (listener(1414, 6, 5, 224, owner=OWNER),),
                   counters={"TcpExt.ListenOverflows": 224, "TcpExt.ListenDrops": 224})
    result = judge(prev, cur, QUIET, None)
    assert result.step.raised and plain_check(result, 160) is None


def test_a_piped_check_prints_the_plain_text_without_rich() -> None:
    code = ("import sys, tempfile\nfrom connwatch.cli import main\n"
            "code = main(['check', '--interval', '0.01', '--proc-root', sys.argv[1], '--no-netlink', '--netns', "
            "'own', '--state-dir', tempfile.mkdtemp()])\n"
            "print('RICH', 'rich' in sys.modules, code)")
    proc = str(__import__("pathlib").Path(__file__).parents[1] / "fixtures" / "proc" / "local_6x")
    done = subprocess.run([sys.executable, "-c", code, proc], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "TZ": "UTC", "CONNWATCH_CONFIG": ""})
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0].startswith("connwatch OK — 0 problem(s), ") and out[-1] == "RICH False 0"
    assert any(x.startswith("TCP listeners") for x in out)
