"""Parser for /proc/net/sockstat and /proc/net/sockstat6 (socket counts per protocol).

Pure function over text: no I/O here (see connwatch.sources.procfs for the reader).
"""

from __future__ import annotations

from connwatch.errors import ParseError
from connwatch.parsers.netstat_snmp import is_prefix, numbered_lines, shown, to_int
from connwatch.parsers.numbers import is_word


def parse_sockstat(text: str, source: str) -> dict[str, int]:
    """Parse sockstat/sockstat6 into {"PROTO.field": value}: "TCP.inuse", "TCP.tw", "sockets.used".

    Each line is a protocol prefix followed by "name value" pairs::

        TCP: inuse 35 orphan 0 tw 4 alloc 59 mem 22

    Kernel source: net/ipv4/proc.c sockstat_seq_show() writes "sockets: used %d",
    "TCP: inuse %d orphan %d tw %d alloc %d mem %ld", "UDP: inuse %d mem %ld",
    "UDPLITE: inuse %d", "RAW: inuse %d", "FRAG: inuse %u memory %lu";
    net/ipv6/proc.c sockstat6_seq_show() writes "TCP6: inuse %d" ... "FRAG6: inuse %u memory %lu"
    (no UDPLITE6 line on 2.6.18). TCP/UDP "mem" is in pages, FRAG "memory" in bytes.

    Raises ParseError for: an empty file, a line without a "PROTO:" prefix, a line with no
    pairs or an odd number of tokens after the prefix, a non-integer value, a key twice.
    """
    rows = numbered_lines(text)
    if not rows:
        raise ParseError(source, "empty file")
    counts: dict[str, int] = {}
    for line, tokens in rows:
        prefix, fields = tokens[0], tokens[1:]
        if not is_prefix(prefix):  # ([A-Za-z][A-Za-z0-9]*:)
            raise ParseError(source, f"expected a 'PROTO:' prefix, got {shown(prefix)}", line)
        if not fields or len(fields) % 2:
            raise ParseError(source, f"{prefix} expected 'name value' pairs, got {len(fields)} tokens", line)
        for name, value in zip(fields[::2], fields[1::2], strict=True):
            if not is_word(name):  # ([A-Za-z][A-Za-z0-9_]*)
                raise ParseError(source, f"invalid field name {shown(name)} in {prefix} line", line)
            key = f"{prefix[:-1]}.{name}"
            if key in counts:
                raise ParseError(source, f"{key} appears twice", line)
            counts[key] = to_int(value, source, line, f"for {key}")
    return counts
