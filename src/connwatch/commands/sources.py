"""`connwatch sources`: the heaviest sources per listening port, with their limits (or an nft rule)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from connwatch.cli import add_common

if TYPE_CHECKING:
    from rich.console import Console

    from connwatch.attributes.sources import PortTally, SourceRow
    from connwatch.model import Snapshot
    from connwatch.rules.rule import Rule
    from connwatch.rules.sources import SourceSettings

NAME = "sources"
HELP = ("heaviest sources per listening port: connections held, half-open, distinct ports, against the "
        "per-source limits; --nft prints a ready nftables rule for a port")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=None, help="only this listening port")
    p.add_argument("--top", type=int, default=None, help="sources shown per port (default 10, [sources] top)")
    p.add_argument("--interval", type=float, default=0.0,
                   help="take a second sample after S seconds; distinct ports per source are counted over both "
                   "(default 0: one sample)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--nft", action="store_true",
                   help="print an nftables script limiting connections per source to --port (limit in force, "
                   "or --limit)")
    p.add_argument("--limit", type=int, default=None, help="with --nft: connections allowed per source (1-10000)")
    add_common(p, config=True)


def run(args: argparse.Namespace) -> int:
    import time

    from connwatch.clock import SystemClock
    from connwatch.collect import collect
    from connwatch.commands.common import collect_options, need_sockets
    from connwatch.rules.config import load_config

    _validate(args)
    config = load_config(args.config)
    rules, settings = config.rules, config.sources
    if args.nft:
        print(nft_script(args.port, args.limit, rules, settings), end="")
        return 0
    clock = SystemClock()
    start = time.perf_counter()
    prev = cur = collect(clock, collect_options(args))
    sample_ms = round((time.perf_counter() - start) * 1000, 1)
    if args.interval > 0:
        clock.sleep(args.interval)
        cur = collect(clock, collect_options(args))
    need_sockets(cur)
    data = build_report(prev, cur, rules, settings, args.port, args.top or settings.top)
    data["sample_ms"] = sample_ms
    if args.format == "json":
        from connwatch.outputs.jsonout import dumps

        print(dumps(data))
    else:
        from connwatch.outputs.console import console

        render(data, console())
    return 0


def _validate(args: argparse.Namespace) -> None:
    from connwatch.errors import ConfigError

    if args.port is not None and not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be from 1 to 65535, got {args.port}")
    if args.top is not None and not 1 <= args.top <= 1000:
        raise ConfigError(f"--top must be from 1 to 1000, got {args.top}")
    if not 0 <= args.interval <= 3600:
        raise ConfigError(f"--interval must be between 0 and 3600 seconds, got {args.interval}")
    if args.nft and args.port is None:
        raise ConfigError("--nft needs --port: the rule limits one port")
    if args.limit is not None and not 1 <= args.limit <= 10000:
        raise ConfigError(f"--limit must be from 1 to 10000, got {args.limit}")


def limit_for(rules: tuple[Rule, ...], attribute: str, port: int | None, source: str, value: float) -> float | None:
    """The limit in force for one source (and port), None when unlimited there."""
    from connwatch.attributes.sources import resource_key
    from connwatch.findings import Measurement
    from connwatch.rules.evaluate import evaluate_one

    m = Measurement(attribute, {"source": source, "port": port}, resource_key(port, source), value, "conns")
    finding = evaluate_one(rules, m)
    return None if finding is None else finding.limit


def nft_script(port: int, limit: int | None, rules: tuple[Rule, ...], settings: SourceSettings) -> str:
    from connwatch.errors import ConfigError
    from connwatch.remedy.nftables import PerSourceLimit, render

    if limit is None:
        found = limit_for(rules, "ConnectionsPerSource", port, "", 0)
        if found is None:
            raise ConfigError(f"port {port} has no ConnectionsPerSource limit (unlimited); pass --limit N")
        limit = max(1, min(int(found), 10000))
    return render(PerSourceLimit(port, limit, settings.prefix_for(4), settings.prefix_for(6)))


def _row(r: SourceRow, rank: int, rules: tuple[Rule, ...], local: frozenset[str]) -> dict[str, Any]:
    from connwatch.attributes.sources import is_local

    return {"source": r.source, "port": r.port, "value": r.connections,
            "limit": limit_for(rules, "ConnectionsPerSource", r.port, r.source, r.connections),
            "half_open": r.half_open,
            "half_open_limit": limit_for(rules, "HalfOpenPerSource", r.port, r.source, r.half_open),
            "states": dict(r.states), "rank": rank, "local": is_local(r.source, local),
            "member_count": r.member_count, "members": list(r.members)}


def _port_entry(cur: Snapshot, t: PortTally, rules: tuple[Rule, ...], shown: int) -> dict[str, Any]:
    from connwatch.attributes.sources import owners
    from connwatch.explain.sources import over_limit

    limit = limit_for(rules, "ConnectionsPerSource", t.port, "", 0)
    return {"port": t.port, "owners": owners(cur, t.port), "limit": limit, "sources": t.sources,
            "connections": t.connections, "half_open": t.half_open,
            "over_limit": 0 if limit is None else over_limit(t.histogram, limit), "shown": shown}


def build_report(prev: Snapshot, cur: Snapshot, rules: tuple[Rule, ...], settings: SourceSettings,
                 port: int | None, top: int) -> dict[str, Any]:
    """Pure: samples -> the command's JSON document (bounded: `top` rows per port)."""
    from connwatch import __version__
    from connwatch.attributes.sources import local_addresses, ports_per_source, tally
    from connwatch.outputs.jsonout import iso

    local = local_addresses(cur)
    ports, rows = [], []
    heaviest_first = sorted(tally(cur, settings, top).items(), key=lambda kv: (-kv[1].connections, kv[0]))
    for p, t in heaviest_first:
        if port is not None and p != port:
            continue
        shown = [_row(r, i, rules, local) for i, r in enumerate(_merged_top(t, top), 1)]
        ports.append(_port_entry(cur, t, rules, len(shown)))
        rows.extend(shown)
    scans = sorted(ports_per_source(None if prev is cur else prev, cur, settings).items(),
                   key=lambda kv: -len(kv[1]))[:top]
    return {
        "connwatch": __version__, "host": cur.host.hostname, "taken_at": iso(cur.taken_at),
        "interval_s": round(cur.monotonic - prev.monotonic, 3),
        "settings": {"aggregate": settings.aggregate, "ipv4_prefix": settings.ipv4_prefix,
                     "ipv6_prefix": settings.ipv6_prefix, "top": top},
        "ports": ports, "sources": rows,
        "ports_per_source": [{"source": s, "value": len(ps), "ports": sorted(ps)[:100],
                              "limit": limit_for(rules, "PortsPerSource", None, s, len(ps))}
                             for s, ps in scans if len(ps) > 1],
        "limitations": list(cur.limitations),
    }


