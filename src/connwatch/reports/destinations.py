"""The `destinations` report: the busiest destinations by ephemeral ports held (JSON data), and its table.

Built below the CLI (commands/destinations.py only parses arguments and wires sources to this)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connwatch.outputs.fit import Cell, Col, fit_table

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from connwatch.model import Snapshot
    from connwatch.rules.rule import Rule

SHORT_STATES = {"ESTABLISHED": "EST", "TIME_WAIT": "TW", "SYN_SENT": "SYN", "FIN_WAIT1": "FW1",
                "FIN_WAIT2": "FW2", "CLOSE_WAIT": "CW", "LAST_ACK": "LACK", "CLOSING": "CLG", "CLOSE": "CL"}


def build_report(prev: Snapshot, cur: Snapshot, rules: tuple[Rule, ...], top: int) -> dict[str, Any]:
    """Pure: two samples (the same one twice for no rates) -> the command's JSON document."""
    from connwatch.attributes import ephemeral
    from connwatch.rules.evaluate import evaluate

    budget = ephemeral.port_budget(cur)
    rates = ephemeral.host_rates(prev, cur) if cur is not prev else {"interval_s": 0.0}
    dest_rates, basis = ephemeral.destination_rates(cur, rates.get("time_wait_entered_per_s"))
    if cur is prev:
        basis = "one sample: no rates and no forecast (use --interval)"
    findings = {f.measurement.resource_key: f for f in evaluate(rules, ephemeral.measure(prev, cur))
                if f.measurement.attribute == "EphemeralPortUsage"}
    rows = []
    for load in ephemeral.loads(cur)[:top]:
        fc = None
        if rates.get("time_wait_entered_per_s") is not None and budget.usable:
            fc = ephemeral.forecast(load, dest_rates.get(ephemeral.key(load.usage), 0.0), basis, budget,
                                    cur.sysctls.tcp_tw_reuse_delay, ephemeral.time_wait_seconds(cur.host.platform))
        row = ephemeral.destination_record(load, budget, fc)
        found = findings.get(ephemeral.resource_key(load.usage))
        row.update({"value": load.percent, "limit": found.limit if found else None,
                    "severity": found.severity if found else None, "breached": bool(found and found.breached)})
        rows.append(row)
    return {"host": _host(cur, budget), "interval_s": rates["interval_s"], "rates": rates, "rate_method": basis,
            "destinations": rows, "destinations_total": len(cur.sockets.destinations) if cur.sockets else 0,
            "limitations": list(cur.limitations)}


def _host(cur: Snapshot, budget: Any) -> dict[str, Any]:
    s = cur.sysctls
    return {
        "hostname": cur.host.hostname, "platform": cur.host.platform,
        "port_range": list(budget.port_range) if budget.port_range else None, "usable_ports": budget.usable,
        "reserved_ports": budget.reserved, "listening_ports_in_range": budget.listening_in_range,
        "tcp_tw_reuse": s.tcp_tw_reuse, "tcp_tw_reuse_delay_ms": s.tcp_tw_reuse_delay,
        "time_wait": cur.sockstat.get("TCP.tw"), "tcp_max_tw_buckets": s.tcp_max_tw_buckets,
        "orphans": cur.sockstat.get("TCP.orphan"), "tcp_max_orphans": s.tcp_max_orphans,
    }


def _bar(row: dict[str, Any], width: int) -> tuple[str, str, str, str, str] | None:
    """The usage bar's pieces: blocking share, its style, reusable TIME_WAIT, the rest, the percentage."""
    pct, without = row.get("percent"), row.get("percent_without_reuse")
    if pct is None:
        return None
    solid = min(width, round(width * pct / 100))
    extra = min(width - solid, round(width * ((without or pct) - pct) / 100))
    style = "bold red" if pct >= 100 else "red" if pct > 80 else "yellow" if pct > 50 else "green"
    label = f" {pct:.0f}%" if pct >= 1 or pct == 0 else f" {pct:.1f}%"
    if extra:
        label += f" +{(without or pct) - pct:.0f}%"
    return "█" * solid, style, "▒" * extra, "·" * (width - solid - extra), label


def usage_bar(row: dict[str, Any], width: int = 12) -> Text:
    """Blocking share in colour, reusable TIME_WAIT dim on top of it, then the percentage."""
    from rich.text import Text

    bar = _bar(row, width)
    if bar is None:
        return Text("n/a", style="dim")
    solid, style, extra, rest, label = bar
    return Text(solid, style=style) + Text(extra, style="dim") + Text(rest) + Text(label)


def _bar_plain(row: dict[str, Any], width: int) -> str:
    bar = _bar(row, width)
    return "n/a" if bar is None else bar[0] + "".join(bar[2:])


def _mix(row: dict[str, Any]) -> str:
    return " ".join(f"{SHORT_STATES.get(k, k)} {v}" for k, v in row["states"].items())


def _note(row: dict[str, Any], styled: bool = True) -> str:
    fc = row.get("forecast") or {}
    if (row.get("percent") or 0) >= 100:
        return "[bold red]FULL: EADDRNOTAVAIL[/bold red]" if styled else "FULL: EADDRNOTAVAIL"
    if fc.get("seconds_to_full") is not None:
        words = f"full in ~{fc['seconds_to_full']:.0f} s"
        return f"[red]{words}[/red]" if styled else words
    reuse = ("" if not row.get("safe_only_by_reuse") else " [yellow](reuse)[/yellow]" if styled else " (reuse)")
    return (f"settles {fc['steady_percent']:.0f}%" if fc else "-") + reuse


