"""Parse `conntrack -S` (conntrack-tools; per-CPU netfilter conntrack statistics, cumulative since
the nf_conntrack module loaded), and the same `key=value` rows as VyOS `show conntrack statistics`
prints them (vyos-1x pull 1489)::

    cpu=3  found=0  invalid=0  insert=0  insert_failed=0  drop=0  early_drop=0  error=0   search_restart=48

Kernel meaning (net/netfilter/nf_conntrack_core.c): `drop` counts packets dropped because no conntrack
entry could be created for them (nf_conntrack_in; with a full table the kernel also logs
"nf_conntrack: table full, dropping packet"), `early_drop` entries evicted to make room,
`insert_failed` entries that could not be inserted (a clash). connwatch has no attribute for these
yet: they are reported as facts (notes), summed over CPUs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from connwatch.errors import ParseError
from connwatch.parsers.numbers import num

CONNTRACK_ROW = re.compile(r"cpu=\d+(?:\s+[a-z_]+=\d+)+\s*")
_PAIR = re.compile(r"(?<![a-z_])([a-z_]+)=(\d+)")  # (a key starts a run: linear on a long run without "=")
_HEADER = re.compile(r"CPU\s+Found\b.*|[-\s]+")
KEYS = ("drop", "early_drop", "insert_failed", "invalid", "error")


def parse_conntrack_stats(lines: Iterable[str], source: str) -> dict[str, int]:
    """Sums over CPUs of the counters in KEYS (only those the output has), plus "cpus"."""
    totals: dict[str, int] = {}
    cpus = 0
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or _HEADER.fullmatch(text):
            continue
        if not CONNTRACK_ROW.fullmatch(text):
            raise ParseError(source, f"not a conntrack -S row: {text[:60]!r}", number)
        cpus += 1
        for key, value in _PAIR.findall(text):
            if key in KEYS:
                try:
                    totals[key] = totals.get(key, 0) + num(value)
                except ValueError as exc:
                    raise ParseError(source, f"{key}: {exc}", number) from None
    if not cpus:
        raise ParseError(source, "no conntrack -S rows")
    return {**totals, "cpus": cpus}


def conntrack_note(stats: dict[str, int], where: str) -> str:
    """One line of facts for the report."""
    shown = ", ".join(f"{k} {stats[k]}" for k in KEYS if k in stats)
    worry = (" — drop > 0: packets were dropped because no conntrack entry could be made (a full table logs "
             "'nf_conntrack: table full'; see net.netfilter.nf_conntrack_max and nf_conntrack_count)"
             if stats.get("drop") else "")
    return (f"{where}: conntrack statistics over {stats['cpus']} CPUs (cumulative since nf_conntrack loaded): "
            f"{shown}{worry}")
