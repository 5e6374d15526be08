"""Monitoring-plugin options of `check` (`-V`, `-t`, `-w`, `-c`): parsing and their effect on the rules.

`-w [ATTRIBUTE=]N` / `-c [ATTRIBUTE=]N` replace the generic limits of the attribute (default
BacklogRejectsByPort, the main one) that make `check` exit WARNING (severities 3-4) or CRITICAL
(1-2): its value above N. Per-port or per-address rules of the config file stay in force.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
from collections.abc import Iterator, Sequence
from types import FrameType

from connwatch import __version__
from connwatch.errors import ConnwatchError, UsageError

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:  # lazy: `connwatch --help` must not load the rules
    from connwatch.rules.config import Config

MAIN_ATTRIBUTE = "BacklogRejectsByPort"
Limit = tuple[str, float]


def limit(text: str) -> Limit:
    """`N` or `ATTRIBUTE=N`, N a non-negative number (the plugin range "alert above N")."""
    from connwatch.attributes.registry import specs

    name, _, number = text.rpartition("=")
    name = name or MAIN_ATTRIBUTE
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be N or ATTRIBUTE=N with N >= 0 (alert above N), got {text!r}")
    if name not in specs():
        raise argparse.ArgumentTypeError(f"unknown attribute {name!r} in {text!r}")
    return name, value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-V", "--version", action="version", version=f"connwatch {__version__}")
    p.add_argument("-t", "--timeout", type=float, default=None, metavar="S",
                   help="exit 3 UNKNOWN if the check takes longer than S seconds (must exceed --interval)")
    p.add_argument("-w", "--warning", type=limit, action="append", default=[], metavar="[ATTR=]N",
                   help=f"WARNING above N: replaces the generic warning limits of ATTR (default {MAIN_ATTRIBUTE})")
    p.add_argument("-c", "--critical", type=limit, action="append", default=[], metavar="[ATTR=]N",
                   help=f"CRITICAL above N: replaces the generic critical limits of ATTR (default {MAIN_ATTRIBUTE})")


def override(config: Config, warning: Sequence[Limit], critical: Sequence[Limit]) -> Config:
    from connwatch.record import replace
    from connwatch.rules.rule import Rule

    rules = list(config.rules)
    for limits, severities, severity in ((warning, (3, 4), 3), (critical, (1, 2), 2)):
        for name, value in limits:
            old = [r for r in rules if r.attribute == name and r.port is None and r.address is None
                   and r.severity in severities]
            like = old[0] if old else next((r for r in rules if r.attribute == name), Rule(name, value))
            rules = [r for r in rules if r not in old]
            rules.append(Rule(name, value, severity=severity, alert_class=like.alert_class, mode=like.mode,
                              clear_after=like.clear_after))
    return replace(config, rules=tuple(rules))


def check_timeout(timeout: float | None, interval: float) -> None:
    if timeout is not None and not (interval < timeout <= 86400):
        raise UsageError(f"--timeout must be more than --interval ({interval:g} s), got {timeout:g}")


class TimedOut(ConnwatchError):
    """The plugin ran past -t: UNKNOWN, as the guidelines want."""


@contextlib.contextmanager
def deadline(timeout: float | None) -> Iterator[None]:
    if timeout is None:
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimedOut(f"check timed out after {timeout:g} s (-t)")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
