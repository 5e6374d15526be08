"""`analyze` text for the person paged at 3 a.m. (issue 13), as `check` prints it: the status line, one
line per problem, then a short paragraph each; every line within the width at 80 and 160 columns; golden
files from real captures (tests/fixtures/captures, provenance in SOURCES.md).

Regenerate after a deliberate change: pytest tests/unit/test_analyze_text.py --regen-golden (review the diff)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connwatch.analyze.output import render_text
from connwatch.analyze.run import run_analysis
from connwatch.outputs.console import console
from connwatch.outputs.summary import problem_line
from connwatch.rules.config import load_config

from .builders import plain_utc_terminal

CAPTURES = Path(__file__).resolve().parents[1] / "fixtures" / "captures"
GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "analyze_text"
CASES = {  # one of each kind of problem the real captures show, and a capture with none
    "k8s_node_backlog": ["lls_k8s_node"],
    "macos_listen_queue": ["netstat/macos_Lan_overloaded.txt"],
    "nstat_syn_queue_drops": ["nstat/nstat_reqqfulldrop.txt"],
    "windows_ano_no_problem": ["netstat/windows_ano.txt"],
}


@pytest.fixture
def plain(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    plain_utc_terminal(monkeypatch)
    monkeypatch.chdir(CAPTURES)  # paths in the report as given: relative, the same on every machine
    yield
    monkeypatch.undo()
    time.tzset()


def text(case: str, width: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
         verbose: bool = False) -> tuple[str, list[str]]:
    analysis, errors = run_analysis(CASES[case], load_config(None), None, None, None)
    assert analysis is not None and not errors, errors
    monkeypatch.setenv("COLUMNS", str(width))
    capsys.readouterr()
    render_text(analysis, console(), verbose)
    return capsys.readouterr().out, [problem_line(a) for a in analysis.result.step.raised]


@pytest.mark.parametrize("width", [80, 160])
@pytest.mark.parametrize("case", sorted(CASES))
def test_analyze_text_is_golden_summary_first_and_fits(case: str, width: int, plain: None, regen_golden: bool,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out, problems = text(case, width, monkeypatch, capsys)
    lines = out.split("\n")
    assert max(len(x) for x in lines) <= width
    assert all(x == x.rstrip() for x in lines), "no trailing padding when piped"
    assert lines[0].startswith("connwatch analyze ") and f"{len(problems)} problem(s)" in out.split("\n\n")[0]
    if problems:  # the one-line summaries come right after the status line, in order, before any paragraph
        block = out.split("\n\n")[1].split("\n")
        assert block[0].split()[0] == problems[0].split()[0]
        assert " ".join(" ".join(block).split()) == " ".join(" ".join(problems).split())
        assert out.index("First: ") > out.index(block[-1])
    assert "table inet" not in out and "nft add" not in out  # remedy scripts are never printed here
    assert "drops dropped" not in out
    if out.count("accept queue 1") > 1:  # several full queues in one capture: never "only this service"
        assert "No other port" not in out
    path = GOLDEN / f"{case}_{width}.txt"
    if regen_golden:
        path.write_text(out)
    assert out == path.read_text(), f"{path} differs (regenerate with --regen-golden and review)"


def test_verbose_gives_the_full_article_in_place_of_the_paragraph(plain: None, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    short, _ = text("macos_listen_queue", 80, monkeypatch, capsys)
    full, _ = text("macos_listen_queue", 80, monkeypatch, capsys, verbose=True)
    assert "Full article:" in short and "Full article:" not in full
    assert "Alert Explanation" in full and "User Action" in full and len(full) > len(short)
    assert max(len(x) for x in full.split("\n")) <= 80
