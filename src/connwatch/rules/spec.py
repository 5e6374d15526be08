"""Rules in force, for callers that need only the rules (see rules/config.py for the whole Config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connwatch.attributes.registry import default_rules, known_attributes
from connwatch.rules.config import Config, load_config, parse_config
from connwatch.rules.rule import DEFAULT_CLEAR_AFTER, Rule

__all__ = ["DEFAULT_CLEAR_AFTER", "Config", "Rule", "default_rules", "known_attributes", "load_config", "load_rules",
           "parse_rules"]


def load_rules(path: str | Path | None) -> tuple[Rule, ...]:
    """The rules in force: defaults, then the file's rules (which replace or extend them)."""
    return load_config(path).rules


def parse_rules(data: dict[str, Any], source: str) -> tuple[Rule, ...]:
    return parse_config(data, source).rules
