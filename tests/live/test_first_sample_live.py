"""Real kernel: `check`'s first sample dumps only the sockets on listening ports, TIME_WAIT left out
(CollectOptions.inbound_only, kernel-side port and state filter), and the report is the one two full samples
give (the second sample's TIME_WAIT holds the first's: collect_filtered._inbound_sockets).

A namespace holds what the judging compares between two samples and what it must not need from the
first: client-side TIME_WAIT (outbound, per destination) and server-side TIME_WAIT (inbound, per source and
port) over IPv4, IPv6 and a dual-stack listener; accepted connections (an inode) and connections waiting in
an accept queue that is never drained (inode 0); a client socket whose local port number is also a
listening port (inbound to the aggregation); half-open handshakes (SYN_RECV: raw SYNs from 198.19.x.y whose
SYN-ACKs an nft rule drops, as in test_rejects_live.py) and sources on several ports. Then, inside the
namespace: a full sample, the first-sample form, a full sample (the middle one must equal a neighbour in
what a pair compares: sources per port, accepts, TIME_WAIT aside), and a full sample with owners as `check`'s
second; the pair judged with the full first sample and with the same sample carrying the filtered dump's
sockets must give the same measurements, findings, reconciliation and `check --format json` report while
the second sample still holds every server-side TIME_WAIT the first did (the load's churn is done at its
start: they last 60 s).
"""

from __future__ import annotations

import json
import subprocess
import sys

from .netns import PROGS, Netns, poll
from .test_rejects_live import _half_open_setup, _syn_flood, _syn_recv

OUT4, IN4, IN6, DUAL, QUEUE, HALF, HELD = 8701, 8702, 8703, 8704, 8705, 8706, 8707

LOAD = f"""import socket, sys
sys.path.insert(0, {str(PROGS)!r})
from mixload import cycle, serve
serve(socket.AF_INET, "127.0.0.1", {OUT4}, False); serve(socket.AF_INET6, "::1", {IN6}, True)
serve(socket.AF_INET, "127.0.0.1", {IN4}, True); serve(socket.AF_INET6, "::", {DUAL}, True)
serve(socket.AF_INET, "127.0.0.1", {HELD}, None)  # accepted and kept open
never = serve(socket.AF_INET, "127.0.0.1", {QUEUE}, None, backlog=64, accept=False)  # kept, never accepted
cycle(socket.AF_INET, ("127.0.0.1", {OUT4}))
cycle(socket.AF_INET6, ("::1", {IN6}), None, True)
cycle(socket.AF_INET, ("127.0.0.1", {IN4}), lambda i: f"127.0.1.{{i % 30 + 1}}", True)
cycle(socket.AF_INET, ("127.0.0.1", {DUAL}), lambda i: f"127.0.1.{{i % 20 + 1}}", True)  # mapped; same sources
held = [socket.create_connection(("127.0.0.1", {HELD})) for _ in range(6)]  # accepted: inodes, both sides
queued = [socket.create_connection(("127.0.0.1", {QUEUE}), source_address=(f"127.0.2.{{i + 1}}", 0))
          for i in range(8)]
odd = socket.socket(); odd.bind(("127.0.0.5", {IN4})); odd.connect(("127.0.0.1", {HELD}))  # local port {IN4}
print("READY", flush=True)
sys.stdin.readline()
"""

