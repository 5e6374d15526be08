"""Test-wide settings."""

from hypothesis import settings

# No per-example deadline: under CI load a slow example is not a failure (speed lives in bench/).
settings.register_profile("connwatch", deadline=None)
settings.load_profile("connwatch")
