"""The `[sources]` table of the config: per-source limits, prefix aggregation, output bounds.

    [sources]
    limit = 100               # ConnectionsPerSource, every port: 1–10000 or "unlimited"
    half_open_limit = 50      # HalfOpenPerSource (SYN_RECV per source and port)
    ports_limit = 10          # PortsPerSource (distinct listening ports per source in the interval)
    aggregate = false         # true: count per prefix, so a client spread over a subnet is one source
    ipv4_prefix = 24          # prefix lengths used when aggregate = true
    ipv6_prefix = 64
    top = 10                  # rows per port in `connwatch sources`
    max_alerts_per_port = 10  # sources measured (so alerted) per port; the rest are summarised

Per-port limits are ordinary rules, which replace the global one on that port:

    [[rules]]
    attribute = "ConnectionsPerSource"
    port = 25
    high = 200                # or "unlimited"

The measurement settings (aggregation, bounds) travel in the Config value (rules/config.py), which
the pipeline passes to attributes/sources.py: no module state.
"""

from __future__ import annotations

from connwatch.errors import ConfigError
from connwatch.record import Record, record, replace
from connwatch.rules.values import parse_limit, whole_number

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import Any

CONNECTIONS, HALF_OPEN, PORTS = "ConnectionsPerSource", "HalfOpenPerSource", "PortsPerSource"
LIMIT_RANGE: tuple[int, int] = (1, 10000)  # MaxInboundConnectionPerSource's range (seed 003)
LIMIT_RANGES: dict[str, tuple[int, int]] = {CONNECTIONS: LIMIT_RANGE, HALF_OPEN: LIMIT_RANGE, PORTS: (1, 65535)}
DEFAULT_LIMITS: dict[str, float] = {CONNECTIONS: 100, HALF_OPEN: 50, PORTS: 10}
LIMIT_KEYS = {"limit": CONNECTIONS, "half_open_limit": HALF_OPEN, "ports_limit": PORTS}
KEYS = (*LIMIT_KEYS, "aggregate", "ipv4_prefix", "ipv6_prefix", "top", "max_alerts_per_port")


@record
class SourceSettings(Record):
    limits: tuple[tuple[str, float | None], ...] = tuple(DEFAULT_LIMITS.items())
    aggregate: bool = False
    ipv4_prefix: int = 24
    ipv6_prefix: int = 64
    top: int = 10
    max_alerts_per_port: int = 10

    def limit(self, attribute: str) -> float | None:
        return dict(self.limits)[attribute]

    def prefix_for(self, version: int) -> int | None:
        """Prefix length for an address family, or None when sources are counted one by one."""
        if not self.aggregate:
            return None
        return self.ipv4_prefix if version == 4 else self.ipv6_prefix


DEFAULT = SourceSettings()

def parse_settings(table: Any, where: str) -> SourceSettings:
    """Validate a `[sources]` table; one clear ConfigError naming the key otherwise."""
    if table is None:
        return DEFAULT
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    extra = set(table) - set(KEYS)
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {sorted(extra)}; allowed: {', '.join(KEYS)}")
    limits = []
    for key, attribute in LIMIT_KEYS.items():
        low, top = LIMIT_RANGES[attribute]
        value = table.get(key, DEFAULT_LIMITS[attribute])
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{where}: {key} must be a whole number or \"unlimited\", got {value!r}")
        limits.append((attribute, parse_limit(value, f"{where}: {key}", low, top)))
    aggregate = table.get("aggregate", False)
    if not isinstance(aggregate, bool):
        raise ConfigError(f"{where}: aggregate must be true or false, got {aggregate!r}")
    return SourceSettings(
        limits=tuple(limits), aggregate=aggregate,
        ipv4_prefix=whole_number(table.get("ipv4_prefix", 24), 1, 32, f"{where}: ipv4_prefix"),
        ipv6_prefix=whole_number(table.get("ipv6_prefix", 64), 1, 128, f"{where}: ipv6_prefix"),
        top=whole_number(table.get("top", 10), 1, 1000, f"{where}: top"),
        max_alerts_per_port=whole_number(table.get("max_alerts_per_port", 10), 1, 1000,
                                         f"{where}: max_alerts_per_port"),
    )


def check_rule_limit(attribute: str, high: float | None, where: str) -> None:
    """Per-rule limits of these attributes follow the same range as the global ones."""
    rng = LIMIT_RANGES.get(attribute)
    if rng is None or high is None:
        return
    if not rng[0] <= high <= rng[1] or not float(high).is_integer():
        raise ConfigError(f"{where}: {attribute} limit must be a whole number from {rng[0]} to {rng[1]}, "
                          f"or \"unlimited\", got {high:g}")


def apply_to_defaults(defaults: tuple[Any, ...], settings: SourceSettings) -> tuple[Any, ...]:
    """The built-in rules with the global limits of `[sources]` in place of the defaults.

    "unlimited" keeps the rule with no limit: nothing alerts unless a per-port rule says otherwise.
    (A generic `[[rules]]` entry replacing the built-in rules is handled by rules/config.py for every
    attribute.)
    """
    out = []
    for rule in defaults:
        if rule.attribute in LIMIT_RANGES and rule.port is None and rule.address is None:
            rule = replace(rule, high=settings.limit(rule.attribute))
        out.append(rule)
    return tuple(out)
