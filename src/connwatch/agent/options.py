"""The agent's settings, parsed and checked once from the command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from connwatch.errors import ConfigError
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


def parse_listen(value: str) -> tuple[str, int]:
    """HOST:PORT, [V6]:PORT or :PORT (loopback); port 0 disables the server."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdecimal() or int(port) > 65535:
        raise ConfigError(f"--listen must be HOST:PORT (e.g. {DEFAULT_LISTEN}), got {value!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def parse_receivers(alertmanagers: list[str], webhooks: list[str]) -> tuple[Receiver, ...]:
    out = []
    for kind, urls in ((ALERTMANAGER, alertmanagers), (WEBHOOK, webhooks)):
        for url in urls:
            try:
                out.append(receiver(kind, url))
            except ValueError as exc:
                raise ConfigError(f"--{kind}: {exc}") from None
    names = [r.name for r in out]
    if len(set(names)) != len(names):
        raise ConfigError("the same notification URL is given twice")
    return tuple(out)


def check_ranges(interval: float, listener_interval: float, resend_s: float, retry_max_s: float) -> None:
    if not 0.5 <= interval <= 3600:
        raise ConfigError(f"--interval must be between 0.5 and 3600 seconds, got {interval:g}")
    if not 0.05 <= listener_interval <= interval:
        raise ConfigError(f"--listener-interval must be between 0.05 s and --interval ({interval:g} s), "
                          f"got {listener_interval:g}")
    if not 1 <= resend_s <= 3600:
        raise ConfigError(f"--resend-interval must be between 1 and 3600 seconds, got {resend_s:g}")
    if not 0.5 <= retry_max_s <= 3600:
        raise ConfigError(f"--retry-max must be between 0.5 and 3600 seconds, got {retry_max_s:g}")
