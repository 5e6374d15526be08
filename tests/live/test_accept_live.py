"""Real kernel: queued connections have no inode until accept(); accept verdicts and backlog sizing
checked against the namespace's own counters (ss, nstat) in fresh network namespaces."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from typing import Any

from .netns import Netns, poll

PORT, OTHER = 8080, 8081
SAMPLE = ("import json\nfrom connwatch.clock import SystemClock\n"
          "from connwatch.collect import CollectOptions, collect\n"
          "s = collect(SystemClock(), CollectOptions(owners=False))\n"
          "print(json.dumps({'accepts': [[a.port, a.waiting, a.accepted, sorted(a.inodes)]\n"
          "                              for a in s.sockets.accepts],\n"
          "                  'queue': {x.port: x.queue for x in s.listeners}}))\n")


MEASURE = ("import json, sys, time\nfrom connwatch.clock import SystemClock\n"
           "from connwatch.collect import CollectOptions, collect\nfrom connwatch.attributes.accept import measure\n"
           "from connwatch.findings import facts_dict\n"
           "a = collect(SystemClock(), CollectOptions())\ntime.sleep(float(sys.argv[1]))\n"
           "b = collect(SystemClock(), CollectOptions())\n"
           "print(json.dumps({m.resource['port']: facts_dict(m.facts) for m in measure(a, b)}))\n")


def inodes(ns: Netns, port: int) -> list[int]:
    """`ss -tnie` inodes of the server side of ESTABLISHED connections on the port (0: not accepted)."""
    out = ns.run(["ss", "-tnieH", "state", "established", f"( sport = :{port} )"]).stdout
    return sorted(int(x) for x in re.findall(r"\bino:(\d+)", out))


def recv_q(ns: Netns, port: int) -> int:
    """The accept-queue length as `ss -ltn` shows it (Recv-Q of the listener)."""
    out = ns.run(["ss", "-ltnH", f"sport = :{port}"]).stdout
    return sum(int(line.split()[1]) for line in out.splitlines() if line.strip())


def check(ns: Netns, tmp_path: Any, interval: str = "2") -> dict[str, Any]:
    done = ns.connwatch("check", "--interval", interval, "--format", "json", "--state-dir", str(tmp_path))
    assert done.stdout, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def measured(report: dict[str, Any], attribute: str, port: int) -> dict[str, Any]:
    [m] = [m for m in report["measurements"] if m["attribute"] == attribute and m["port"] == port]
    return dict(m)


def alert(report: dict[str, Any], attribute: str, port: int) -> dict[str, Any]:
    [a] = [a for a in report["alerts"] if a["attribute"] == attribute and a["port"] == port]
    return dict(a)


def test_queued_connections_have_inode_zero_until_accept(ns: Netns) -> None:
    ns.python("accept_server.py", "--port", str(PORT), "--backlog", "8", "--count", "1")
    ns.python("arrivals.py", "--port", str(PORT), "--rate", "0", "--duration", "0", "--count", "3", "--hold", "60")
    assert poll(lambda: len(inodes(ns, PORT)) == 3 and inodes(ns, PORT)[1] == 0, 10), inodes(ns, PORT)
    zero, zero2, accepted = inodes(ns, PORT)
    assert zero == zero2 == 0 and accepted > 0  # one accepted (has a file), two queued (no file yet)
    sample = json.loads(ns.run([sys.executable, "-c", SAMPLE]).stdout)
    [[_port, waiting, n_accepted, seen]] = [a for a in sample["accepts"] if a[0] == PORT]
    assert (waiting, n_accepted, seen) == (2, 1, [accepted])
    assert sample["queue"][str(PORT)] == waiting == recv_q(ns, PORT)  # idiag_rqueue agrees


def test_stopped_server_is_called_stuck_within_two_samples(ns: Netns, tmp_path: Any) -> None:
    stuck = ns.python("accept_server.py", "--port", str(PORT), "--backlog", "64")
    ns.python("accept_server.py", "--port", str(OTHER), "--backlog", "64")
    ns.python("arrivals.py", "--port", str(PORT), "--rate", "10", "--duration", "20", "--hold", "30")
    ns.python("arrivals.py", "--port", str(OTHER), "--rate", "10", "--duration", "20", "--hold", "30", "--seed", "3")
    assert poll(lambda: len(inodes(ns, PORT)) >= 3, 10), "the server accepted nothing"
    os.kill(stuck.pid, signal.SIGSTOP)  # `ip netns exec` execs python: this pid is the server
    assert poll(lambda: recv_q(ns, PORT) >= 2, 10)
    opens = ns.nstat("TcpPassiveOpens")
    report = check(ns, tmp_path)
    opens = ns.nstat("TcpPassiveOpens") - opens
    after = recv_q(ns, PORT)
    a = alert(report, "AcceptActivity", PORT)
    d = a["detail"]
    assert d["verdict"] == "stuck" and d["accepted_new"] == 0 and d["closed_recent"] == 0
    # Every connection waiting at the first sample still waited at the second: the value is them, and the
    # kernel's own accept queue (ss Recv-Q) holds at least as many afterwards.
    assert a["value"] == d["waited_through"] == d["waiting_before"] > 0
    assert d["waiting_before"] <= d["waiting_now"] <= after
    assert inodes(ns, PORT).count(0) == after
    assert d["owners"][0]["pid"] == stuck.pid and d["owners"][0]["state"] == "stopped"
    assert "Stuck:" in a["explanation"] and "a bigger backlog will not help" in a["explanation"]
    assert f"pid {stuck.pid} (python3) is stopped" in a["explanation"] or "is stopped" in a["explanation"]
    healthy = measured(report, "AcceptActivity", OTHER)
    assert healthy["value"] == 0 and not healthy["breached"]
    [h] = [x for x in report["listeners"] if x["port"] == OTHER]
    assert not [x for x in report["alerts"] if x["port"] == OTHER] and h["queue"] == 0
    # the healthy port's new accepts are real handshakes the namespace counted (PassiveOpens: both ports)
    opens = ns.nstat("TcpPassiveOpens")
    facts = activity(ns, "1")
    opens = ns.nstat("TcpPassiveOpens") - opens
    assert facts[OTHER]["verdict"] == "keeping up" and 0 < facts[OTHER]["accepted_new"] <= opens
    assert facts[PORT]["verdict"] == "stuck"


def activity(ns: Netns, interval: str) -> dict[int, dict[str, Any]]:
    """AcceptActivity facts per port from two samples `interval` s apart, taken inside the namespace."""
    out = ns.run([sys.executable, "-c", MEASURE, interval]).stdout
    return {int(k): v for k, v in json.loads(out).items()}
