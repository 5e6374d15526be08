"""The agent's settings, parsed and checked once from the command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from connwatch.errors import UsageError
from connwatch.outputs.alertmanager import ALERTMANAGER, WEBHOOK, Receiver, receiver

DEFAULT_LISTEN = "127.0.0.1:9815"


@dataclass(frozen=True, slots=True)
class AgentOptions:
    state_dir: Path
    interval: float = 5.0  # full sample
    listener_interval: float = 1.0  # listeners-only poll between full samples
    listen_host: str = "127.0.0.1"
    listen_port: int = 9815  # 0 = no /metrics server
    receivers: tuple[Receiver, ...] = ()
    config: str | None = None
    instance: str | None = None  # default: the host name
    proc_root: str = "/proc"
    use_netlink: bool = True
    tls_cert: str | None = None
    tls_key: str | None = None
    basic_auth_file: str | None = None
    resend_s: float = 60.0  # Alertmanager re-send interval for active alerts
    retry_max_s: float = 30.0  # longest pause between delivery attempts
    netns: str = "own"  # network namespaces to sample (`--netns`; the command line's default is "all")
    kernel_counters: str = "needed"  # /metrics: "needed" (what the attributes read) or "all"
    legacy_metrics: bool = True  # /metrics: also the 0.1 names, for one more release
    time_wait_when_due: bool = True  # TIME_WAIT dumped only when due (collect_tw.py); False: every full sample


def parse_listen(value: str) -> tuple[str, int]:
    """HOST:PORT, [V6]:PORT or :PORT (loopback); port 0 disables the server."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdecimal() or int(port) > 65535:
        raise UsageError(f"--listen must be HOST:PORT (e.g. {DEFAULT_LISTEN}), got {value!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def parse_receivers(alertmanagers: list[str], webhooks: list[str]) -> tuple[Receiver, ...]:
    out = []
    for kind, urls in ((ALERTMANAGER, alertmanagers), (WEBHOOK, webhooks)):
        for url in urls:
            try:
                out.append(receiver(kind, url))
            except ValueError as exc:
                raise UsageError(f"--{kind}: {exc}") from None
    names = [r.name for r in out]
    if len(set(names)) != len(names):
        raise UsageError("the same notification URL is given twice")
    return tuple(out)


def check_ranges(interval: float, listener_interval: float) -> None:
    """What argparse cannot check alone (each range is checked by its type, cliargs.py)."""
    if listener_interval > interval:
        raise UsageError(f"--listener-interval must be between 0.05 s and --interval ({interval:g} s), "
                         f"got {listener_interval:g}")