COMPARE = """import dataclasses, json
from connwatch.attributes.accept_model import _empty
from connwatch.clock import SystemClock
from connwatch.collect import CollectOptions, collect
from connwatch.engine import judge
from connwatch.outputs.jsonout import check_dict
from connwatch.rules.config import load_config

def part(s):  # what a pair's judging reads of its first sample's sockets, TIME_WAIT aside (not in the first)
    kept = [(u.source, u.port, {k: n for k, n in u.states.items() if k != "TIME_WAIT"}) for u in s.sources]
    accepts = [dataclasses.replace(a, closed_by_age=()) for a in s.accepts]  # (a port of TIME_WAIT alone: none)
    return [sorted(repr(k) for k in kept if k[2]), repr([a for a in accepts if a != _empty(a.port)])]

def closed(s):  # (source, port) of the server-side TIME_WAIT
    return {(u.source, u.port) for u in s.sources if u.states.get("TIME_WAIT")}

full = CollectOptions(owners=False)
first = dataclasses.replace(full, inbound_only=True)
config, clock, rounds = load_config(None), SystemClock(), []
for _ in range(4):
    a, b, c = (collect(clock, o) for o in (full, first, full))
    cur = collect(clock, CollectOptions())  # check's second sample: every socket, owners
    twin = a if part(a.sockets) == part(b.sockets) else c if part(c.sockets) == part(b.sockets) else None
    got = {"same": twin is not None, "first_total": b.sockets.total, "full_total": a.sockets.total,
           "first_destinations": len(b.sockets.destinations), "full_destinations": len(a.sockets.destinations),
           "inbound_only": b.sockets.inbound_only, "first_states": dict(b.sockets.by_state),
           "ports": sorted(b.sockets.sources.by_port), "full_ports": sorted(a.sockets.sources.by_port),
           "full_time_wait": sorted({p for _, p in closed(a.sockets)}),
           "accepts": {x.port: [x.waiting, x.accepted] for x in b.sockets.accepts}}
    if twin is not None:
        got["covered"] = closed(twin.sockets) <= closed(cur.sockets)
        whole = judge(twin, cur, config, None)
        cheap = judge(dataclasses.replace(twin, sockets=b.sockets), cur, config, None)
        got["equal"] = {"measurements": repr(whole.measurements) == repr(cheap.measurements),
                        "findings": repr(whole.findings) == repr(cheap.findings),
                        "reconciliation": whole.reconciliation == cheap.reconciliation,
                        "report": check_dict(whole) == check_dict(cheap)}
        got["attributes"] = sorted({m.attribute for m in whole.measurements})
        got["accept_activity"] = {m.resource["port"]: m.facts.waited_through for m in whole.measurements
                                  if m.attribute == "AcceptActivity"}
    rounds.append(got)
print(json.dumps(rounds))
"""


def test_first_sample_of_listening_ports_judges_as_two_full_samples(ns: Netns) -> None:
    ns.sysctl("net.ipv4.tcp_tw_reuse", "0")
    load = ns.popen([sys.executable, "-c", LOAD], stdin=subprocess.PIPE)
    assert load.stdout is not None and load.stdout.readline().startswith("READY"), load.stderr
    _half_open_setup(ns, 1, HALF)  # backlog 5; raw SYNs whose SYN-ACKs are lost: SYN_RECV for ~7 s
    _syn_flood(ns, HALF, 4)
    assert poll(lambda: _syn_recv(ns, HALF) == 4, 5), ns.run(["ss", "-tanH"]).stdout
    # as sampled, and with TIME_WAIT dumped apart (split_time_wait, on by itself from SPLIT_TIME_WAIT_AT): either
    # way the first sample is one filtered walk that asks every inbound state but TIME_WAIT
    hook = ("import connwatch.collect as cc, connwatch.collect_filtered as cf\n"  # (the states each walk asked)
            "ASKED, _dump = [], cf._dump_filtered\n"
            "cf._dump_filtered = lambda *a: (ASKED.append(a[5]), _dump(*a))[1]\n")
    split = hook + "cc.SPLIT_TIME_WAIT_AT = 1\n"
    asked = ("\nassert len(ASKED) == 4 and set(ASKED) == {cc.INBOUND_STATES & ~cc.TCPF_TIME_WAIT}, ASKED\n")
    rounds = [r for script in (hook + COMPARE + asked, split + COMPARE + asked)  # (a failed assert: no JSON)
              for r in json.loads(ns.run([sys.executable, "-c", script], timeout=120).stdout)]
    judged = [r for r in rounds if r["same"] and r["covered"]]
    assert judged, rounds  # (the middle sample equals a neighbour unless the load moved between them)
    for r in rounds:
        assert r["inbound_only"] and r["first_destinations"] == 0 < r["full_destinations"], r
        assert 0 < r["first_total"] < r["full_total"], r  # every TIME_WAIT was left to the kernel
        # every inbound kind but TIME_WAIT is there: held and queued connections, half-open
        assert {"ESTABLISHED", "SYN_RECV"} <= set(r["first_states"]) and "TIME_WAIT" not in r["first_states"], r
        assert {QUEUE, HALF, HELD} <= set(map(int, r["ports"])), r
        assert {IN4, IN6, DUAL} <= set(r["full_time_wait"]) and {IN4, IN6, DUAL} <= set(map(int, r["full_ports"])), r
        assert r["accepts"][str(QUEUE)] == [8, 0] and r["accepts"][str(HELD)][1] == 7, r  # waiting; accepted
    for r in judged:
        assert all(r["equal"].values()), r
        assert {"AcceptActivity", "PortsPerSource", "ConnectionsPerSource"} <= set(r["attributes"]), r
