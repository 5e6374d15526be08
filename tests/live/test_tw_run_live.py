"""Real kernel: the column-wise decoding of TIME_WAIT runs (SocketAggregator._time_wait_run) counts
exactly what the slim per-socket loop counts, on the same dump bytes.

A namespace holds TIME_WAIT on both sides (client-side: outbound, per destination with young counts;
server-side: inbound, per source address and by age per listening port) over IPv4, IPv6 and IPv4-mapped
IPv6 (a dual-stack listener and an AF_INET6 client to ::ffff:127.0.0.1), plus a few ESTABLISHED
connections. Dumps of TIME_WAIT alone (per family and in one walk for both) and of every state are
recorded as root (TIME_WAIT replies of 96 bytes: INET_DIAG_MARK, sent for CAP_NET_ADMIN) and without
capabilities (88 bytes), and each is fed to both decoders. Then collect() with TIME_WAIT dumped apart
(what `sources` asks) must equal collect() with one dump of every state.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from .diag_scripts import COMPARE_HEAD, dump_script
from .netns import PROGS, Netns, poll
from .test_time_wait_live import _aged
from .unprivileged import NO_CAPS

OUT4, OUT6, IN4, IN6, DUAL = 8601, 8602, 8603, 8604, 8605
TW_MADE = 7 * 120 - 80  # LOAD's cycles below

LOAD = f"""import socket, sys
sys.path.insert(0, {str(PROGS)!r})
from mixload import cycle, serve
serve(socket.AF_INET, "127.0.0.1", {OUT4}, False); serve(socket.AF_INET6, "::1", {OUT6}, False)
serve(socket.AF_INET, "127.0.0.1", {IN4}, True); serve(socket.AF_INET6, "::1", {IN6}, True)
serve(socket.AF_INET6, "::", {DUAL}, True)
cycle(socket.AF_INET, ("127.0.0.1", {OUT4}), n=120)
cycle(socket.AF_INET6, ("::1", {OUT6}), n=120)
cycle(socket.AF_INET6, ("::ffff:127.0.0.1", {OUT4}), n=120)  # outbound, IPv4-mapped in an AF_INET6 socket
cycle(socket.AF_INET, ("127.0.0.1", {IN4}), lambda i: f"127.0.1.{{i % 50 + 1}}", True, n=120)
cycle(socket.AF_INET6, ("::1", {IN6}), None, True, n=120)
cycle(socket.AF_INET, ("127.0.0.1", {DUAL}), lambda i: f"127.0.2.{{i % 60 + 1}}", True, n=120)  # mapped, inbound
cycle(socket.AF_INET6, ("::1", {DUAL}), None, True, 40)
held = [socket.create_connection(("127.0.0.1", {IN4})) for _ in range(5)]
print("READY", flush=True)
sys.stdin.readline()
"""

DUMP = dump_script({"tw": "TCPF_TIME_WAIT", "all": "netlink.TCPF_ALL_BUT_LISTEN"})

COMPARE = COMPARE_HEAD + """
out = {}
for name, hexes in dumps.items():
    chunks = [bytes.fromhex(h) for h in hexes]
    new, old = SocketAggregator(ports, 1000), SocketAggregator(ports, 1000)
    ends = [(new(c), old._slim(c, 0)) for c in chunks]
    new.summary()  # (keys the runs still waiting, new.pending, before the tables are read below)
    runs = sum(1 for c in chunks if SocketAggregator(ports, 1000)._time_wait_run(c))
    lengths = sorted({int.from_bytes(c[:4], sys.byteorder) for c in chunks})
    keys = {len(k) for a in new.sources.values() for k in a}
    out[name] = {"equal": state(new) == state(old), "ends": all(a == b for a, b in ends), "runs": runs,
                 "chunks": len(chunks), "first_lengths": lengths, "tw": new.by_state[6], "key_sizes": sorted(keys),
                 "dest_families": sorted({k[0] for k in new.destinations}),
                 "closed_ports": len(new.closed), "young": sum(c[13] for c in new.destinations.values())}
print(json.dumps(out))
"""

COLLECT = """import json
from connwatch.clock import SystemClock
from connwatch.collect import CollectOptions, collect

