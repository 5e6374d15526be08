"""Words for ephemeral-port, TIME_WAIT and orphan alerts, built from the measured facts.

Seed 002: a host that opened short outbound connections faster than TIME_WAIT released them could
not connect anywhere until a reboot, which only postponed it. The words say where the ports run out
(per destination, per local address), how much of it TIME_WAIT reuse absorbs, how the forecast was
made, who probably causes it, and what to change, connection reuse first.
"""

from __future__ import annotations

from connwatch.attributes.ephemeral_facts import (
    DestinationFacts,
    EphemeralContext,
    OrphanFacts,
    ProcessFacts,
    TimeWaitFacts,
)
from connwatch.explain import process_words
from connwatch.findings import Explanation, Finding, format_number

TEXTS = {
    "EphemeralPortUsage": "EphemeralPortUsage measures, per destination ip:port and local address, the "
    "sockets holding a local ephemeral port toward it in any state (SYN_SENT, ESTABLISHED, FIN_WAIT*, "
    "CLOSE_WAIT, LAST_ACK, TIME_WAIT) as a percentage of the usable ports (ip_local_port_range minus "
    "ip_local_reserved_ports and listening ports). TIME_WAIT sockets the kernel will reuse are not counted. "
    "At 100 % connect() to this destination fails with EADDRNOTAVAIL.",
    "EphemeralPortUsageWithoutReuse": "EphemeralPortUsageWithoutReuse is EphemeralPortUsage with every "
    "TIME_WAIT socket counted, including those tcp_tw_reuse lets connect() take over: how full this "
    "destination would be without TIME_WAIT reuse.",
    "EphemeralPortExhaustion": "EphemeralPortExhaustion forecasts, by Little's law, the share of the usable "
    "ports this destination will hold at steady state at the current rate of new TIME_WAIT sockets; above "
    "100 % it runs out of ports.",
    "TimeWaitSockets": "TimeWaitSockets is the host-wide TIME_WAIT count as a percentage of "
    "net.ipv4.tcp_max_tw_buckets; beyond it the kernel closes sockets without TIME_WAIT (TCPTimeWaitOverflow).",
    "OrphanSockets": "OrphanSockets is the number of orphaned TCP sockets (closed by their program, still "
    "finishing the close in the kernel) as a percentage of net.ipv4.tcp_max_orphans; beyond it the kernel "
    "resets connections.",
}

RECYCLE = ("Do not look for tcp_tw_recycle: it was removed in Linux 4.12 because it dropped connections "
           "from clients behind NAT (it compared TCP timestamps per peer address).")
TW_FIXED = ("TIME_WAIT lasts 60 s on Linux (TCP_TIMEWAIT_LEN, compiled in); tcp_fin_timeout does not "
            "shorten it.")


def _states(d: DestinationFacts) -> str:
    return ", ".join(f"{name} {n}" for name, n in d.states.items())


def _budget(d: DestinationFacts) -> str:
    rng: tuple[int | str, int | str] = d.port_range or ("?", "?")
    extra = []
    if d.reserved_ports:
        extra.append(f"{d.reserved_ports} reserved")
    if d.listening_ports_in_range:
        extra.append(f"{d.listening_ports_in_range} taken by listeners")
    minus = f" minus {' and '.join(extra)}" if extra else ""
    return f"{d.usable_ports} usable ports (ip_local_port_range {rng[0]}-{rng[1]}{minus})"


def _time_wait(d: DestinationFacts) -> str:
    tw = d.time_wait
    if not tw:
        return "No TIME_WAIT sockets toward it."
    if d.time_wait_reusable:
        return (f"Of {tw} TIME_WAIT sockets, {d.time_wait_reusable} are reusable and not counted "
                f"({d.reuse_reason}, once older than tcp_tw_reuse_delay "
                f"{d.tcp_tw_reuse_delay_ms or 1000} ms; reuse needs TCP timestamps on both ends); "
                f"{d.time_wait_young} are younger and still block.")
    return (f"All {tw} TIME_WAIT sockets block a port for {format_number(d.time_wait_s or 60)} s: "
            f"{d.reuse_reason}.")


def _reuse_safety(d: DestinationFacts) -> str:
    if d.safe_only_by_reuse and d.percent_without_reuse is not None:
        return (f"Without reuse this destination would be full ({format_number(d.percent_without_reuse)} %): "
                "it is safe only because of TIME_WAIT reuse. Setting tcp_tw_reuse=0, or a peer without TCP "
                "timestamps, would make connect() fail.")
    return ""


