"""One version source: connwatch.__version__, read by pyproject; the CHANGELOG has an entry for it."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import connwatch

ROOT = Path(__file__).resolve().parents[2]


def test_installed_metadata_version_is_the_package_version() -> None:
    assert importlib.metadata.version("connwatch") == connwatch.__version__


def test_changelog_has_unreleased_then_the_current_version() -> None:
    headings = re.findall(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert headings[:2] == ["Unreleased", connwatch.__version__]


def test_pyproject_does_not_repeat_the_version() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in text and 'attr = "connwatch.__version__"' in text
    assert not re.search(r"^version\s*=\s*\"", text, re.M)  # no literal version string
