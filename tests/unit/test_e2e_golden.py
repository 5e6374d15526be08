"""Golden end-to-end outputs: `check --format json`, `check` text and the agent's /metrics, byte for byte.

As node_exporter's end-to-end-test.sh does for /metrics: a fixture tree goes in, the whole output
comes out and must equal the committed file. A refactor that changes no behaviour changes no byte.

Input: tests/fixtures/e2e/<scenario>/{before,after}/, two samples recorded from a real kernel by
tests/fixtures/e2e/record.py (see the README there): /proc files, sysctls and the raw sock_diag
replies, read through `CollectOptions(replay=...)` instead of a netlink socket. Everything after the
socket is the code `check` and `connwatch run` use: check's own `_judge`/`_print` (store, fallback,
JSON and rich text) and the agent's `full_sample` with its registry, encoded by generate_latest.

Expected: tests/fixtures/e2e/<scenario>/expected/{check.json,check.txt,metrics.prom}.

Regenerate after a deliberate change of output, then review `git diff tests/fixtures/e2e`:

    pytest tests/unit/test_e2e_golden.py --regen-golden
    CONNWATCH_REGEN_GOLDEN=1 pytest tests/unit/test_e2e_golden.py       (same thing)

The truth checks (the alert's value is the recorded per-listener drop delta, nothing on the healthy
port) run before any file is compared or written, so a regeneration cannot bless a wrong number.

Deterministic by construction: a FakeClock starting at the recording's time and advanced by check's
default --interval (the recording's nominal interval), TZ=UTC, the host name from the tree, owners
off (no /proc/*/fd scan), a fresh state dir per output, COLUMNS=120 and no colour. Normalised
explicitly (they measure this test run, not the recording): every source's duration_ms is set to
0.0 in both snapshots; in /metrics the process series (process_*, connwatch_agent_process_*) are left
out and connwatch_sample_duration_seconds values are written as 0.0.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import json
import logging
import re
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import connwatch.agent.loop
from connwatch.agent.loop import Agent
from connwatch.agent.options import AgentOptions
from connwatch.cli import build_parser
from connwatch.clock import Clock, FakeClock
from connwatch.collect import CollectOptions, collect
from connwatch.commands import check
from connwatch.commands.common import collect_options
from connwatch.model import Snapshot
from connwatch.rules.config import load_config

E2E = Path(__file__).resolve().parents[1] / "fixtures" / "e2e"
SCENARIOS = sorted(p.name for p in E2E.iterdir() if (p / "recording.json").is_file())
SAMPLES = ("before", "after")


def _recording(scenario: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((E2E / scenario / "recording.json").read_text())
    return data


# -- independent truth from the recorded bytes (no connwatch parser involved) -------------------


def _listener_drops(sample: Path, port: int) -> int:
    """Sum of SK_MEMINFO_DROPS over the recorded LISTEN sockets on `port` (IPv4 and IPv6).

    Walks struct nlmsghdr (16 bytes) -> struct inet_diag_msg (72 bytes; sport big-endian at +4) ->
    struct rtattr list; INET_DIAG_SKMEMINFO (7) holds __u32[], SK_MEMINFO_DROPS is index 8.
    """
    total = 0
    for family in (4, 6):
        for line in (sample / "sock_diag" / f"listeners-ipv{family}.hex").read_text().splitlines():
            if not line.startswith("reply "):
                continue
            chunk = bytes.fromhex(line.removeprefix("reply "))
            off = 0
            while off + 16 <= len(chunk):
                length, kind = struct.unpack_from("=IH", chunk, off)
                if kind == 20 and int.from_bytes(chunk[off + 20:off + 22], "big") == port:
                    attr = off + 16 + 72
                    while attr + 4 <= off + length:
                        rta_len, rta_type = struct.unpack_from("=HH", chunk, attr)
                        if rta_type == 7:
                            total += struct.unpack_from("=I", chunk, attr + 4 + 8 * 4)[0]
                        attr += max((rta_len + 3) & ~3, 4)
                off += max((length + 3) & ~3, 16)
    return total


def _tcpext(sample: Path, name: str) -> int:
    """One TcpExt counter from the recorded net/netstat (header line, then value line)."""
    rows = [line.split() for line in (sample / "net" / "netstat").read_text().splitlines()
            if line.startswith("TcpExt:")]
    return int(dict(zip(rows[0], rows[1], strict=True))[name])


def _drop_delta(scenario: str, port: int) -> int:
    before, after = (_listener_drops(E2E / scenario / s, port) for s in SAMPLES)
    return after - before


# -- running the commands' own code on the recording ---------------------------------------------


@pytest.fixture
def fixed_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """UTC, 120 columns, no colour, no terminal-dependent switch."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CONNWATCH_PROC_ROOT", "CONNWATCH_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("NO_COLOR", "1")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _clock(scenario: str) -> FakeClock:
    start = datetime.datetime.fromisoformat(_recording(scenario)["recorded_at"]).timestamp()
    return FakeClock(start=start)


