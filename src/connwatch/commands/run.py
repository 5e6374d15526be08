"""`connwatch run`: the long-running agent (sampling, /metrics, Alertmanager and webhook delivery)."""

from __future__ import annotations

import argparse

from connwatch.cli import add_common
from connwatch.cliargs import seconds

NAME = "run"
HELP = ("run as an agent: sample every INTERVAL, serve Prometheus /metrics, deliver alerts to "
        "Alertmanager/webhooks through a persistent outbox (SIGHUP reloads --config)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--interval", type=seconds(0.5, 3600), default=5.0, help="seconds between full samples (default 5)")
    p.add_argument("--listener-interval", type=seconds(0.05, 3600), default=1.0,
                   help="seconds between listener-only polls in between (default 1; each costs < 1 ms)")
    p.add_argument("--listen", default="127.0.0.1:9815", metavar="HOST:PORT",
                   help="serve /metrics here (default 127.0.0.1:9815; port 0 = no server)")
    p.add_argument("--alertmanager", action="append", default=[], metavar="URL",
                   help="Alertmanager base URL (API v2), repeatable; user:password@ for basic auth")
    p.add_argument("--webhook", action="append", default=[], metavar="URL",
                   help="POST each alert event as JSON to URL, repeatable")
    p.add_argument("--instance", default=None, help="instance label / system name (default: host name)")
    p.add_argument("--tls-cert", default=None, help="serve /metrics over TLS with this certificate (PEM)")
    p.add_argument("--tls-key", default=None, help="private key for --tls-cert (PEM)")
    p.add_argument("--basic-auth-file", default=None,
                   help="require HTTP basic auth on /metrics; file of `user:password` lines")
    p.add_argument("--resend-interval", type=seconds(1, 3600), default=60.0,
                   help="re-send active alerts to Alertmanager this often, seconds (default 60)")
    p.add_argument("--retry-max", type=seconds(0.5, 3600), default=30.0,
                   help="longest pause between delivery retries, seconds (default 30)")
    p.add_argument("--kernel-counters", choices=("needed", "all"), default="needed",
                   help="/metrics: export the kernel counters connwatch's attributes read (default) or every "
                        "TCP counter (node_exporter's netstat/sockstat collectors export the same values)")
    p.add_argument("--legacy-metrics", choices=("on", "off"), default="on",
                   help="/metrics: also export the 0.1 series names (default on in this release; see CHANGELOG)")
    p.add_argument("--time-wait", choices=("when-due", "every-sample"), default="when-due",
                   help="dump TIME_WAIT sockets only when due (default: sockstat tw or the TIME_WAIT rate moved, "
                        "60 s passed, or an ephemeral-port alert is near) or at every full sample")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    add_common(p, state=True, config=True)


def run(args: argparse.Namespace) -> int:
    import logging
    import os
    import sys

    from connwatch.agent.loop import Agent
    from connwatch.agent.options import AgentOptions, check_ranges, parse_listen, parse_receivers
    from connwatch.agent.systemd import JournalFormatter, journal_stderr
    from connwatch.clock import SystemClock
    from connwatch.commands.common import state_dir
    from connwatch.rules.config import load_config

    handler = logging.StreamHandler(sys.stderr)
    fmt = "connwatch: %(levelname)s: %(message)s"
    handler.setFormatter(JournalFormatter(fmt) if journal_stderr(os.environ, sys.stderr) else logging.Formatter(fmt))
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    check_ranges(args.interval, args.listener_interval)
    host, port = parse_listen(args.listen)
    opts = AgentOptions(
        state_dir=state_dir(args), interval=args.interval, listener_interval=args.listener_interval,
        listen_host=host, listen_port=port, receivers=parse_receivers(args.alertmanager, args.webhook),
        config=args.config, instance=args.instance, proc_root=args.proc_root,
        use_netlink=not args.no_netlink, tls_cert=args.tls_cert, tls_key=args.tls_key,
        basic_auth_file=args.basic_auth_file, resend_s=args.resend_interval, retry_max_s=args.retry_max,
        netns=args.netns, kernel_counters=args.kernel_counters, legacy_metrics=args.legacy_metrics == "on",
        time_wait_when_due=args.time_wait == "when-due")
    from connwatch.agent.lock import hold
    from connwatch.collect_netns import parse_selector

    parse_selector(args.netns)  # a bad --netns is a start-up error, not a failing sample every 5 s
    hold(opts.state_dir)  # held until the process ends
    agent = Agent(opts, load_config(args.config), SystemClock())
    agent.install_signals()
    return agent.run()
