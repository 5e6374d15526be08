"""The configuration in force: loaded once from the TOML file (`--config`), passed down as a value.

    [settings]
    clear_after = 3            # clean samples that clear an active alert
    replace_defaults = false   # true: only the rules of this file apply
    runbook_base = "https://wiki.example.com/connwatch/runbooks.md"  # `connwatch rules --format prometheus`
                               # runbook_url (default: the runbook the installed package ships, file://)

    [[rules]]
    attribute = "BacklogRejectsByPort"
    port = 1414                # optional resource filter (port, address)
    high = 50                  # the high limit; "unlimited" switches the attribute off there
    mode = "value"             # "value" (per sample) or "rate" (per second)
    severity = 2               # 1 Critical, 2 High, 3 Medium, 4 Low
    class = "backlog"

    [sources]                  # per-source measurement settings (rules/sources.py)

A generic rule of the file (no port, no address) replaces the built-in rules of its attribute. For
one resource only the most specific matching rules apply (port/address rules replace the generic
ones); among them the most severe breached rule decides the alert. Every key and value is checked:
an unknown key, a wrong type or an out-of-range number is refused with one line naming the file and
the key (ConfigError), so a typo never silently switches alerting off.
"""

from __future__ import annotations

from pathlib import Path

from connwatch.attributes.registry import default_rules, known_attributes
from connwatch.errors import ConfigError
from connwatch.record import Record, record, replace
from connwatch.rules import sources as source_settings
from connwatch.rules.configfile import load_toml
from connwatch.rules.rule import DEFAULT_CLEAR_AFTER, Rule
from connwatch.rules.sources import SourceSettings
from connwatch.rules.values import parse_limit, whole_number

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import Any

SETTINGS_KEYS = ("clear_after", "replace_defaults", "runbook_base")
_RULE_KEYS = ("attribute", "high", "severity", "class", "mode", "port", "address", "clear_after")


@record
class Config(Record):
    """Rules and measurement settings in force. Built once (load_config) and passed down."""

    rules: tuple[Rule, ...]
    sources: SourceSettings = source_settings.DEFAULT
    clear_after: int = DEFAULT_CLEAR_AFTER
    path: str | None = None  # the file it came from; None = built-in defaults
    runbook_base: str | None = None  # URL of the published runbook (generated rules' runbook_url); None = shipped


def default_config() -> Config:
    return Config(rules=default_rules())


def load_config(path: str | Path | None) -> Config:
    """The configuration in force: the defaults, or the file's rules (which replace or extend them)."""
    if path is None:
        return default_config()
    return parse_config(load_toml(path), str(path))


def parse_config(data: dict[str, Any], source: str) -> Config:
    unknown = set(data) - {"settings", "rules", "sources"}
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; expected [settings], [[rules]], "
                          "[sources]")
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise ConfigError(f"{source}: [settings] must be a table")
    extra = set(settings) - set(SETTINGS_KEYS)
    if extra:
        raise ConfigError(f"{source}: [settings]: unknown key(s) {sorted(extra)}; allowed: {', '.join(SETTINGS_KEYS)}")
    clear_after = whole_number(settings.get("clear_after", DEFAULT_CLEAR_AFTER), 1, 1000, f"{source}: clear_after")
    replace_defaults = settings.get("replace_defaults", False)
    if not isinstance(replace_defaults, bool):
        raise ConfigError(f"{source}: [settings]: replace_defaults must be true or false, got {replace_defaults!r}")
    runbook_base = settings.get("runbook_base")
    if runbook_base is not None:
        if not isinstance(runbook_base, str):
            raise ConfigError(f"{source}: [settings]: runbook_base must be a string (a URL), got {runbook_base!r}")
        from connwatch.outputs.promrules import check_runbook_base

        check_runbook_base(runbook_base, f"{source}: [settings]: runbook_base")
    raw = data.get("rules", [])
    if not isinstance(raw, list):
        raise ConfigError(f"{source}: rules must be an array of tables ([[rules]])")
    rules = tuple(_rule(item, f"{source}: rules[{i}]", clear_after) for i, item in enumerate(raw))
    sources = source_settings.parse_settings(data.get("sources"), f"{source}: [sources]")
    if not replace_defaults:
        # A generic rule of the file (no port, no address) replaces the built-in rules of its attribute
        # rather than adding a second limit beside them: `high = 20` then means 20, not "20 or the default".
        overridden = {r.attribute for r in rules if r.specificity == 0}
        defaults = source_settings.apply_to_defaults(default_rules(), sources)
        rules = tuple(replace(r, clear_after=clear_after) for r in defaults if r.attribute not in overridden) + rules
    return Config(rules=rules, sources=sources, clear_after=clear_after, path=source, runbook_base=runbook_base)


def _rule(item: Any, where: str, clear_after: int) -> Rule:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: must be a table")
    extra = set(item) - set(_RULE_KEYS)
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
    alert_class = item.get("class", "connwatch")
    if not isinstance(alert_class, str):
        raise ConfigError(f"{where}: class must be a string, got {alert_class!r}")
    high = parse_limit(item.get("high"), f"{where}: high")
    source_settings.check_rule_limit(attribute, high, f"{where}: high")
    return Rule(
        attribute=attribute, high=high,
        severity=whole_number(item.get("severity", 3), 1, 4, f"{where}: severity"),
        alert_class=alert_class, mode=mode, port=port, address=address,
        clear_after=whole_number(item.get("clear_after", clear_after), 1, 1000, f"{where}: clear_after"),
    )