def _merged_top(t: PortTally, top: int) -> list[SourceRow]:
    """The heaviest by connections, then any heavy half-open source not among them, `top` at most."""
    out = list(t.top_connections[:top])
    seen = {r.source for r in out}
    for r in t.top_half_open:
        if len(out) >= top:
            break
        if r.source not in seen and r.half_open > 1:
            out.append(r)
    return out


def render(data: dict[str, Any], console: Console) -> None:
    from rich.table import Table

    from connwatch.explain.sources import owner_words

    if not data["ports"]:
        console.print("No inbound connections to any listening port.")
    rows_by_port: dict[int, list[dict[str, Any]]] = {}
    for r in data["sources"]:
        rows_by_port.setdefault(r["port"], []).append(r)
    for p in data["ports"]:
        limit = "unlimited" if p["limit"] is None else f"{p['limit']:g}"
        table = Table(title=f"TCP({p['port']}) served by {owner_words(p['owners'])}: {p['sources']} sources, "
                      f"{p['connections']} connections, {p['half_open']} half-open; limit {limit} per source, "
                      f"{p['over_limit']} over", title_justify="left")
        for col in ("Rank", "Source", "Conns", "Half-open", "States", "Local"):
            table.add_column(col, justify="right" if col in ("Rank", "Conns", "Half-open") else "left")
        for r in rows_by_port.get(p["port"], []):
            over = r["limit"] is not None and r["value"] > r["limit"]
            conns = f"[red]{r['value']}[/red]" if over else str(r["value"])
            states = ", ".join(f"{k} {v}" for k, v in sorted(r["states"].items(), key=lambda kv: -kv[1]))
            who = r["source"] + (f" ({r['member_count']} addresses)" if r["member_count"] > 1 else "")
            table.add_row(str(r["rank"]), who, conns, str(r["half_open"]), states, "yes" if r["local"] else "no")
        console.print(table)
        if p["sources"] > p["shown"]:
            console.print(f"  ... and {p['sources'] - p['shown']} more sources (top {p['shown']} shown; --top N)")
    for s in data["ports_per_source"]:
        console.print(f"{s['source']} used {s['value']} listening ports: {', '.join(map(str, s['ports']))}")
