"""Parsers for the host limits that turn connections away besides the backlog: the conntrack table
(/proc/net/stat/nf_conntrack), TCP memory (net.ipv4.tcp_mem) and file handles (/proc/sys/fs/file-nr).
Pure functions over text (sources/hostlimits.py reads the files)."""

from __future__ import annotations

from connwatch.errors import ParseError
from connwatch.parsers.netstat_snmp import numbered_lines, shown
from connwatch.parsers.numbers import hexnum, num

# Columns that are one value for the namespace, printed on every CPU's row (not summed).
_NOT_PER_CPU = frozenset({"entries"})


def parse_nf_conntrack_stat(text: str, source: str) -> dict[str, int]:
    """/proc/net/stat/nf_conntrack (or /proc/<pid>/net/stat/nf_conntrack: that process's namespace):
    a header of column names, then one row of hex numbers per CPU::

        entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop ...
        00000000  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 ...

    Kernel source: net/netfilter/nf_conntrack_standalone.c ct_cpu_seq_show() (columns differ between
    kernels, so they are read from the header). `drop`: packets dropped because no conntrack entry could
    be made (a full table: "nf_conntrack: table full, dropping packet"); `early_drop`: entries evicted to
    make room; `insert_failed`: entries that could not be inserted. Returns per-CPU sums ("entries" as
    printed: the namespace's count) plus "cpus". ParseError on a missing header, a row of another width
    or a non-hex value.
    """
    rows = numbered_lines(text)
    if not rows or rows[0][1][0] != "entries":
        raise ParseError(source, "expected a header line starting with 'entries'", rows[0][0] if rows else None)
    names = rows[0][1]
    totals = dict.fromkeys(names, 0)
    for line, tokens in rows[1:]:
        if len(tokens) != len(names):
            raise ParseError(source, f"expected {len(names)} hex columns, got {len(tokens)}", line)
        for name, token in zip(names, tokens, strict=True):
            try:
                value = hexnum(token)  # at most 16 digits: a 64-bit counter
            except ValueError:
                raise ParseError(source, f"not a hex number: {shown(token)} ({name})", line) from None
            totals[name] = value if name in _NOT_PER_CPU else totals[name] + value
    if len(rows) < 2:
        raise ParseError(source, "no per-CPU rows")
    return {**totals, "cpus": len(rows) - 1}


def parse_int_triple(text: str, source: str) -> tuple[int, int, int]:
    """A three-integer sysctl: net.ipv4.tcp_mem (pages: min, pressure, max)::

        45996	61330	91992

    Kernel source: net/ipv4/sysctl_net_ipv4.c (tcp_mem, proc_doulongvec_minmax); fs/file_table.c for
    /proc/sys/fs/file-nr ("allocated  free(0)  file-max")."""
    tokens = text.split()
    if len(tokens) != 3:
        raise ParseError(source, f"expected three integers, got {len(tokens)} fields", 1)
    try:
        a, b, c = (num(t) for t in tokens)  # at most 20 digits (parsers/numbers.py)
    except ValueError:
        raise ParseError(source, f"not integers: {shown(text.strip())}", 1) from None
    return a, b, c
