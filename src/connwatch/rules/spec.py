"""Rules: built-in defaults, overridable by a TOML file (`--config`).

    [settings]
    clear_after = 3            # clean samples that clear an active alert
    replace_defaults = false   # true: only the rules of this file apply

    [[rules]]
    attribute = "BacklogRejectsByPort"
    port = 1414                # optional resource filter (port, address)
    high = 50                  # the high limit; "unlimited" switches the attribute off there
    mode = "value"             # "value" (per sample) or "rate" (per second)
    severity = 2               # 1 Critical, 2 High, 3 Medium, 4 Low
    class = "backlog"

A generic rule of the file (no port, no address) replaces the built-in rules of its attribute. For
one resource only the most specific matching rules apply (port/address rules replace the generic
ones); among them the most severe breached rule decides the alert.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from connwatch.errors import ConfigError
from connwatch.findings import Measurement
from connwatch.rules import sources as source_settings
from connwatch.rules.values import parse_limit, whole_number

DEFAULT_CLEAR_AFTER = 3


@dataclass(frozen=True, slots=True)
class Rule:
    attribute: str
    high: float | None  # None = unlimited: never alerts
    severity: int = 3
    alert_class: str = "connwatch"
    mode: str = "value"
    port: int | None = None
    address: str | None = None
    clear_after: int = DEFAULT_CLEAR_AFTER

    @property
    def specificity(self) -> int:
        return (self.port is not None) + (self.address is not None)

    def matches(self, m: Measurement) -> bool:
        if m.attribute != self.attribute:
            return False
        if self.port is not None and m.resource.get("port") != self.port:
            return False
        if self.address is not None:
            values = {str(v) for k, v in m.resource.items() if k != "port" and v is not None}
            values |= set(m.detail.get("addresses", ()))
            if self.address not in values:
                return False
        return True


def known_attributes() -> dict[str, tuple[str, bool]]:
    """attribute -> (unit, is_counter); counters may be judged as a rate."""
    from connwatch.attributes import known_attributes as known

    return known()


def default_rules() -> tuple[Rule, ...]:
    from connwatch.attributes import default_rules as defaults

    return defaults()


def load_rules(path: str | Path | None) -> tuple[Rule, ...]:
    """The rules in force: defaults, then the file's rules (which replace or extend them)."""
    if path is None:
        source_settings.configure(source_settings.DEFAULT)
        return default_rules()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    return parse_rules(data, str(path))


def parse_rules(data: dict[str, Any], source: str) -> tuple[Rule, ...]:
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise ConfigError(f"{source}: [settings] must be a table")
    unknown = set(data) - {"settings", "rules", "sources"}
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; expected [settings], [[rules]], "
                          "[sources]")
    clear_after = whole_number(settings.get("clear_after", DEFAULT_CLEAR_AFTER), 1, 1000, f"{source}: clear_after")
    raw = data.get("rules", [])
    if not isinstance(raw, list):
        raise ConfigError(f"{source}: rules must be an array of tables ([[rules]])")
    rules = tuple(_rule(item, f"{source}: rules[{i}]", clear_after) for i, item in enumerate(raw))
    sources = source_settings.parse_settings(data.get("sources"), f"{source}: [sources]")
    source_settings.configure(sources)  # measurement settings (aggregation, bounds) for attributes/sources.py
    if settings.get("replace_defaults", False):
        return rules
    # A generic rule of the file (no port, no address) replaces the built-in rules of its attribute
    # rather than adding a second limit beside them: `high = 20` then means 20, not "20 or the default".
    overridden = {r.attribute for r in rules if r.specificity == 0}
    defaults = source_settings.apply_to_defaults(default_rules(), sources)
    return tuple(replace(r, clear_after=clear_after) for r in defaults if r.attribute not in overridden) + rules


_RULE_KEYS = {"attribute", "high", "severity", "class", "mode", "port", "address", "clear_after"}


def _rule(item: Any, where: str, clear_after: int) -> Rule:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: must be a table")
    extra = set(item) - _RULE_KEYS
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {sorted(extra)}; allowed: {sorted(_RULE_KEYS)}")
    attribute = item.get("attribute")
    known = known_attributes()
    if attribute not in known:
        raise ConfigError(f"{where}: unknown attribute {attribute!r}; known: {', '.join(known)}")
    mode = item.get("mode", "value")
    counter = known[attribute][1]
    if mode not in ("value", "rate") or (mode == "rate" and not counter):
        allowed = "'value' or 'rate'" if counter else "'value' (not a counter)"
        raise ConfigError(f"{where}: mode must be {allowed}, got {mode!r}")
    port = item.get("port")
    if port is not None:
        port = whole_number(port, 1, 65535, f"{where}: port")
    address = item.get("address")
    if address is not None and not isinstance(address, str):
        raise ConfigError(f"{where}: address must be a string")
    high = parse_limit(item.get("high"), f"{where}: high")
    source_settings.check_rule_limit(attribute, high, f"{where}: high")
    return Rule(
        attribute=attribute, high=high,
        severity=whole_number(item.get("severity", 3), 1, 4, f"{where}: severity"),
        alert_class=str(item.get("class", "connwatch")), mode=mode, port=port, address=address,
        clear_after=whole_number(item.get("clear_after", clear_after), 1, 1000, f"{where}: clear_after"),
    )