def _rates(d: EphemeralContext) -> str:
    r = d.rates
    if r.time_wait_entered_per_s is None:
        return "No rates: only one sample, or TcpExt TW missing."

    def rate(value: float | None) -> str:
        return "?" if value is None else f"{format_number(value)}/s"

    return (f"Between the two samples ({r.interval_s} s) the host opened {rate(r.active_opens_per_s)} "
            f"outbound connections (Tcp ActiveOpens), {rate(r.time_wait_entered_per_s)} sockets entered "
            f"TIME_WAIT (TcpExt TW) and {rate(r.attempt_fails_per_s)} connection attempts failed (Tcp "
            "AttemptFails; EADDRNOTAVAIL failures are counted nowhere).")


def forecast_words(d: DestinationFacts) -> str:
    fc = d.forecast
    if not fc:
        return ""
    if fc.basis.startswith("saturated"):
        return (f"Forecast: none can be made now — every one of the {d.usable_ports} usable ports toward "
                f"{d.destination} is held, so new connect() calls fail with EADDRNOTAVAIL before the kernel counts "
                "them (ActiveOpens stops rising, no counter records the failures): the demand cannot be measured. "
                "The alert stays until ports free up.")
    held = d.held - d.time_wait
    how = (f"Forecast (Little's law: ports held = rate x time held): about {format_number(fc.rate_per_s)} "
           f"TIME_WAIT/s toward {d.destination} ({d.rate_method}); each blocks a port for "
           f"{format_number(fc.hold_s)} s, so with the {held} sockets in other states the steady state is "
           f"about {format_number(fc.steady_sockets)} sockets = {format_number(fc.steady_percent)} % of "
           f"{d.usable_ports} ports.")
    if fc.seconds_to_full == 0:
        return how + " It is full now."
    if fc.seconds_to_full is not None:
        return (how + f" At this rate it reaches 100 % in about {format_number(fc.seconds_to_full)} s "
                "(later if older TIME_WAIT sockets expire meanwhile).")
    return how + " At this rate it settles below 100 %."


def _process(p: ProcessFacts) -> str:
    return process_words({"pid": p.pid, "command": p.command, "user": p.user})


def owner_words(d: DestinationFacts) -> str:
    if not d.owners:
        return ""
    names = "; ".join(_process(o) for o in d.owners)
    return f"inferred from ESTABLISHED connections to {d.destination}: {names}"


def _who(d: DestinationFacts) -> str:
    words = owner_words(d)
    if words:
        return (f"Probable cause ({words}). TIME_WAIT sockets have no owner, so this attribution is inferred "
                "from the programs holding open connections to the same destination.")
    return ("No process holds an ESTABLISHED connection to it at the sample, and TIME_WAIT sockets have no "
            "owner: look for short-lived clients (cron jobs, health checks, scripts) connecting to it.")


def is_windows(platform: str | None) -> bool:
    return bool(platform) and str(platform).lower().startswith("win")


def port_actions(d: DestinationFacts) -> str:
    dest = d.destination
    first = (f"First reuse connections to {dest}: HTTP keep-alive, a connection pool (database, Redis, gRPC "
             "channel), or one long-lived connection instead of connect+close per request.")
    spread = ("Spread the load: each local address and each destination ip:port has its own full range, so "
              "more source addresses or more destination ports/addresses multiply the ports available.")
    if is_windows(d.platform):
        return " ".join((first, windows_actions(), spread))
    if d.platform == "bsd":
        return " ".join((first, "Widen the range: sysctl net.inet.ip.portrange.first=10000 (and .last=65535); "
                         "TIME_WAIT lasts 2 x net.inet.tcp.msl (30 s by default).", spread))
    actions = [first]
    if d.tcp_tw_reuse != 1 and not d.reuse_applies:
        actions.append("For outbound connections set net.ipv4.tcp_tw_reuse=1 (sysctl -w, persisted in "
                       "/etc/sysctl.d/); it lets connect() take over TIME_WAIT sockets older than "
                       "tcp_tw_reuse_delay when TCP timestamps are on (net.ipv4.tcp_timestamps=1).")
    rng = d.port_range
    if rng and rng[1] - rng[0] < 60000:
        actions.append("Widen the range: sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\", reserving "
                       "ports your services listen on with net.ipv4.ip_local_reserved_ports.")
    actions.append("Spread the load: each local address and each destination ip:port has its own full "
                   "range, so more source addresses (bind() before connect(), with IP_BIND_ADDRESS_NO_PORT) "
                   "or more destination ports/addresses multiply the ports available.")
    actions.append(RECYCLE + " " + TW_FIXED)
    return " ".join(actions)


