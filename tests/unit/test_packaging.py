"""Packaging and CLI habits: SPDX license and its text, classifiers and URLs, an sdist that can test and deploy,
`--version`, shell completion and a man page generated from the parser, without slowing start-up."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

from connwatch import __version__
from connwatch.cli import COMMANDS, build_parser, main
from connwatch.manpage import render

ROOT = Path(__file__).resolve().parents[2]


def test_license_is_an_spdx_string_with_the_apache_text() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and len(text) > 10_000
    assert "License :: " not in " ".join(project["classifiers"])  # PEP 639: no license classifier
    assert {"Operating System :: POSIX :: Linux", "Topic :: System :: Monitoring"} <= set(project["classifiers"])
    assert {"Homepage", "Changelog", "Issues"} <= set(project["urls"])


def test_version_flags(capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--version", "-V"):
        assert main([flag]) == 0 and capsys.readouterr().out == f"connwatch {__version__}\n"


def test_man_page_is_generated_from_the_parser_and_current() -> None:
    page = render(build_parser())
    for command in ("check", "run", "rules", "analyze"):
        assert f".SS {command}\n" in page
    assert "\\-\\-kernel\\-counters" in page and "/etc/connwatch/connwatch.toml" in page
    shipped = (ROOT / "contrib" / "connwatch.1").read_text()
    assert shipped == page, "run: connwatch --print-man-page > contrib/connwatch.1"
    if shutil.which("groff"):
        done = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z"], input=page, capture_output=True, text=True,
                              timeout=60)
        assert (done.returncode, done.stderr) == (0, "")


def test_bash_completion_knows_the_commands_and_is_valid_bash(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--print-completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert f"_subparsers=({' '.join(COMMANDS)})" in script
    assert "--kernel-counters" in script and "_check___format_choices=(text json nagios)" in script
    if shutil.which("bash"):
        assert subprocess.run(["bash", "-n"], input=script, text=True, timeout=60).returncode == 0


def test_completion_and_rules_are_not_loaded_to_start() -> None:
    code = ("import sys; from connwatch.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('shtab', 'connwatch.rules.config', 'connwatch.attributes.registry', "
            "'connwatch.manpage', 'jsonschema') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


@pytest.mark.skipif(importlib.util.find_spec("build") is None, reason="needs the `build` package (test extra)")
def test_sdist_carries_tests_contrib_docs_and_the_license(tmp_path: Path) -> None:
    # Built from a copy of the tree: setuptools writes src/connwatch.egg-info into the tree it builds, so two
    # suites (CI's 3.12 and 3.13 unit runs side by side) building the one checkout raced on it.
    tree = tmp_path / "tree"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
        ".git", ".venv", "venv*", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".hypothesis", ".*_cache"))
    done = subprocess.run([sys.executable, "-m", "build", "--sdist", "-o", str(tmp_path), str(tree)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "SetuptoolsDeprecationWarning" not in done.stdout + done.stderr
    [sdist] = tmp_path.glob("connwatch-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for wanted in ("LICENSE", "CHANGELOG.md", "tests/unit/test_packaging.py", "tests/fixtures/e2e/README.md",
                   "contrib/connwatch.service", "contrib/connwatch.1", "docs/runbooks.md",
                   "src/connwatch/schemas/check.json"):
        assert wanted in names, wanted
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
