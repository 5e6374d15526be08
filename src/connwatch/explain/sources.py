"""Words for per-source alerts, built from measured facts.

Says who serves the port, whether the source is this host, how many other sources are over the
limit (alerts are capped per port), and how to limit a source at the application (Exchange, nginx,
HAProxy) and in the kernel, with a ready nftables rule for that port and limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from connwatch.attributes.sources_facts import PortListener, PortsFacts, SourcePortFacts
from connwatch.explain import process_words
from connwatch.findings import Explanation, Finding, format_number

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import Any

TEXTS = {
    "ConnectionsPerSource": "ConnectionsPerSource measures the connections one remote address (or prefix) "
    "holds to one listening port: ESTABLISHED and CLOSE_WAIT sockets, accepted or waiting in the accept "
    "queue, which is what a per-source limit such as Exchange's MaxInboundConnectionPerSource (default 100) "
    "or nftables `ct count` counts.",
    "HalfOpenPerSource": "HalfOpenPerSource measures the half-open connections (SYN_RECV: SYN answered, "
    "final ACK not yet received) from one source to one listening port.",
    "PortsPerSource": "PortsPerSource measures how many distinct listening ports one source held or tried "
    "in the interval (union of both samples), as a port scan or a runaway client would.",
}


def owner_words(owners: Sequence[Mapping[str, Any]]) -> str:
    """The port's listeners and owners in words, from JSON-ready rows (`connwatch sources`)."""
    return _served_by([(x.get("owner"), x["endpoint"]) for x in owners])


def listener_words(listeners: Sequence[PortListener]) -> str:
    """The port's listeners and owners in words, from the facts."""
    return _served_by([(None if x.owner is None else {"pid": x.owner.pid, "command": x.owner.command,
                                                      "user": x.owner.user}, x.endpoint) for x in listeners])


def _served_by(owners: Sequence[tuple[Mapping[str, Any] | None, str]]) -> str:
    parts = []
    for o, endpoint in owners:
        who = process_words(o) if o else "an owner not visible to this user (run as root)"
        parts.append(f"{who} on {endpoint}")
    return "; ".join(parts) if parts else "no listener any more"


def _who(d: SourcePortFacts | PortsFacts) -> str:
    source = d.source
    ss_filter = f"src {source}"
    members = ""
    if isinstance(d, SourcePortFacts):
        ss_filter = f"src {source} and dst :{d.port}"
        if d.member_count > 1:
            members = f" ({d.member_count} addresses counted as one, e.g. {', '.join(d.members)})"
    if d.local:
        return (f"{source}{members} is this host itself (loopback or one of its addresses): a local process "
                f"opens these connections; `ss -tnp '( {ss_filter} )'` names it.")
    return f"{source}{members} is not an address this host uses: the client is remote."


def over_limit(histogram: Sequence[Sequence[int]], limit: float) -> int:
    """Sources whose value exceeds the limit, from the port's (value, sources) histogram."""
    return sum(n for value, n in histogram if value > limit)


def _others(d: SourcePortFacts, limit: float, what: str) -> str:
    over = over_limit(d.histogram, limit)
    cap = d.max_alerts_per_port
    total = d.port_connections if what == "connections" else d.port_half_open
    text = (f"Port {d.port} has {d.port_sources} sources holding {total} "
            f"{what.replace('_', '-')} in all; this one ranks {d.rank}.")
    if over > 1:
        text += f" {over} sources are over the limit on this port"
        text += (f"; connwatch alerts on the {cap} heaviest only (see `connwatch sources --port {d.port}`)."
                 if over > cap else ".")
    return text


def _states(states: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(states.items(), key=lambda kv: -kv[1]))


def application_limits(port: int, limit: int) -> str:
    return (f"At the application: Exchange `Set-ReceiveConnector -Identity <connector> "
            f"-MaxInboundConnectionPerSource {limit}` (1–10000 or unlimited); nginx `limit_conn_zone "
            f"$binary_remote_addr zone=perip:10m;` and `limit_conn perip {limit};` (stream or http); HAProxy "
            f"`stick-table type ip size 100k expire 30s store conn_cur`, `tcp-request connection track-sc0 src`, "
            f"`tcp-request connection reject if {{ sc_conn_cur(0) gt {limit} }}` (`maxconn` caps the total, not "
            "per source).")


def nft_rule(d: SourcePortFacts, limit: float) -> str:
    """The nftables script itself (what `connwatch sources --port P --nft --limit N` prints)."""
    from connwatch.remedy.nftables import PerSourceLimit, render  # (a breach's words only: not loaded to judge)

    prefix = d.prefix
    n = max(1, min(int(limit), 10000))
    return render(PerSourceLimit(d.port, n, prefix.ipv4 if prefix else None, prefix.ipv6 if prefix else None))


def nft_command(d: SourcePortFacts, limit: float) -> str:
    """The command that prints the ready nftables script, in words. Actions name the command, never the
    script: an action also travels as an Alertmanager annotation, a webhook field and a text paragraph,
    where a multi-line script is wrapped or cut and no longer copies; the command prints it unwrapped."""
    n = max(1, min(int(limit), 10000))
    per = (f"per /{d.prefix.ipv4} (IPv4) and /{d.prefix.ipv6} (IPv6) network, as [sources] aggregate in the "
           "same --config" if d.prefix else "per source address")
    return (f"`connwatch sources --port {d.port} --nft --limit {n}` prints a ready nftables script (table inet "
            f"connwatch, `ct count over {n}` {per}; apply it with `nft -f FILE`)")


