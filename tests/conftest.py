"""Test-wide settings, and the one switch that regenerates golden end-to-end outputs."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# No per-example deadline: under CI load a slow example is not a failure (speed lives in bench/).
settings.register_profile("connwatch", deadline=None)
# In CI (.ci/run sets CONNWATCH_CI, and CI is the usual variable) the examples are derived from each test, as
# Hypothesis' own "ci" profile does: a landing does not depend on the draw. Run by hand, each run explores new
# examples (two real mismatches were found that way) and the database replays what failed.
settings.register_profile("connwatch-ci", deadline=None, derandomize=True, database=None, print_blob=True)
settings.load_profile("connwatch-ci" if os.environ.get("CONNWATCH_CI") or os.environ.get("CI") else "connwatch")

REGEN_ENV = "CONNWATCH_REGEN_GOLDEN"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--regen-golden", action="store_true", default=False,
                     help=f"rewrite the golden end-to-end outputs instead of comparing (or env {REGEN_ENV}=1)")


@pytest.fixture
def regen_golden(request: pytest.FixtureRequest) -> bool:
    """True when golden files are to be rewritten: pytest --regen-golden, or CONNWATCH_REGEN_GOLDEN=1."""
    return bool(request.config.getoption("--regen-golden")) or os.environ.get(REGEN_ENV) == "1"


@pytest.fixture(autouse=True)
def _no_host_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests judge with the rules they give: a /etc/connwatch/connwatch.toml on the test machine is not read."""
    monkeypatch.setenv("CONNWATCH_CONFIG", "")