def _owner(row: dict[str, Any], styled: bool = True) -> str:
    owners = row.get("owners") or []
    if not owners:
        return "[dim]?[/dim]" if styled else "?"
    pid = "[dim]pid {}[/dim]" if styled else "pid {}"
    return ", ".join(f"{o['command']} {pid.format(o['pid'])}" for o in owners)


DEST_COLS = (Col("Destination / from"), Col("Ports in use"), Col("Held", "right", drop=4),
             Col("TW/s", "right", drop=2), Col("State mix", drop=5, shrink=True), Col("Forecast"),
             Col("Owner (inferred)", drop=3, shrink=True))


def table_row(row: dict[str, Any], width: int, one_line: bool = False) -> list[Cell]:
    """One destination as DEST_COLS cells (`top` puts it on one line)."""
    fc = row.get("forecast")
    where = f"{row['destination']}{' ' if one_line else chr(10)}[dim]from {row['local_address']}[/dim]"
    return [where, usage_bar(row, _bar_width(width)), str(row["held"]),
            "-" if not fc else f"{fc['rate_per_s']:.1f}", _mix(row), _note(row), _owner(row)]


def _plain_row(row: dict[str, Any], width: int) -> list[str]:
    """The text rich shows for table_row's cells, where the data in them is literal (see plain)."""
    fc = row.get("forecast")
    return [f"{row['destination']}\nfrom {row['local_address']}", _bar_plain(row, _bar_width(width)),
            str(row["held"]), "-" if not fc else f"{fc['rate_per_s']:.1f}", _mix(row), _note(row, False),
            _owner(row, False)]


def _bar_width(width: int) -> int:
    return 12 if width >= 120 else 6


def _head(data: dict[str, Any]) -> list[tuple[str, bool]]:
    """The lines above the table: (text, dim)."""
    h = data["host"]
    rng = h["port_range"] or ["?", "?"]

    def shown(value: Any) -> str:
        return "?" if value is None else str(value)

    lines = [(f"Ephemeral ports per destination: range {rng[0]}-{rng[1]}, {shown(h['usable_ports'])} usable "
              f"({h['reserved_ports']} reserved, {h['listening_ports_in_range']} listening); tcp_tw_reuse="
              f"{shown(h['tcp_tw_reuse'])}; host TIME_WAIT {shown(h['time_wait'])} of "
              f"{shown(h['tcp_max_tw_buckets'])} buckets, orphans {shown(h['orphans'])} of "
              f"{shown(h['tcp_max_orphans'])}", False)]
    r = data["rates"]
    if r.get("time_wait_entered_per_s") is not None:
        lines.append((f"over {r['interval_s']} s: {r['active_opens_per_s']}/s opened, "
                      f"{r['time_wait_entered_per_s']}/s entered TIME_WAIT, {r['attempt_fails_per_s']}/s failed; "
                      f"forecast: Little's law, {data['rate_method']}", True))
    lines.append(("Ports in use: blocking █, +reusable TIME_WAIT ▒; Forecast: at the current rate (Little's "
                  "law); (reuse): safe only thanks to tcp_tw_reuse", True))
    return lines


def _title(data: dict[str, Any]) -> str:
    return f"Busiest destinations ({len(data['destinations'])} of {data['destinations_total']})"


def render(data: dict[str, Any], console: Console) -> None:
    for text, dim in _head(data):
        console.print(f"[dim]{text}[/dim]" if dim else text)
    rows = [table_row(row, console.width) for row in data["destinations"]]
    console.print(fit_table(DEST_COLS, rows, console.width, _title(data)))
    for note in data["limitations"]:
        console.print(f"[dim]note: {note}[/dim]")


def plain(data: dict[str, Any], width: int) -> list[str] | None:
    """The lines render() prints without styles (a pipe, a file), made without rich (whose import and table
    layout are most of a `destinations` run's own time); None where rich must draw them: text rich reads as
    markup or emoji codes or escapes (outputs/fit.py literal: an IPv6 destination's '[' or '::', a note with
    brackets), text it would fold or whose width only it can tell (fit.wrapped), a cell with a tab or a
    control character, a table that does not fit (fit.plain_lines)."""
    from connwatch.outputs.fit import layout, literal, plain_lines, wrapped

    texts = [text for text, _ in _head(data)] + [f"note: {note}" for note in data["limitations"]]
    said = [wrapped(text, width) if literal(text) else None for text in texts]
    cells = [_plain_row(row, width) for row in data["destinations"]]
    if any(lines is None for lines in said) or not all(
            literal(c) and all(line.isprintable() for line in c.split("\n")) for r in cells for c in r):
        return None
    table = plain_lines(DEST_COLS, layout(DEST_COLS, cells, width), cells, _title(data), width)
    if table is None:
        return None
    head = len(texts) - len(data["limitations"])
    return [line for lines in said[:head] for line in lines or ()] + table + [
        line for lines in said[head:] for line in lines or ()]
