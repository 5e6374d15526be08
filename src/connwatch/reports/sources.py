"""The `sources` report: heaviest sources per listening port with their limits (JSON data), its table, and
the ready nftables script.

Built below the CLI (commands/sources.py only parses arguments and wires sources to this)."""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

from connwatch.outputs.fit import Cell, Col

if TYPE_CHECKING:
    from rich.console import Console

    from connwatch.attributes.sources import PortTally, SourceRow
    from connwatch.model import Snapshot
    from connwatch.rules.rule import Rule
    from connwatch.rules.sources import SourceSettings

def limit_for(rules: tuple[Rule, ...], attribute: str, port: int | None, source: str, value: float) -> float | None:
    """The limit in force for one source (and port), None when unlimited there."""
    from connwatch.attributes.sources import resource_key
    from connwatch.findings import Measurement
    from connwatch.rules.evaluate import evaluate_one

    m = Measurement(attribute, {"source": source, "port": port}, resource_key(port, source), value, "conns")
    finding = evaluate_one(rules, m)
    return None if finding is None else finding.limit


def nft_script(port: int, limit: int | None, rules: tuple[Rule, ...], settings: SourceSettings) -> str:
    from connwatch.errors import UsageError
    from connwatch.remedy.nftables import PerSourceLimit, render

    if limit is None:
        found = limit_for(rules, "ConnectionsPerSource", port, "", 0)
        if found is None:
            raise UsageError(f"port {port} has no ConnectionsPerSource limit (unlimited); pass --limit N")
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
    scans = heapq.nlargest(top, ports_per_source(None if prev is cur else prev, cur, settings).multi.items(),
                           key=lambda kv: len(kv[1]))
    return {
        "connwatch": __version__, "host": cur.host.hostname, "taken_at": iso(cur.taken_at),
        "interval_s": round(cur.monotonic - prev.monotonic, 3),
        "settings": {"aggregate": settings.aggregate, "ipv4_prefix": settings.ipv4_prefix,
                     "ipv6_prefix": settings.ipv6_prefix, "top": top},
        "ports": ports, "sources": rows,
        "ports_per_source": [{"source": s, "value": len(ps), "ports": sorted(ps)[:100],
                              "limit": limit_for(rules, "PortsPerSource", None, s, len(ps))}
                             for s, ps in scans],
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


SOURCE_COLS = (Col("Rank", "right", drop=4), Col("Source", shrink=False), Col("Conns", "right"),
               Col("Half-open", "right", drop=2), Col("States", drop=3, shrink=True), Col("Local", drop=5))


def _heading(p: dict[str, Any]) -> str:
    limit = "unlimited" if p["limit"] is None else f"{p['limit']:g}"
    return (f"TCP({p['port']}): {p['sources']} sources, {p['connections']} connections, "
            f"{p['half_open']} half-open; limit {limit} per source, {p['over_limit']} over")


def _rows(data: dict[str, Any], port: int, over_style: bool) -> list[list[Cell]]:
    """The table's cells of one port; the count of a source over its limit in red markup (`over_style`)."""
    rows: list[list[Cell]] = []
    for r in data["sources"]:
        if r["port"] != port:
            continue
        over = over_style and r["limit"] is not None and r["value"] > r["limit"]
        conns = f"[red]{r['value']}[/red]" if over else str(r["value"])
        states = ", ".join(f"{k} {v}" for k, v in sorted(r["states"].items(), key=lambda kv: -kv[1]))
        who = r["source"] + (f" ({r['member_count']} addresses)" if r["member_count"] > 1 else "")
        rows.append([str(r["rank"]), who, conns, str(r["half_open"]), states, "yes" if r["local"] else "no"])
    return rows


def _more(p: dict[str, Any]) -> str | None:
    if p["sources"] > p["shown"]:
        return f"  ... and {p['sources'] - p['shown']} more sources (top {p['shown']} shown; --top N)"
    return None


def _scan_line(s: dict[str, Any]) -> str:
    return f"{s['source']} used {s['value']} listening ports: {', '.join(map(str, s['ports']))}"


def render(data: dict[str, Any], console: Console) -> None:
    """Per port: a heading line, the owners on their own line (no wrapped title), then the table."""
    from rich.text import Text

    from connwatch.explain.sources import owner_words
    from connwatch.outputs.fit import fit_table

    if not data["ports"]:
        console.print("No inbound connections to any listening port.")
    for p in data["ports"]:
        console.print(Text(_heading(p), style="bold"))
        console.print(Text(f"served by {owner_words(p['owners'])}", style="dim"), overflow="ellipsis",
                      no_wrap=True)
        console.print(fit_table(SOURCE_COLS, _rows(data, p["port"], True), console.width))
        if (more := _more(p)) is not None:
            console.print(more)
    for s in data["ports_per_source"]:
        console.print(_scan_line(s))


def plain(data: dict[str, Any], width: int) -> list[str] | None:
    """The lines render() prints without styles (a pipe, a file), made without rich (its import and table
    layout cost `sources` ~145 ms of a ~500 ms run at 100k sources); None where rich must draw them: a
    line rich would wrap or cut (wider than `width`, or not plain printable ASCII, whose width in cells
    is rich's to tell), a line rich reads as markup or emoji codes, a table that does not fit
    (outputs/fit.py plain_lines) or has a cell with a tab or a control character (rich expands them)."""
    from connwatch.explain.sources import owner_words
    from connwatch.outputs.fit import layout, plain_cell, plain_lines

    def fits(line: str) -> bool:
        return len(line) <= width and line.isascii() and line.isprintable()

    said = [] if data["ports"] else ["No inbound connections to any listening port."]  # (markup: checked below)
    lines: list[str] = list(said)
    for p in data["ports"]:
        texts = [_heading(p), f"served by {owner_words(p['owners'])}"]  # (rich Text: no markup)
        plains = [[plain_cell(c) for c in r] for r in _rows(data, p["port"], False)]
        table = plain_lines(SOURCE_COLS, layout(SOURCE_COLS, plains, width), plains, None, width)
        if table is None or not all(map(fits, texts)) or not all(c.isprintable() for r in plains for c in r):
            return None
        lines += [*texts, *table]
        if (more := _more(p)) is not None:
            said.append(more)
            lines.append(more)
    scans = [_scan_line(s) for s in data["ports_per_source"]]
    said += scans
    if not all(fits(x) and plain_cell(x) == x for x in said):
        return None
    return lines + scans