def _sample(scenario: str, name: str, clock: Clock, opts: CollectOptions) -> Snapshot:
    """collect() on one recorded sample; durations (this run's, not the recording's) set to 0.0.

    The tree is named relative to the scenario directory (the caller's working directory), so the
    sources read "after/net/netstat" wherever the repository is checked out."""
    assert Path.cwd() == E2E / scenario
    snap = collect(clock, dataclasses.replace(opts, proc_root=name, replay=f"{name}/sock_diag", owners=False))
    return dataclasses.replace(snap, statuses=tuple(dataclasses.replace(s, duration_ms=0.0) for s in snap.statuses))


def run_check(scenario: str, fmt: str, state_dir: Path, capsys: pytest.CaptureFixture[str],
              monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """What commands/check.py run() does, with the recording in place of the kernel and the wait."""
    monkeypatch.chdir(E2E / scenario)
    args = build_parser().parse_args(["check", "--format", fmt, "--state-dir", str(state_dir)])
    assert args.interval == _recording(scenario)["nominal_interval_s"]
    config = load_config(args.config)
    clock = _clock(scenario)
    opts = collect_options(args)
    prev = _sample(scenario, "before", clock, opts)
    clock.sleep(args.interval)
    cur = _sample(scenario, "after", clock, opts)
    capsys.readouterr()
    result = check._judge(args, prev, cur, config)
    check._print(args.format, result)
    out, err = capsys.readouterr()
    assert err == ""
    return result.exit_code, out


def run_agent_metrics(scenario: str, state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Two full samples of the agent (`connwatch run`) on the recording; its /metrics body, normalised."""
    recorded = iter(SAMPLES)

    def replaying(clock: Clock, opts: CollectOptions | None = None) -> Snapshot:
        return _sample(scenario, next(recorded), clock, opts or CollectOptions())

    monkeypatch.setattr(connwatch.agent.loop, "collect", replaying)
    monkeypatch.chdir(E2E / scenario)
    clock = _clock(scenario)
    opts = AgentOptions(state_dir=state_dir, listen_port=0, proc_root="after")
    agent = Agent(opts, load_config(opts.config), clock)
    try:
        agent.full_sample()
        clock.sleep(opts.interval)
        agent.full_sample()
        body = generate_latest(agent.registry).decode()
    finally:
        agent.keeper.close()
    return normalise_metrics(body)


def normalise_metrics(body: str) -> str:
    kept = []
    for line in body.splitlines(keepends=True):
        if re.match(r"(# (HELP|TYPE) )?(connwatch_agent_)?process_", line):
            continue
        if line.startswith("connwatch_sample_duration_seconds{"):
            line = line.rsplit(" ", 1)[0] + " 0.0\n"
        kept.append(line)
    return "".join(kept)


def compare_golden(path: Path, got: str, regen: bool) -> None:
    if regen:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got)
        return
    assert path.is_file(), f"{path} missing: run pytest {Path(__file__).name} --regen-golden"
    want = path.read_text()
    if got != want:
        diff = "".join(difflib.unified_diff(want.splitlines(keepends=True), got.splitlines(keepends=True),
                                            str(path), "this run", n=2))
        pytest.fail(f"output differs from {path} (regenerate with --regen-golden if intended):\n{diff[:6000]}")


# -- the tests ----------------------------------------------------------------------------------


def test_recording_is_what_the_readme_says() -> None:
    """The scenario's own numbers, from the recorded bytes: the stuck port dropped, the healthy one did not."""
    rec = _recording("backlog_stuck_timewait")
    before, after = (E2E / "backlog_stuck_timewait" / s for s in SAMPLES)
    stuck, healthy = rec["stuck_port"], rec["healthy_port"]
    assert _drop_delta("backlog_stuck_timewait", stuck) == 136
    assert _drop_delta("backlog_stuck_timewait", healthy) == 0 and _listener_drops(after, healthy) == 0
    overflows = _tcpext(after, "ListenOverflows") - _tcpext(before, "ListenOverflows")
    assert overflows == _drop_delta("backlog_stuck_timewait", stuck)  # SYN-stage overflows count once in both
    assert _tcpext(after, "TW") - _tcpext(before, "TW") == rec["churn_between"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_check_json_is_golden(scenario: str, tmp_path: Path, fixed_env: None, regen_golden: bool,
                              capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    rec = _recording(scenario)
    code, out = run_check(scenario, "json", tmp_path / "state", capsys, monkeypatch)
    data = json.loads(out)
    absent = [rel.rsplit("/", 1)[1] for rel in rec["absent_in_namespace"]]
    failed = [(s["name"], "; ".join(x for x in s["detail"].split("; ") if not x.endswith("(optional)")))
              for s in data["sources"] if not s["ok"]]  # sysctls recorded later (tcp_syn_*) are optional
    assert failed == [("sysctl", "; ".join(f"{name}: unavailable: no such file" for name in absent))]
    assert data["host"] == (E2E / scenario / "after" / "sys" / "kernel" / "hostname").read_text().strip()
    delta = _drop_delta(scenario, rec["stuck_port"])
    [alert] = [a for a in data["alerts"] if a["attribute"] == "BacklogRejectsByPort"]
    assert (alert["port"], alert["value"], alert["severity_name"]) == (rec["stuck_port"], float(delta), "High")
    assert not [a for a in data["alerts"] if a["port"] == rec["healthy_port"]]
    assert not [m for m in data["measurements"] if m.get("port") == rec["healthy_port"] and m["breached"]]
    assert [m["value"] for m in data["measurements"] if m["attribute"] == "BacklogRejectsByPort"
            and m.get("port") == rec["healthy_port"]] == [0.0]
    assert code == data["exit_code"] == 2
    compare_golden(E2E / scenario / "expected" / "check.json", out, regen_golden)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_check_text_is_golden(scenario: str, tmp_path: Path, fixed_env: None, regen_golden: bool,
                              capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    rec = _recording(scenario)
    code, out = run_check(scenario, "text", tmp_path / "state", capsys, monkeypatch)
    delta = _drop_delta(scenario, rec["stuck_port"])
    rate = delta / rec["nominal_interval_s"]
    assert out.splitlines()[2] == f"HIGH port {rec['stuck_port']}: {rate:.1f} requests/s dropped, clients wait and " \
        "retry; since 22:27:59"  # the summary line comes first
    assert f"port {rec['stuck_port']} — alert 1: BacklogRejectsByPort {delta} requests, limit 100" in out
    assert f"TCP({rec['healthy_port']})" not in out and f"{rec['healthy_port']} " not in out
    assert "\x1b[" not in out and max(map(len, out.splitlines())) <= 120
    assert code == 2
    compare_golden(E2E / scenario / "expected" / "check.txt", out, regen_golden)


def _samples(body: str, name: str, keep: Callable[[dict[str, str]], bool]) -> list[float]:
    return [s.value for fam in text_string_to_metric_families(body) for s in fam.samples
            if s.name == name and keep(s.labels)]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_agent_metrics_are_golden(scenario: str, tmp_path: Path, fixed_env: None, regen_golden: bool,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    rec = _recording(scenario)
    body = run_agent_metrics(scenario, tmp_path / "state", monkeypatch)
    stuck, healthy = str(rec["stuck_port"]), str(rec["healthy_port"])
    delta = _drop_delta(scenario, rec["stuck_port"])
    assert _samples(body, "connwatch_alert_value", lambda x: x["attribute"] == "BacklogRejectsByPort"
                    and x["port"] == stuck) == [float(delta)]
    assert _samples(body, "connwatch_alert_active", lambda x: x["port"] == healthy) == []
    after_drops = _listener_drops(E2E / scenario / "after", rec["stuck_port"])
    assert sum(_samples(body, "connwatch_listener_drops_total", lambda x: x["port"] == stuck)) == after_drops
    assert "connwatch_agent_process_" not in body
    compare_golden(E2E / scenario / "expected" / "metrics.prom", body, regen_golden)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_agent_logs_the_raise_in_the_words_of_the_summary_line(scenario: str, tmp_path: Path, fixed_env: None,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """One INFO line when the alert is raised, the same words as check's summary line (issue 13)."""
    rec = _recording(scenario)
    with caplog.at_level(logging.INFO, "connwatch.agent"):
        run_agent_metrics(scenario, tmp_path / "state", monkeypatch)
    raised = [r for r in caplog.records if r.getMessage().startswith("raised: ")]
    rate = _drop_delta(scenario, rec["stuck_port"]) / rec["nominal_interval_s"]
    assert [(r.levelno, r.getMessage()) for r in raised] == [
        (logging.INFO, f"raised: HIGH port {rec['stuck_port']}: {rate:.1f} requests/s dropped, clients wait and "
         "retry; since 22:27:59")]


@pytest.mark.parametrize("width", [80, 160])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_check_text_of_the_recording_fits(scenario: str, width: int, tmp_path: Path, fixed_env: None,
                                          capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorded stuck listener at 80 and 160 columns: summary first, no line past the width, no padding."""
    monkeypatch.setenv("COLUMNS", str(width))
    code, out = run_check(scenario, "text", tmp_path / "state", capsys, monkeypatch)
    lines = out.splitlines()
    assert code == 2 and lines[2].startswith("HIGH port 8080: ")
    assert max(map(len, lines)) <= width and all(x == x.rstrip() for x in lines)
    assert any(x.startswith("8080") and "6/5" in x and "27.2" in x for x in lines)  # queue and rejects/s whole
