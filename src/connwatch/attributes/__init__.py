"""Attributes: (previous Snapshot, current Snapshot, Config) -> Measurements, one module per subject.

The registry (attributes/registry.py) says what every attribute is; each subject module declares
a SUBJECT there. This package re-exports the registry's derived views.
"""

from __future__ import annotations

from connwatch.attributes.registry import default_rules, known_attributes, measure_all, specs

__all__ = ["default_rules", "known_attributes", "measure_all", "specs"]
