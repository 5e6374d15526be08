"""Helpers shared by the subcommands (imported only when a command runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from connwatch.alerts.store import AlertStore, default_state_dir
from connwatch.collect import CollectOptions
from connwatch.errors import SourceUnavailable
from connwatch.model import Snapshot


def collect_options(args: argparse.Namespace, sockets: bool = True) -> CollectOptions:
    return CollectOptions(proc_root=args.proc_root, use_netlink=not args.no_netlink, sockets=sockets)


def state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir) if args.state_dir else default_state_dir()


def open_store(args: argparse.Namespace) -> AlertStore:
    return AlertStore.open(state_dir(args))


def need_sockets(cur: Snapshot) -> None:
    """Commands about connections cannot work from listeners alone: say which source failed."""
    if cur.sockets is None:
        failed = "; ".join(f"{s.name}: {s.detail}" for s in cur.statuses if not s.ok) or "no socket source"
        raise SourceUnavailable("sockets", f"could not list sockets ({failed})")
