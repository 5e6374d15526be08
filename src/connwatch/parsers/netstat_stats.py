"""Parse protocol statistics: `netstat -s` (Linux net-tools, Windows) and iproute2 `nstat`.

All three print the kernel's cumulative counters (since boot). Keys are the /proc names used by
parsers/netstat_snmp.py ("TcpExt.ListenOverflows", "Tcp.ActiveOpens") so the same attributes apply.

Linux `netstat -s` (net-tools statistics.c): sections "Tcp:", "TcpExt:"; counters as sentences
whose wording changed between releases, or "Name: value" for counters net-tools has no sentence for::

    TcpExt:
        7203095 times the listen queue of a socket overflowed
        7203095 SYNs to LISTEN sockets dropped
        TCPReqQFullDrop: 11

`netstat -s | grep -i listen` excerpts lose the section headers; the sentences alone name their
counter (net-tools statistics.c, e.g. `{ "ListenOverflows", N_("%llu times the listen queue of a
socket overflowed"), opt_number }` and `{ "ListenDrops", N_("%llu SYNs to LISTEN sockets dropped"),
opt_number }` in the TcpExt table), so such lines are read without a section::

    $ netstat -s | grep -i "listen"
        189088 times the listen queue of a socket overflowed
    30140232 SYNs to LISTEN sockets dropped

Windows `netstat -s` (netstat.exe message table MSG_TCP_*; one section per address family)::

    TCP Statistics for IPv4

      Active Opens                        = 64644
      Failed Connection Attempts          = 5800

`nstat` / `nstat -az` (iproute2 misc/nstat.c: name, value, rate; "#kernel" first)::

    #kernel
    TcpExtListenOverflows           4                  0.0
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from connwatch.errors import ParseError
from connwatch.parsers.numbers import num

# net-tools statistics.c sentences (old and new spellings) -> /proc counter names.
LINUX_SENTENCES: dict[str, str] = {
    "active connections openings": "Tcp.ActiveOpens", "active connection openings": "Tcp.ActiveOpens",
    "passive connection openings": "Tcp.PassiveOpens", "failed connection attempts": "Tcp.AttemptFails",
    "connection resets received": "Tcp.EstabResets", "connections established": "Tcp.CurrEstab",
    "segments received": "Tcp.InSegs", "segments send out": "Tcp.OutSegs", "segments sent out": "Tcp.OutSegs",
    "segments retransmited": "Tcp.RetransSegs", "segments retransmitted": "Tcp.RetransSegs",
    "bad segments received.": "Tcp.InErrs", "bad segments received": "Tcp.InErrs", "resets sent": "Tcp.OutRsts",
    "SYN cookies sent": "TcpExt.SyncookiesSent", "SYN cookies received": "TcpExt.SyncookiesRecv",
    "invalid SYN cookies received": "TcpExt.SyncookiesFailed",
    "resets received for embryonic SYN_RECV sockets": "TcpExt.EmbryonicRsts",
    "TCP sockets finished time wait in fast timer": "TcpExt.TW",
    "TCP sockets finished time wait in slow timer": "TcpExt.TWKilled",
    "time wait sockets recycled by time stamp": "TcpExt.TWRecycled",
    "times the listen queue of a socket overflowed": "TcpExt.ListenOverflows",
    "SYNs to LISTEN sockets dropped": "TcpExt.ListenDrops", "SYNs to LISTEN sockets ignored": "TcpExt.ListenDrops",
    "packets pruned from receive queue because of socket buffer overrun": "TcpExt.PruneCalled",
}
WINDOWS_LABELS: dict[str, str] = {
    "Active Opens": "Tcp.ActiveOpens", "Passive Opens": "Tcp.PassiveOpens",
    "Failed Connection Attempts": "Tcp.AttemptFails", "Reset Connections": "Tcp.EstabResets",
    "Current Connections": "Tcp.CurrEstab", "Segments Received": "Tcp.InSegs", "Segments Sent": "Tcp.OutSegs",
    "Segments Retransmitted": "Tcp.RetransSegs",
    # German Windows (real paste: tests/fixtures/captures/pastes/windows_german_netstat_tn_and_s_banners_*)
    "Aktiv geöffnet": "Tcp.ActiveOpens", "Passiv geöffnet": "Tcp.PassiveOpens",
    "Erfolglose Verbindungsversuche": "Tcp.AttemptFails", "Zurückgesetzte Verbindungen": "Tcp.EstabResets",
    "Aktuelle Verbindungen": "Tcp.CurrEstab", "Empfangene Segmente": "Tcp.InSegs", "Gesendete Segmente": "Tcp.OutSegs",
    "Erneut übertragene Segmente": "Tcp.RetransSegs",
}
NSTAT_PREFIXES = ("TcpExt", "IpExt", "MPTcpExt", "UdpLite6", "UdpLite", "Udp6", "Udp", "Tcp", "Icmp6",
                  "IcmpMsg", "Icmp", "Ip6", "Ip", "Sctp")
_SECTION = re.compile(r"([A-Za-z][A-Za-z0-9]*):$")
_LEADING = re.compile(r"(\d+) (.+)$")
_NAMED = re.compile(r"([A-Za-z][A-Za-z0-9_]*): (\d+)$")
_NSTAT_ROW = re.compile(r"([A-Za-z][A-Za-z0-9_]*)\s+(\d+)\s+(-?[0-9.]+(?:e[+-]?\d+)?)$")


def sentence_counter(text: str) -> tuple[str, int] | None:
    """(counter, value) for one net-tools sentence line such as `9107 SYNs to LISTEN sockets dropped`."""
    lead = _LEADING.fullmatch(text.strip())
    if lead is None or lead.group(2) not in LINUX_SENTENCES:
        return None
    try:
        return LINUX_SENTENCES[lead.group(2)], num(lead.group(1))
    except ValueError:  # a number no kernel prints: not a counter line
        return None


def _win_value(text: str) -> tuple[str, str] | None:
    """(label, digits) of a stripped `Label   = 12` line; the regex `(.+?)\\s+=\\s+(\\d+)$` it replaces took
    quadratic time on a long run of spaces (fuzzing found it)."""
    label, sep, value = text.rpartition("=")
    digits = value.lstrip()
    if not sep or not label[-1:].isspace() or not value[:1].isspace() or not digits.isdecimal():
        return None
    label = label.rstrip()
    return (label, digits) if label else None


def _value(digits: str, source: str, number: int) -> int:
    try:
        return num(digits)
    except ValueError as exc:
        raise ParseError(source, str(exc), number) from None


def parse_linux_netstat_s(lines: Iterable[str], source: str, notes: list[str] | None = None) -> dict[str, int]:
    """Linux `netstat -s` -> counters. Sentences net-tools prints but connwatch does not use are skipped."""
    counters: dict[str, int] = {}
    section = ""
    sections = skipped = 0
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        m = _SECTION.fullmatch(text)
        if m and not line[:1].isspace():
            section, sections = m.group(1), sections + 1
            continue
        if not section:  # a grep excerpt: only the sentences that name their counter can be read
            found = sentence_counter(text)
            lead = _LEADING.fullmatch(text)
            if found is None and lead is not None and lead.group(2) in LINUX_SENTENCES:
                _value(lead.group(1), source, number)  # raises: the sentence is known, its number is not
            if found is None:
                if not counters and not _LEADING.fullmatch(text):
                    raise ParseError(source, "counter line before any 'Section:' header", number)
                skipped += 1
                continue
            counters[found[0]] = found[1]
            continue
        named = _NAMED.fullmatch(text)
        lead = _LEADING.fullmatch(text)
        if named:
            key = f"{section}.{named.group(1)}"
            value = _value(named.group(2), source, number)
        elif lead and lead.group(2) in LINUX_SENTENCES:
            key, value = LINUX_SENTENCES[lead.group(2)], _value(lead.group(1), source, number)
        else:
            skipped += 1
            continue
        counters[key] = value
    if not sections and not counters:
        raise ParseError(source, "no 'Tcp:'/'TcpExt:' sections: not `netstat -s` output")
    if skipped and notes is not None:
        notes.append(f"{source}: {skipped} netstat -s lines carry counters connwatch does not use (skipped)")
    return counters


def parse_windows_netstat_s(lines: Iterable[str], source: str, notes: list[str] | None = None) -> dict[str, int]:
    """Windows `netstat -s` -> Tcp.* counters summed over the IPv4 and IPv6 sections.

    Labels are localized; English and German are known. A TCP section whose labels are all unknown
    is said in `notes` (its counters are not guessed)."""
    counters: dict[str, int] = {}
    in_tcp = False
    seen = tcp_values = 0
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        m = _win_value(text)
        if m is None:
            in_tcp = text.upper().startswith("TCP")  # "TCP Statistics for IPv4" (localized: "Statistiques TCP")
            in_tcp = in_tcp or " TCP " in f" {text} "
            continue
        seen += 1
        if len(m[0]) > 80:
            raise ParseError(source, "label too long for netstat -s", number)
        key = WINDOWS_LABELS.get(m[0])
        tcp_values += in_tcp
        if in_tcp and key is not None:
            counters[key] = counters.get(key, 0) + _value(m[1], source, number)
    if not seen:
        raise ParseError(source, "no 'Label = value' lines: not Windows `netstat -s` output")
    if tcp_values and not counters and notes is not None:
        notes.append(f"{source}: the TCP section's labels are in a language connwatch does not know yet "
                     "(English and German are read): its counters were not used")
    return counters


def nstat_key(name: str) -> str:
    for prefix in NSTAT_PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            return f"{prefix}.{name[len(prefix):]}"
    return name


def parse_nstat(lines: Iterable[str], source: str) -> dict[str, int]:
    """`nstat` output -> counters. Every non-comment line must be `Name value rate`."""
    counters: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        m = _NSTAT_ROW.fullmatch(text)
        if m is None:
            raise ParseError(source, f"expected 'Name value rate', got {text[:60]!r}", number)
        key = nstat_key(m.group(1))
        if key in counters:
            raise ParseError(source, f"counter {m.group(1)} appears twice", number)
        counters[key] = _value(m.group(2), source, number)
    if not counters:
        raise ParseError(source, "no counters (empty nstat output)")
    return counters