def windows_actions() -> str:
    return ("This capture comes from a Windows host: TIME_WAIT lasts TcpTimedWaitDelay (30-240 s, default "
            "240 s on older versions; HKLM\\SYSTEM\\CurrentControlSet\\Services\\Tcpip\\Parameters, reboot "
            "needed) - set it to 30; and widen the dynamic port range with `netsh int ipv4 set dynamicport "
            "tcp start=10000 num=55535` (check it with `netsh int ipv4 show dynamicport tcp`).")


def explain_destination(f: Finding, d: DestinationFacts) -> Explanation:
    m = f.measurement
    held = (f"{d.blocking} of {_budget(d)} are taken toward {d.destination} from "
            f"{d.local_address} ({format_number(d.percent or 0)} % now); states: {_states(d)}.")
    if m.attribute == "EphemeralPortUsageWithoutReuse":
        held = (f"{d.held} sockets hold a port toward {d.destination} from {d.local_address} "
                f"({format_number(m.value)} % of {_budget(d)}); states: {_states(d)}. Counting only what "
                f"blocks, usage is {format_number(d.percent or 0)} %.")
    full = ""
    if (d.percent or 0) >= 100:
        full = (f"Every usable port is taken: connect() to {d.destination} from {d.local_address} fails "
                "now with EADDRNOTAVAIL (\"Cannot assign requested address\"); other destinations are not "
                "affected, which is why a host-wide TIME_WAIT count can miss it.")
    lead = f"The high limit is {format_number(f.limit)} %."
    if m.attribute == "EphemeralPortExhaustion":
        lead = (f"At the current rate this destination settles at {format_number(m.value)} % of its ports; the "
                f"high limit is {format_number(f.limit)} %.")
    facts = [lead, held, full, _time_wait(d), _reuse_safety(d),
             _rates(d), forecast_words(d), _who(d)]
    return Explanation(TEXTS[m.attribute], " ".join(x for x in facts if x), port_actions(d), owner_words(d))


def explain_time_wait(f: Finding, d: TimeWaitFacts) -> Explanation:
    top = d.top_destinations
    where = ("Most of them toward: " + ", ".join(
        f"{x.destination} from {x.local_address} ({x.time_wait}, {format_number(x.percent or 0)} % "
        "of its ports)" for x in top) + ". Ports run out per destination: see `connwatch destinations`."
             if top else "None of them is outbound (they sit on listening ports: this host closes first).")
    overflow = d.overflow_delta
    over = (f" {overflow} sockets skipped TIME_WAIT since the previous sample (TcpExt TCPTimeWaitOverflow): the "
            "kernel closed them at once, without protection against delayed duplicates." if overflow else "")
    text = (f"{d.time_wait} sockets in TIME_WAIT, {format_number(f.measurement.value)} % of "
            f"tcp_max_tw_buckets {d.tcp_max_tw_buckets} (limit {format_number(f.limit)} %).{over} {where} "
            f"{_rates(d)} {TW_FIXED}")
    action = ("Reduce connection churn first (keep-alive, pooling). If the churn is legitimate, raise "
              "net.ipv4.tcp_max_tw_buckets (a TIME_WAIT socket costs a few hundred bytes); lowering it only "
              "hides TIME_WAIT, it does not make connections cheaper. " + RECYCLE)
    if is_windows(d.platform):
        action += " " + windows_actions()
    return Explanation(TEXTS["TimeWaitSockets"], text, action)


def explain_orphans(f: Finding, d: OrphanFacts) -> Explanation:
    states = ", ".join(f"{k} {v}" for k, v in d.fin_wait.items()) or "none seen"
    text = (f"{d.orphans} orphaned sockets, {format_number(f.measurement.value)} % of tcp_max_orphans "
            f"{d.tcp_max_orphans} (limit {format_number(f.limit)} %). Closing states now: {states}. Beyond "
            "the limit the kernel resets connections and logs \"too many orphaned sockets\"; peers that stop "
            "reading or never answer the FIN keep them alive.")
    action = (f"Find the peers that do not finish closing (`ss -tan state fin-wait-1 state fin-wait-2 state "
              f"last-ack`); lower net.ipv4.tcp_fin_timeout (now {d.tcp_fin_timeout}) and "
              "net.ipv4.tcp_orphan_retries to free them sooner; raise net.ipv4.tcp_max_orphans only with the "
              "memory for it (up to about 64 KB per orphan).")
    return Explanation(TEXTS["OrphanSockets"], text, action)
