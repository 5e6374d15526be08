"""Parsers for the kernel's SNMP-style counter files: /proc/net/netstat, /proc/net/snmp, /proc/net/snmp6.

Pure functions over text: no I/O here (see connwatch.sources.procfs for the readers).
Every malformed input raises ParseError naming the source and the 1-based line.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from connwatch.errors import ParseError
from connwatch.parsers.numbers import MAX_DIGITS, is_decimal, is_word

_SHOWN = 40  # longest token quoted back in an error message


def shown(token: str) -> str:
    """A token as quoted in an error message: repr'd (one line) and cut short."""
    return repr(token if len(token) <= _SHOWN else token[:_SHOWN] + "...")


def to_int(token: str, source: str, line: int | None, what: str = "value") -> int:
    """One decimal integer token as the kernel prints it (%lu, %ld, %d); anything else is a ParseError.

    Only ASCII digits with an optional leading minus: Python's int() would also take
    "+5", "1_000" and non-ASCII digits, none of which a kernel writes.
    """
    if not is_decimal(token):
        raise ParseError(source, f"non-integer {what} {shown(token)}", line)
    if len(token.lstrip("-")) > MAX_DIGITS:  # beyond 64 bits: no kernel prints it (parsers/numbers.py)
        raise ParseError(source, f"{what} {shown(token)} has more than {MAX_DIGITS} digits", line)
    return int(token)


def is_prefix(token: str) -> bool:
    """`token` is a line's [A-Za-z][A-Za-z0-9]*: prefix ("TcpExt:", "TCP:")."""
    return token.endswith(":") and is_word(token[:-1], underscore=False)


