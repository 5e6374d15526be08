"""JSON Schemas (draft 2020-12) of every JSON output, one per `kind` of the shared header
{"connwatch": VERSION, "kind": KIND}: check, analyze, alerts, listeners, rules, snapshot, destinations,
sources. Shipped in the package: `connwatch.schemas.load("check")`."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

KINDS = ("check", "analyze", "alerts", "listeners", "rules", "snapshot", "destinations", "sources")


def load(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(resources.files(__name__).joinpath(f"{kind}.json").read_text())
    return schema
