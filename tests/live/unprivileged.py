"""Running connwatch as another user, or with fewer capabilities, from a root test."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

NOBODY = ("--reuid=65534", "--regid=65534", "--clear-groups")
# What contrib/connwatch.service grants (DynamicUser + AmbientCapabilities), for setpriv.
UNIT_CAPS = ("--inh-caps=-all,+dac_read_search,+sys_ptrace", "--ambient-caps=+dac_read_search,+sys_ptrace",
             "--bounding-set=-all,+dac_read_search,+sys_ptrace")
NO_CAPS = ("--inh-caps=-all", "--bounding-set=-all")  # as uid 0 this leaves no capability after exec
PACKAGES = ("connwatch", "rich", "pygments", "markdown_it", "mdurl", "prometheus_client", "urllib3")


def world_readable_site(tmp_path: Path) -> Path:
    """Copies of connwatch and its dependencies an unprivileged user can import (the test's own
    install may live under a root-only home)."""
    site = tmp_path / "site"
    for name in PACKAGES:
        module = importlib.import_module(name)
        assert module.__file__ is not None
        shutil.copytree(Path(module.__file__).parent, site / name)
    for path in [tmp_path, *tmp_path.parents]:
        if path == Path("/"):
            break
        path.chmod(path.stat().st_mode | 0o055)
    return site
