"""connwatch: find every way a Linux host turns TCP connections away."""

__version__ = "0.1.0"