def explain_connections(f: Finding, d: SourcePortFacts) -> Explanation:
    value, limit = f.measurement.value, f.limit
    states = d.states
    closing = states.get("CLOSE_WAIT", 0)
    leak = closing * 2 > value  # most of them: the application's leak, not the client's load
    facts = [f"{d.source} holds {format_number(value)} connections to port {d.port} "
             f"({_states(states)}); the high limit is {format_number(limit)}.", _who(d),
             f"Port {d.port} is served by {listener_words(d.owners)}.", _others(d, limit, "connections")]
    if leak:
        facts.insert(0, f"Application leak: {closing} of these {format_number(value)} connections are CLOSE_WAIT — "
                        "the client has closed them and the application on this host never did (it does not call "
                        "close() after reading end-of-file, or a pool keeps dead connections). Limiting the client "
                        "would not help: the sockets and file descriptors are held by the application.")
    else:
        facts.append("An application that enforces a per-source limit refuses the next connection from this "
                     "source (Exchange logs event 1021 and answers 421); without one, a single client can take "
                     "every worker.")
        if closing:
            facts.append(f"{closing} of them are CLOSE_WAIT: the client has already closed and the application has "
                         "not; those are held by the application (a leak or slow close), not the client.")
    if states.get("SYN_RECV"):
        facts.append(f"Another {states['SYN_RECV']} are half-open (SYN_RECV), not counted here.")
    limits = [
        "Find out who the client is and whether the load is legitimate (a mail relay, a proxy, a NAT gateway "
        "or a client without connection reuse).",
        f"If legitimate, raise the limit for this port: [[rules]] attribute = \"ConnectionsPerSource\", "
        f"port = {d.port}, high = N (or \"unlimited\"), and at the application.",
        "If not, limit it. " + application_limits(d.port, int(limit)),
        "In the kernel (refuses the next connection with a TCP reset): " + nft_command(d, limit) + ".",
    ]
    fix_leak = [f"Fix the application serving port {d.port} ({listener_words(d.owners)}): find where it stops "
                "reading a connection without closing it (`ss -tnp state close-wait sport = :{port}` shows the "
                "owner; a stack dump of the process shows where it waits); restarting it frees the sockets for "
                "now.".replace("{port}", str(d.port))]
    actions = fix_leak + limits[:1] if leak else limits
    return Explanation(TEXTS["ConnectionsPerSource"], " ".join(facts), "\n".join(actions),
                       listener_words(d.owners))


def explain_half_open(f: Finding, d: SourcePortFacts) -> Explanation:
    cookies = d.tcp_syncookies
    facts = [f"{d.source} has {format_number(f.measurement.value)} half-open connections to port {d.port}; "
             f"the high limit is {format_number(f.limit)}.", _who(d),
             f"Port {d.port} is served by {listener_words(d.owners)}.", _others(d, f.limit, "half_open"),
             "Many SYN_RECV from one source is a SYN flood, or a client whose final ACKs are lost (packet loss, "
             "an asymmetric route or a firewall dropping the ACK)."]
    if cookies is not None:
        facts.append(f"net.ipv4.tcp_syncookies is {cookies}" + (
            ": when the SYN queue fills, the kernel answers with syncookies and keeps serving." if cookies else
            ": a full SYN queue drops new clients; set it to 1."))
    actions = ["Keep net.ipv4.tcp_syncookies=1. A flood from spoofed sources cannot be limited per source; "
               "syncookies and upstream filtering are the defence.",
               "For a real source, limit it in the kernel (ct count also counts half-open connections): "
               + nft_command(d, f.limit) + "."]
    return Explanation(TEXTS["HalfOpenPerSource"], " ".join(facts), "\n".join(actions),
                       listener_words(d.owners))


def explain_ports(f: Finding, d: PortsFacts) -> Explanation:
    ports = d.ports
    over = over_limit(d.histogram, f.limit)
    facts = [f"{d.source} held or tried {format_number(f.measurement.value)} distinct listening ports in "
             f"{d.interval_s} s (ports {', '.join(map(str, ports))}); the high limit is "
             f"{format_number(f.limit)}.", _who(d)]
    facts.append("Only ports with a listener leave a socket: probes of closed ports are answered with a reset "
                 "and not seen here (Tcp OutRsts rises), so a scan may be wider than this.")
    if over > 1:
        facts.append(f"{over} sources exceed the limit in this interval.")
    actions = [f"If {d.source} is not a known monitoring or client host, treat it as a scan: block it "
               f"(`nft add rule inet filter input {'ip6' if ':' in d.source else 'ip'} saddr {d.source} drop`, "
               "or in the upstream firewall) "
               "and check the services it reached.",
               f"If it is expected (a monitoring system), exempt it: [[rules]] attribute = \"PortsPerSource\", "
               f"address = \"{d.source}\", high = \"unlimited\"."]
    return Explanation(TEXTS["PortsPerSource"], " ".join(facts), "\n".join(actions), "")
