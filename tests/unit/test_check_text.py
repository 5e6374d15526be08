"""`check` text for the person paged at 3 a.m. (issue 13): summary first, a short paragraph per problem, no
remedy script, every line within the width at 80 and 160 columns, no trailing padding when piped; golden
files for one problem of each kind (backlog, ephemeral ports, per source) from hand-built snapshots.

Regenerate after a deliberate change: pytest tests/unit/test_check_text.py --regen-golden (review the diff)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connwatch.alerts.store import AlertStore
from connwatch.clock import FakeClock
from connwatch.engine import CheckResult, judge
from connwatch.model import (
    DestinationUsage,
    HostInfo,
    Process,
    Snapshot,
    SocketSummary,
    SourceTable,
    SourceUsage,
    Sysctls,
)
from connwatch.outputs.console import console
from connwatch.outputs.summary import first_step, log_lines, summary_line
from connwatch.outputs.text import render_check
from connwatch.rules.config import Config
from connwatch.rules.spec import default_rules

from .builders import listener, plain_utc_terminal, snapshot

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "check_text"
T0 = 1_764_627_000.0  # 2025-12-01 22:10:00 UTC
MQ = Process(pid=4242, command="runmqlsr", cmdline="runmqlsr -m QM1", user="mqm", started_at=T0 - 600,
             open_fds=57, fd_limit=1024)
SMTP = Process(pid=777, command="smtpd", user="mail", started_at=T0 - 86400 * 3)
APP = Process(pid=3100, command="php-fpm", user="www-data")


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    plain_utc_terminal(monkeypatch)
    yield
    monkeypatch.undo()
    time.tzset()


def backlog_pair() -> tuple[Snapshot, Snapshot]:
    """A stuck listener: 6 of a backlog of 5, 124 requests dropped in 5 s; a healthy port beside it."""
    healthy = listener(8443, 0, 511, 0, owner=MQ, address="10.20.30.40")
    prev = snapshot(T0, (listener(1414, 6, 5, 100, owner=MQ), healthy),
                    counters={"TcpExt.ListenOverflows": 100, "TcpExt.ListenDrops": 100})
    cur = snapshot(T0 + 5, (listener(1414, 6, 5, 224, owner=MQ), healthy),
                   counters={"TcpExt.ListenOverflows": 224, "TcpExt.ListenDrops": 224})
    return prev, cur


def ephemeral_pair() -> tuple[Snapshot, Snapshot]:
    """200 TIME_WAIT/s toward a database with 2,000 usable ports: full in about 45 s."""
    clock = FakeClock(start=T0)
    d = DestinationUsage(local_address="10.0.0.1", remote_address="10.0.0.9", remote_port=5432,
                         states={"TIME_WAIT": 200, "ESTABLISHED": 4}, time_wait_young=40, owners=(APP,))
    sysctls = Sysctls(ip_local_port_range=(40000, 41999), tcp_tw_reuse=0, tcp_tw_reuse_delay=1000,
                      tcp_max_tw_buckets=10000, tcp_max_orphans=1000)

    def snap(tw: int) -> Snapshot:
        summary = SocketSummary(total=204, by_state={"TIME_WAIT": 200, "ESTABLISHED": 4}, destinations=(d,))
        return Snapshot(taken_at=clock.time(), monotonic=clock.monotonic(), host=HostInfo("testhost"),
                        counters={"TcpExt.TW": tw, "Tcp.ActiveOpens": 5000 + tw, "Tcp.AttemptFails": 3,
                                  "TcpExt.TCPTimeWaitOverflow": 0}, sockstat={"TCP.tw": 200}, sysctls=sysctls,
                        listeners=(), sockets=summary)

    prev = snap(1000)
    clock.advance(5)
    return prev, snap(1200)


def sources_pair() -> tuple[Snapshot, Snapshot]:
    """One mail relay holds 150 connections to port 25 (limit 100); another 20."""
    usages = (SourceUsage("192.0.2.10", 25, {"ESTABLISHED": 150}), SourceUsage("192.0.2.11", 25, {"ESTABLISHED": 20}))
    sockets = SocketSummary(total=170, by_state={"ESTABLISHED": 170}, sources=SourceTable.of(usages))
    return (snapshot(T0, (listener(25, owner=SMTP),), sockets=sockets),
            snapshot(T0 + 5, (listener(25, owner=SMTP),), sockets=sockets))


KINDS = {"backlog": backlog_pair, "ephemeral": ephemeral_pair, "sources": sources_pair}


def check_text(result: CheckResult, width: int, monkeypatch: pytest.MonkeyPatch,
               capsys: pytest.CaptureFixture[str], verbose: bool = False) -> str:
    monkeypatch.setenv("COLUMNS", str(width))
    capsys.readouterr()
    render_check(result, console(), verbose)
    return capsys.readouterr().out


def judged(kind: str, state: Path) -> CheckResult:
    with AlertStore.open(state) as store:
        return judge(*KINDS[kind](), Config(default_rules()), store)


@pytest.mark.parametrize("width", [80, 160])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_check_text_is_golden(kind: str, width: int, tmp_path: Path, utc: None, regen_golden: bool,
                              monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    result = judged(kind, tmp_path)
    out = check_text(result, width, monkeypatch, capsys)
    lines = out.splitlines()
    assert max(len(x) for x in lines) <= width
    assert not [x for x in lines if x != x.rstrip()], "trailing padding in piped output"
    for script in ("table inet", "add rule", "flush chain", "ct count over"):
        assert script not in out
    [alert] = result.step.raised
    assert lines[2] == summary_line(alert, result.current.taken_at)[:width] or lines[2].startswith(alert_tag(alert))
    assert len(lines) <= 24, "one problem takes more than a screen"
    assert f"connwatch alerts show {alert.id}" in out
    path = GOLDEN / f"{kind}_{width}.txt"
    if regen_golden:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(out)
    assert out == path.read_text(), f"{path} differs (regenerate with --regen-golden and review)"


def alert_tag(alert: object) -> str:
    from connwatch.outputs.summary import tag

    return tag(alert)  # type: ignore[arg-type]


def test_summary_lines_say_where_what_clients_get_the_rate_and_since(tmp_path: Path, utc: None) -> None:
    now = T0 + 5
    words = {k: summary_line(judged(k, tmp_path / k).step.raised[0], now) for k in KINDS}
    assert words["backlog"] == "HIGH port 1414: 24.8 requests/s dropped, clients wait and retry; since 22:10:05"
    assert words["ephemeral"].startswith("HIGH 10.0.0.9:5432 from 10.0.0.1: ports run out at this rate "
                                         "(full in ~44.9 s)")
    assert "40 TIME_WAIT/s" in words["ephemeral"]
    assert words["sources"] == ("MEDIUM source 192.0.2.10 → port 25: holds 150 conns (limit 100): one client can "
                                "take every worker; since 22:10:05")


def test_paragraph_answers_still_other_ports_new_app_and_names_the_nft_command(
        tmp_path: Path, utc: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = check_text(judged("backlog", tmp_path / "b"), 160, monkeypatch, capsys)
    assert "Still happening: the queue of 0.0.0.0:1414 holds 6 of a backlog of 5 (full)." in out
    assert "No other port rejected connections" in out
    assert "Served by runmqlsr pid 4242, running for 10 min (recently started" in out
    assert "listen() asked for a backlog of 5; somaxconn (4096)" in out
    assert out.count("First: Check that the owner is alive") == 1
    assert "8443" not in out  # a healthy listener is not in check's table
    src = check_text(judged("sources", tmp_path / "s"), 80, monkeypatch, capsys)
    assert "connwatch sources --port 25 --nft --limit 100" in src


def test_verbose_prints_the_full_article_without_a_script(
        tmp_path: Path, utc: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = check_text(judged("sources", tmp_path), 80, monkeypatch, capsys, verbose=True)
    assert "Alert Explanation" in out and "User Action" in out
    assert "table inet connwatch {" not in out and max(map(len, out.splitlines())) <= 80


def test_a_check_after_the_problem_ended_says_so_at_once(
        tmp_path: Path, utc: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    prev, cur = backlog_pair()
    quiet = snapshot(T0 + 10, (listener(1414, 0, 5, 224, owner=MQ),),
                     counters={"TcpExt.ListenOverflows": 224, "TcpExt.ListenDrops": 224})
    with AlertStore.open(tmp_path) as store:
        first = judge(prev, cur, Config(default_rules()), store)
        later = judge(cur, quiet, Config(default_rules()), store)
    assert first.step.raised and not later.step.raised and later.step.still_active_clean
    out = check_text(later, 80, monkeypatch, capsys)
    assert out.startswith("connwatch OK")
    assert "OK port 1414: no longer happening (the last 5 s were clean); alert 1 clears after 2 more clean" in \
        " ".join(out.split())


def test_agent_log_lines_raise_change_severity_and_clear(tmp_path: Path, utc: None) -> None:
    prev, cur = backlog_pair()
    with AlertStore.open(tmp_path) as store:
        first = judge(prev, cur, Config(default_rules()), store)
        [alert] = first.step.raised
        assert log_lines({}, first.step, cur.taken_at) == [f"raised: {summary_line(alert, cur.taken_at)}"]
        again = judge(prev, cur, Config(default_rules()), store)
        assert log_lines({alert.key: alert.severity}, again.step, cur.taken_at) == []
        changed = log_lines({alert.key: 4}, again.step, cur.taken_at)
        assert changed == [f"severity LOW -> HIGH: {summary_line(again.step.updated[0], cur.taken_at)}"]
        quiet = snapshot(T0 + 10, (listener(1414, 0, 5, 224, owner=MQ),),
                         counters={"TcpExt.ListenOverflows": 224, "TcpExt.ListenDrops": 224})
        steps = [judge(cur, quiet, Config(default_rules()), store).step for _ in range(3)]
    assert [log_lines({alert.key: 2}, s, quiet.taken_at) for s in steps[:2]] == [[], []]
    [cleared] = log_lines({alert.key: 2}, steps[2], quiet.taken_at)
    assert cleared.startswith("OK port 1414: cleared (alert 1, raised 22:10:05")


@pytest.mark.parametrize(("action", "first"), [
    ("Check that it runs (py-spy dump. strace -p PID). Then raise it.",
     "Check that it runs (py-spy dump. strace -p PID)."),
    ("Find out who the client is and whether the load is legitimate.\nIf legitimate, raise it.",
     "Find out who the client is and whether the load is legitimate."),
    ("Use `a. b` first: then more", "Use `a. b` first."),
])
def test_first_step_is_the_first_sentence(action: str, first: str) -> None:
    assert first_step(action) == first


def test_tables_keep_the_numbers_whole_at_80_columns(tmp_path: Path, utc: None) -> None:
    """listeners: port, queue/backlog, drops and the owner's name stay readable; sources: the heading is
    not wrapped and source and connections stay whole."""
    import io

    from rich.console import Console

    from connwatch.reports.sources import build_report, render
    from connwatch.rules.sources import SourceSettings

    long_owner = Process(pid=123456, command="very-long-java-application-server", user="app", started_at=T0 - 60)
    snap = snapshot(T0, (listener(8080, 129, 128, 1234567, owner=long_owner,
                                  address="2001:db8:ffff:ffff:ffff:ffff:ffff:1", family=6),))
    from connwatch.outputs.text import listeners_table

    for width in (80, 160):
        out = io.StringIO()
        Console(file=out, width=width).print(listeners_table(snap, title="TCP listeners", width=width))
        text = out.getvalue()
        assert max(map(len, text.splitlines())) <= width
        row = next(x for x in text.splitlines() if x.lstrip().startswith("8080"))
        assert "129/128" in row and "1234567" in row and "very-long" in row
        assert "Owner started" in text or width == 80
    prev, cur = sources_pair()
    data = build_report(prev, cur, default_rules(), SourceSettings(), None, 10)
    out = io.StringIO()
    render(data, Console(file=out, width=80))
    lines = out.getvalue().splitlines()
    assert lines[0] == "TCP(25): 2 sources, 170 connections, 0 half-open; limit 100 per source, 1 over"
    assert max(map(len, lines)) <= 80 and any("192.0.2.10" in x and "150" in x for x in lines)


def test_width_of_a_dumb_terminal_and_no_padding_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from connwatch.outputs import console as cons

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

        def fileno(self) -> int:
            return 99

    monkeypatch.setenv("TERM", "dumb")
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(os, "get_terminal_size", lambda fd: os.terminal_size((177, 50)))
    assert cons.terminal_width(Tty()) == 177  # rich alone would say 80 on TERM=dumb
    monkeypatch.setenv("COLUMNS", "132")
    assert cons.terminal_width(Tty()) == 132
    sink = io.StringIO()
    stream = cons.Unpadded(sink)
    stream.write("a   \nb \x1b[0m\n")
    stream.write("c  ")
    stream.flush()
    assert sink.getvalue() == "a\nb\x1b[0m\nc"


def test_check_watch_repeats_and_judges_each_interval_against_the_previous(
        tmp_path: Path, utc: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Off a terminal, --watch prints one check after the other; the alert is raised once, then updated, and
    the exit code is the last check's."""
    import argparse

    from connwatch.commands.watch import watch

    prev, cur = backlog_pair()
    later = snapshot(T0 + 10, (listener(1414, 6, 5, 400, owner=MQ),),
                     counters={"TcpExt.ListenOverflows": 400, "TcpExt.ListenDrops": 400})
    samples = iter([[cur], [later]])
    monkeypatch.setenv("COLUMNS", "80")
    args = argparse.Namespace(format="text", interval=0.0, verbose=False)
    with AlertStore.open(tmp_path) as store:
        code = watch(args, [prev], lambda: next(samples),
                     lambda a, b: judge(a[0], b[0], Config(default_rules()), store), rounds=2)
    out = capsys.readouterr().out
    assert code == 2 and out.count("connwatch CRITICAL") == 2
    assert "24.8 requests/s dropped" in out and "35.2 requests/s dropped" in out  # (400-224)/5 s
    assert out.count("alert 1:") == 2  # the same alert, updated


def test_summary_names_the_namespace_of_a_pod(tmp_path: Path, utc: None) -> None:
    """An alert of another namespace (resource_key '… in pod shop/web') says so in its summary line."""
    import dataclasses

    [alert] = judged("backlog", tmp_path).step.raised
    pod = dataclasses.replace(alert, resource_key="TCP(1414) in pod shop/web",
                              resource={**alert.resource, "netns": "pod shop/web"})
    assert summary_line(pod, T0 + 5).startswith("HIGH port 1414 in pod shop/web: 24.8 requests/s dropped")


@given(st.lists(st.tuples(st.text("abc 12", max_size=30), st.text("xyz", max_size=8), st.sampled_from(["", "7/20"])),
                max_size=6), st.integers(40, 200))
def test_fit_table_never_fails_and_fits_when_the_essentials_do(rows: list[tuple[str, str, str]], width: int) -> None:
    import io

    from rich.console import Console

    from connwatch.outputs.fit import Col, fit_table

    cols = (Col("Name", shrink=True, drop=2), Col("Value", "right"), Col("Extra", drop=1))
    out = io.StringIO()
    Console(file=out, width=width).print(fit_table(cols, [list(r) for r in rows], width))
    assert max(map(len, out.getvalue().splitlines())) <= width