def norm(s):  # server-side TIME_WAIT by age: the total (ages move on by the second between dumps)
    return [s.total, dict(s.by_state), sorted(map(repr, s.destinations)), sorted(map(repr, s.sources)),
            [(a.port, a.waiting, a.accepted, sorted(a.inodes), sum(a.closed_by_age)) for a in s.accepts or ()]]

one, split = CollectOptions(owners=False), CollectOptions(owners=False, split_time_wait=True)
got = []
for _ in range(3):  # one dump, split dumps, one dump: the middle one must equal one of its neighbours
    a, b, c = (norm(collect(SystemClock(), o).sockets) for o in (one, split, one))
    got.append(b in (a, c))
import connwatch.collect as cc
splits = []
real = cc._all_sockets
cc._all_sockets = lambda *args: splits.append(args[-1]) or real(*args)
cc.SPLIT_TIME_WAIT_AT = 1  # (sockstat's tw at or above it: TIME_WAIT dumped apart by itself...)
cc.TIME_WAIT_PER_OTHER = 10**9  # (...however few the other sockets)
auto = norm(collect(SystemClock(), one).sockets)
cc.SPLIT_TIME_WAIT_AT = 10**9
plain = norm(collect(SystemClock(), one).sockets)
print(json.dumps({"equal": got, "tw": b[1].get("TIME_WAIT", 0), "auto_split": splits, "auto_equal": auto == plain}))
"""


def _compare(ns: Netns, dumps: str) -> dict[str, dict[str, Any]]:
    done = subprocess.run(ns.cmd([sys.executable, "-c", COMPARE]), input=dumps, capture_output=True, text=True,
                          timeout=60, check=True)
    result: dict[str, dict[str, Any]] = json.loads(done.stdout)
    return result


def test_time_wait_runs_decode_as_the_slim_loop(ns: Netns) -> None:
    ns.sysctl("net.ipv4.tcp_tw_reuse", "0")
    load = ns.popen([sys.executable, "-c", LOAD], stdin=subprocess.PIPE)
    assert load.stdout is not None and load.stdout.readline().startswith("READY"), load.stderr
    root = ns.run([sys.executable, "-c", DUMP], timeout=60).stdout  # at once: with young TIME_WAIT
    assert poll(lambda: _aged(ns, 2), 10)  # no TIME_WAIT younger than tcp_tw_reuse_delay: stable young counts
    bare = ns.run(["setpriv", *NO_CAPS, sys.executable, "-c", DUMP], timeout=60).stdout
    for who, dumps in (("root", root), ("no capabilities", bare)):
        res = _compare(ns, dumps)
        for name, r in res.items():
            assert r["equal"] and r["ends"], (who, name, r)
            # 7 x 120 - 80 TIME_WAIT made, less those the kernel killed with an RST right after the close
            # (TcpOutRsts equals the shortfall; 0-13 % here, 748 of 760 once on CI): enough to need runs
            assert r["tw"] >= TW_MADE // 2, (who, name, r)
            assert r["key_sizes"] == [4, 16] and r["dest_families"] == [2, 10], (who, name, r)
            assert r["closed_ports"] == 3, (who, name, r)  # IN4, IN6, DUAL
        # the TIME_WAIT-only dumps went through the column-wise path; one dump of every state (TIME_WAIT
        # interleaved with ESTABLISHED) does not have to
        assert res["tw one"]["runs"] and res["tw per-family"]["runs"], (who, res)
        assert (res["tw one"]["young"] > 0) == (who == "root"), (who, res)  # young: dumped within 1 s
        first = set(res["tw one"]["first_lengths"]) - {20}  # (20: a chunk of NLMSG_DONE alone)
        assert first == ({96} if who == "root" else {88}), (who, first)
    out = json.loads(ns.run([sys.executable, "-c", COLLECT], timeout=60).stdout)
    assert all(out["equal"]) and out["tw"] >= TW_MADE // 2, out
    # with sockstat's tw past CollectOptions' threshold, a sample dumps TIME_WAIT apart by itself, alike
    assert out["auto_split"] == [True, False] and out["auto_equal"], out
