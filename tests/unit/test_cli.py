"""CLI contract: exit codes, one-line errors, lazy imports (fast --help)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from connwatch.cli import main

PROC = str(Path(__file__).parents[1] / "fixtures" / "proc" / "local_6x")
OFFLINE = ["--proc-root", PROC, "--no-netlink"]


def test_check_on_a_quiet_capture_is_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "--interval", "0.01", "--format", "json", "--state-dir", str(tmp_path), *OFFLINE])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["status"] == "OK" and report["exit_code"] == 0
    assert report["alerts"] == [] and isinstance(report["listeners"], list)
    assert any("no listen backlog" in x for x in report["limitations"])


def test_nagios_ok_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "--interval", "0.01", "--format", "nagios", "--state-dir", str(tmp_path), *OFFLINE])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("CONNWATCH OK - ") and out.count("\n") == 1


@pytest.mark.parametrize(("args", "message"), [
    (["check", "--config", "/nonexistent.toml"], "cannot read config"),
    (["check", "--interval", "-1"], "--interval must be between"),
    (["alerts", "show"], "alerts show needs an alert ID"),
])
def test_errors_are_one_line_with_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         args: list[str], message: str) -> None:
    code = main([*args, "--state-dir", str(tmp_path), *(OFFLINE if args[0] == "check" else [])])
    err = capsys.readouterr().err
    assert code == 3 and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_unusable_state_dir_still_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code = main(["check", "--interval", "0.01", "--format", "json", "--state-dir", str(blocker / "state"),
                 *OFFLINE])
    captured = capsys.readouterr()
    assert code == 0 and "warning:" in captured.err and str(blocker) in captured.err
    assert json.loads(captured.out)["store_error"]


def test_alerts_with_unusable_state_dir_is_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "connwatch.db").write_bytes(b"garbage, not sqlite" * 100)
    code = main(["alerts", "--state-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 3 and "connwatch.db" in err and err.count("\n") == 1


def test_alerts_lists_every_scope_and_says_which_namespace_recorded_each(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """An alert a run under `ip netns exec blue` recorded is listed by the host's `alerts` too (the state dir holds
    it), with its scope, and a line saying its resource is blue's; `alerts show ID` shows it."""
    from connwatch.alerts.store import AlertStore
    from connwatch.findings import Alert

    blue = "netns 4026532300 blue cookie 7"
    theirs = Alert(attribute="BacklogRejectsByPort", resource_key="TCP(8080)", resource={"port": 8080}, value=40.0,
                   unit="requests", limit=0.0, severity=2, alert_class="backlog", state="active", created_at=1.0,
                   last_updated=1.0, occurrences=1, last_occurred=1.0, clear_after=3, system_name="h")
    with AlertStore.open(tmp_path, blue) as store:
        [saved] = store.save([theirs])
    with AlertStore.open(tmp_path) as store:
        [mine] = store.save([replace(theirs, resource_key="TCP(9090)", resource={"port": 9090}, last_updated=2.0)])
    monkeypatch.setattr("connwatch.sources.netns.run_scope", lambda: "")
    assert main(["alerts", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"alert(s) {saved.id} recorded by runs in {blue}: their resources are that namespace's" in out
    assert "8080" in out and "9090" in out and "the host's network namespace" not in out
    assert main(["alerts", "--format", "json", "--state-dir", str(tmp_path)]) == 0
    listed = json.loads(capsys.readouterr().out)["alerts"]
    assert [(a["id"], a["scope"]) for a in listed] == [(mine.id, ""), (saved.id, blue)]
    assert main(["alerts", "show", str(saved.id), "--format", "json", "--state-dir", str(tmp_path)]) == 0
    assert [(a["resource"], a["scope"]) for a in json.loads(capsys.readouterr().out)["alerts"]] == [("TCP(8080)", blue)]
    monkeypatch.setattr("connwatch.sources.netns.run_scope", lambda: blue)  # listed from blue: the host's is noted
    assert main(["alerts", "--state-dir", str(tmp_path)]) == 0
    assert f"alert(s) {mine.id} recorded by runs in the host's network namespace" in capsys.readouterr().out


def test_help_imports_nothing_heavy() -> None:
    code = ("import sys, connwatch.cli as c\n"
            "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('rich', 'psutil', 'sqlite3', 'prometheus_client', 'connwatch.collect') "
            "if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out and "check" in out and "listeners" in out


@pytest.mark.parametrize("args", [["check", "--format", "xml"], ["check", "--interval", "soon"], ["nosuchcommand"]])
def test_usage_errors_exit_3_not_critical(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1 and "error:" in err


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_reader_going_away_is_unknown_not_warning(fmt: str, tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "connwatch", "check", "--interval", "0.01", "--format", fmt,
                             "--state-dir", str(tmp_path), *OFFLINE],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `| head` exiting before connwatch writes
    err = proc.stderr.read()
    assert proc.wait(timeout=30) == 3
    assert "Traceback" not in err and "Exception ignored" not in err


def test_the_console_script_ends_a_snapshot_without_finalization(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() as the console script calls it (no argv): after `snapshot` its output is flushed and the
    process ends at once (os._exit, with the command's code); after `check` (a store to close) and when
    called with argv (tests, embedding) main returns."""
    import connwatch.cli as cli

    ended: list[tuple[str, int]] = []
    monkeypatch.setattr(cli, "_main", lambda argv, chosen: 2)
    monkeypatch.setattr(os, "_exit", lambda code: ended.append(("_exit", code)))
    monkeypatch.setattr(sys.stdout, "flush", lambda: ended.append(("flush", 0)))
    monkeypatch.setattr(sys, "argv", ["connwatch", "snapshot", "--format", "json"])
    assert cli.main() == 2  # (os._exit is replaced here: main goes on)
    assert ended == [("flush", 0), ("_exit", 2)]
    ended.clear()
    assert cli.main(["snapshot", "--format", "json"]) == 2 and ended == []
    monkeypatch.setattr(sys, "argv", ["connwatch", "check"])
    assert cli.main() == 2 and ended == []


def test_the_console_script_runs_a_snapshot_end_to_end() -> None:
    """python -m connwatch (main as the console script) writes the whole JSON document and exits 0 through
    os._exit."""
    done = subprocess.run([sys.executable, "-m", "connwatch", "snapshot", "--format", "json", *OFFLINE,
                           "--netns", "own"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["kind"] == "snapshot"
