"""One rule: an attribute's high limit for a scope (every resource, a port, an address).

Kept apart from the config loader so attribute modules can declare their default rules without
importing the loader (which reads the attribute registry): no import circle.
"""

from __future__ import annotations

from connwatch.findings import Measurement
from connwatch.record import Record, record

DEFAULT_CLEAR_AFTER = 3


@record
class Rule(Record):
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
            values |= set(m.get("addresses", ()))
            if self.address not in values:
                return False
        return True
