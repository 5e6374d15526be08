"""Every JSON output starts with {"connwatch": VERSION, "kind": KIND} and validates against the schema of its
kind shipped in the package (connwatch/schemas/KIND.json): real outputs of this host and of the recordings."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from connwatch import __version__, schemas
from connwatch.cli import main

from .test_e2e_golden import E2E, SCENARIOS, fixed_env, run_check  # noqa: F401  (fixed_env is a fixture)

SRC = Path(__file__).parents[2] / "src" / "connwatch"
CAPTURES = Path(__file__).parents[1] / "fixtures" / "captures"


def _run(*argv: str) -> dict[str, Any]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(argv)) in (0, 1, 2), argv
    data: dict[str, Any] = json.loads(out.getvalue())
    return data


def _valid(kind: str, data: dict[str, Any]) -> None:
    assert list(data)[:2] == ["connwatch", "kind"] and data["connwatch"] == __version__ and data["kind"] == kind
    errors = sorted(Draft202012Validator(schemas.load(kind)).iter_errors(data), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]


def test_every_kind_printed_has_a_schema_and_every_schema_is_valid() -> None:
    printed = set()
    for path in [*(SRC / "commands").glob("*.py"), SRC / "outputs" / "jsonout.py"]:
        text = path.read_text()
        printed |= set(re.findall(r'(?:dumps|print_report)\([^\n]*, "(\w+)"(?:, \w+)?\)\)?$', text, re.M))
        printed |= set(re.findall(r'\bdocument\("(\w+)"', text))  # (the header made apart: the fast JSON of
        # listeners, and of check in jsonout.check_text)
    assert printed == set(schemas.KINDS)
    for kind in schemas.KINDS:
        Draft202012Validator.check_schema(schemas.load(kind))


def test_this_hosts_outputs_validate(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    _valid("listeners", _run("listeners", "--format", "json"))
    _valid("rules", _run("rules", "--format", "json"))
    _valid("snapshot", _run("snapshot", "--format", "json"))
    _valid("destinations", _run("destinations", "--interval", "0", "--format", "json"))
    _valid("sources", _run("sources", "--interval", "0", "--format", "json"))
    _valid("check", _run("check", "--interval", "0.2", "--format", "json", "--state-dir", state))
    _valid("alerts", _run("alerts", "--all", "--format", "json", "--state-dir", state))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_recorded_check_and_its_alerts_validate(scenario: str, tmp_path: Path, fixed_env: None,  # noqa: F811
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _, out = run_check(scenario, "json", tmp_path / "state", capsys, monkeypatch)
    check = json.loads(out)
    assert check["alerts"]  # the recording raises alerts: their objects are validated too
    _valid("check", check)
    alerts = _run("alerts", "--format", "json", "--state-dir", str(tmp_path / "state"))
    assert alerts["alerts"]
    _valid("alerts", alerts)
    _valid("alerts", _run("alerts", "show", str(alerts["alerts"][0]["id"]), "--format", "json",
                          "--state-dir", str(tmp_path / "state")))


@pytest.mark.parametrize("capture", sorted(p for p in (CAPTURES / "ss").iterdir() if p.suffix == ".txt")[:3])
def test_analyze_outputs_validate(capture: Path) -> None:
    _valid("analyze", _run("analyze", "--format", "json", str(capture)))