def numbered_lines(text: str) -> list[tuple[int, list[str]]]:
    """The non-blank lines of `text` as (1-based line number, whitespace-split tokens).

    Lines are split on "\\n" only, so numbers match what `sed -n Np` shows for the file.
    """
    rows: list[tuple[int, list[str]]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        tokens = line.split()
        if tokens:
            rows.append((number, tokens))
    return rows


def _header(tokens: list[str], line: int, source: str) -> tuple[str, list[str]]:
    prefix, names = tokens[0], tokens[1:]
    if not is_prefix(prefix):
        raise ParseError(source, f"expected a 'Prefix:' header, got {shown(prefix)}", line)
    if not names:
        raise ParseError(source, f"header {prefix} names no counters", line)
    if all(is_decimal(name) for name in names):
        raise ParseError(source, f"value line for {prefix} without a header line before it", line)
    for name in names:
        if not is_word(name):
            raise ParseError(source, f"invalid counter name {shown(name)} in {prefix} header", line)
    return prefix[:-1], names


def _values(
    prefix: str, names: list[str], tokens: list[str], header_line: int, line: int, source: str
) -> list[tuple[str, int]]:
    if tokens[0] != prefix + ":":
        raise ParseError(
            source, f"prefix mismatch: header {prefix}: (line {header_line}), values {shown(tokens[0])}", line
        )
    values = tokens[1:]
    if len(values) != len(names):
        raise ParseError(source, f"{prefix} header has {len(names)} names but {len(values)} values", line)
    return [
        (f"{prefix}.{name}", to_int(value, source, line, f"for {prefix}.{name}"))
        for name, value in zip(names, values, strict=True)
    ]


def parse_netstat_snmp(text: str, source: str) -> dict[str, int]:
    """Parse /proc/net/netstat or /proc/net/snmp into {"Prefix.Name": value}.

    Both files are pairs of lines, a header naming the counters and a value line::

        TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed EmbryonicRsts ... ListenOverflows ListenDrops
        TcpExt: 0 0 0 99 ... 0 2

    Kernel source: net/ipv4/proc.c -- netstat_seq_show() writes "TcpExt:" and "IpExt:"
    (net/mptcp/mib.c mptcp_seq_show() appends "MPTcpExt:"); snmp_seq_show_ipstats() and
    snmp_seq_show_tcp_udp() write "Ip:", "Icmp:", "Tcp:", "Udp:", "UdpLite:"; icmpmsg_put()
    writes "IcmpMsg:" in chunks of up to 16 pairs, so a prefix may repeat with new names.
    Counter names come from the snmp4_*_list tables there, matching the LINUX_MIB_* and
    TCP_MIB_* enums of include/uapi/linux/snmp.h. Tcp MaxConn is printed with %ld and is
    -1 (no limit), so negative integers are valid.

    Raises ParseError for: an empty file, a value line without a header, a header without
    a value line, a prefix mismatch, a name/value count mismatch, a non-integer value, a
    counter that appears twice.
    """
    counters = _fast_netstat_snmp(text, source)
    return counters if counters is not None else careful_netstat_snmp(text, source)


def careful_netstat_snmp(text: str, source: str) -> dict[str, int]:
    """parse_netstat_snmp token by token: what the fast path (_fast_netstat_snmp) is tested against, and
    what finds the error of a file the fast path does not take."""
    rows = numbered_lines(text)
    if not rows:
        raise ParseError(source, "empty file")
    counters: dict[str, int] = {}
    for index in range(0, len(rows), 2):
        header_line, header_tokens = rows[index]
        prefix, names = _header(header_tokens, header_line, source)
        if index + 1 >= len(rows):
            raise ParseError(source, f"header {prefix}: has no value line after it", header_line)
        line, tokens = rows[index + 1]
        for key, value in _values(prefix, names, tokens, header_line, line, source):
            if key in counters:
                raise ParseError(source, f"counter {key} appears twice", line)
            counters[key] = value
    return counters


# The counters are read at every sample (the agent: every 5 s, and per namespace with `--netns all`); token by
# token, ~350 values with a check and a call per token and per header name, they were ~0.8 ms of CPU per
# sample, 0.31-0.35 ms this way (/proc/net/netstat and /proc/net/snmp, kernel 6.18, medians of 400
# interleaved with the careful path, pair ratio 0.39-0.41, load 2.4-3.0). The fast path
# checks each value line at once (its tokens joined: ASCII digits) and each header once per distinct header
# (a cache: the kernel's headers do not change); a line it does not take (a negative value: Tcp MaxConn -1)
# is read token by token with its line's number, and a file it does not take (a blank line, a missing value
# line, a duplicate, a bad header) goes to careful_netstat_snmp, whose error it then raises.
# tests/unit/test_netstat_snmp_fast.py compares both on the fixtures and on mutated files.


def _fast_netstat_snmp(text: str, source: str) -> dict[str, int] | None:
    """The counters of a well-formed file, line pairs without blank lines; None where the careful path must
    read the file (anything else); a ParseError where a value line's token is not a kernel number."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if not lines or len(lines) % 2:
        return None
    counters: dict[str, int] = {}
    for index in range(0, len(lines), 2):
        header, tokens = lines[index].split(), lines[index + 1].split()
        known = _header_keys(tuple(header)) if header else None
        if known is None or not tokens or tokens[0] != header[0] or len(tokens) != len(header):
            return None
        values = tokens[1:]
        joined = "".join(values)
        if joined.isascii() and joined.isdigit() and max(map(len, values)) <= MAX_DIGITS:
            pairs: Iterable[tuple[str, int]] = zip(known, map(int, values), strict=True)
        else:  # (a negative value or a malformed one: token by token, with its line's number)
            pairs = _values(*_header(header, index + 1, source), tokens, index + 1, index + 2, source)
        size = len(counters)
        counters.update(pairs)
        if len(counters) != size + len(known):
            return None  # (a counter twice: the careful path names it)
    return counters


@functools.lru_cache(maxsize=64)  # (a few distinct headers per kernel, shared by every namespace)
def _header_keys(header: tuple[str, ...]) -> tuple[str, ...] | None:
    """The keys ("Prefix.Name") of a valid header line's counters; None for an invalid one."""
    try:
        prefix, names = _header(list(header), 0, "")
    except ParseError:
        return None
    return tuple(f"{prefix}.{name}" for name in names)


def parse_snmp6(text: str, source: str) -> dict[str, int]:
    """Parse /proc/net/snmp6 into {"snmp6.<kernel name>": value}, e.g. "snmp6.Ip6InReceives".

    One counter per line, the name padded to 32 columns then a TAB and the value::

        Ip6InReceives                   \t92166

    Kernel source: net/ipv6/proc.c -- snmp6_seq_show() via snmp6_seq_show_item() and
    snmp6_seq_show_icmpv6msg(), format "%-32s\\t%lu\\n"; names from snmp6_ipstats_list,
    snmp6_icmp6_list, snmp6_udp6_list, snmp6_udplite6_list there, plus generated
    "Icmp6InType<N>"/"Icmp6OutType<N>" rows.

    Raises ParseError for: an empty file, a line that is not exactly "name value", a name
    that is not a kernel-style identifier, a non-integer value, a name that appears twice.
    """
    counters = _fast_snmp6(text)
    return counters if counters is not None else careful_snmp6(text, source)


def careful_snmp6(text: str, source: str) -> dict[str, int]:
    """parse_snmp6 line by line: what _fast_snmp6 is tested against, and what finds the error of a file
    the fast path does not take."""
    rows = numbered_lines(text)
    if not rows:
        raise ParseError(source, "empty file")
    counters: dict[str, int] = {}
    for line, tokens in rows:
        if len(tokens) != 2:
            raise ParseError(source, f"expected 'Name value', got {len(tokens)} fields", line)
        name, value = tokens
        if not is_word(name):
            raise ParseError(source, f"invalid counter name {shown(name)}", line)
        key = f"snmp6.{name}"
        if key in counters:
            raise ParseError(source, f"counter {key} appears twice", line)
        counters[key] = to_int(value, source, line, f"for {name}")
    return counters


# Line by line (a check, an f-string and a call per line, ~200 lines) /proc/net/snmp6 was ~0.25 ms of CPU per
# sample; the fast path splits every line at C speed, checks the names once per distinct list of them (a
# cache) and the values joined: 0.11 ms instead of 0.23-0.26 (kernel 6.18, medians of 400 interleaved, load
# 2.4-3.0). Anything else (a line
# not "name value", a blank line, a negative or malformed value, a bad or repeated name): the careful path.


def _fast_snmp6(text: str) -> dict[str, int] | None:
    """The counters of a well-formed /proc/net/snmp6; None where careful_snmp6 must read it."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if not lines or set(map(len, map(str.split, lines))) != {2}:
        return None
    tokens = text.split()  # (every line two tokens: names at even places, values at odd ones)
    keys, values = _snmp6_keys(tuple(tokens[0::2])), tokens[1::2]
    joined = "".join(values)
    if keys is None or not (joined.isascii() and joined.isdigit()) or max(map(len, values)) > MAX_DIGITS:
        return None
    return dict(zip(keys, map(int, values), strict=True))


@functools.lru_cache(maxsize=16)  # (one list of names per kernel, shared by every namespace)
def _snmp6_keys(names: tuple[str, ...]) -> tuple[str, ...] | None:
    """The keys ("snmp6.Name") of a list of valid, distinct counter names; None otherwise."""
    if not all(map(is_word, names)) or len(set(names)) != len(names):
        return None
    return tuple(f"snmp6.{name}" for name in names)
