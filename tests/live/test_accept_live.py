"""Real kernel: queued connections have no inode until accept(); accept verdicts and backlog sizing
checked against the namespace's own counters (ss, nstat) in fresh network namespaces."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
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
           "d = {k: b.counters[k] - a.counters[k] for k in ('TcpExt.ListenOverflows', 'Tcp.PassiveOpens')}\n"
           "ports = {m.resource['port']: facts_dict(m.facts) for m in measure(a, b)}\n"
           "print(json.dumps({'deltas': d, 'ports': ports}))\n")


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
    assert inodes(ns, PORT).count(0) >= after  # read after Recv-Q; arrivals go on
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
    return {int(k): v for k, v in sampled(ns, interval)["ports"].items()}


def sampled(ns: Netns, interval: str) -> dict[str, Any]:
    """{"ports": AcceptActivity facts per port, "deltas": the namespace's counters over the same samples}."""
    out: dict[str, Any] = json.loads(ns.run([sys.executable, "-c", MEASURE, interval]).stdout)
    return out


def drop_fraction(ns: Netns, seconds: float) -> tuple[float, int]:
    """Over a window: the namespace's ListenOverflows / (ListenOverflows + PassiveOpens), and the total."""
    lo, po = ns.nstat("TcpExtListenOverflows"), ns.nstat("TcpPassiveOpens")
    end = time.monotonic() + seconds
    poll(lambda: time.monotonic() >= end, seconds + 1, 0.2)  # a measuring window, not a wait for the kernel
    lo, po = ns.nstat("TcpExtListenOverflows") - lo, ns.nstat("TcpPassiveOpens") - po
    return lo / max(lo + po, 1), lo + po


MU, LAMBDA, TOLERANCE, RECOMMENDED_TOLERANCE = 40.0, 36.0, 0.08, 0.02


def test_predicted_drops_and_recommended_backlog_hold_against_the_kernel(ns: Netns, tmp_path: Any) -> None:
    """Poisson arrivals at 36/s against an accept loop of exponential pace 40/s (rho 0.9) and a backlog of 4:
    connwatch's predicted drop fraction for the current backlog is checked against the namespace's own
    ListenOverflows / (ListenOverflows + PassiveOpens) over the next window (within 0.08), then the
    recommended backlog, given to a fresh server under the same load, must keep drops under the 1 % target
    (within 2 points)."""
    first = [ns.python("accept_server.py", "--port", str(PORT), "--backlog", "4", "--rate", str(MU)),
             ns.python("arrivals.py", "--port", str(PORT), "--rate", str(LAMBDA), "--duration", "30", "--hold", "5")]
    assert poll(lambda: ns.nstat("TcpExtListenOverflows") > 0, 10), "a backlog of 4 never overflowed"
    drop_fraction(ns, 3)  # warm-up: re-sent SYNs reach their steady level
    got = sampled(ns, "6")
    d, deltas = got["ports"][str(PORT)], got["deltas"]
    s = d["sizing"]
    assert d["verdict"] in ("burst", "saturated") and d["turned_away"] == deltas["TcpExt.ListenOverflows"] > 0
    # every accepted connection is held open: new accepts + queue growth = the handshakes the namespace counted,
    # within what arrives between a sample's socket dump and its counter read (36/s: 3 in 80 ms; one
    # off by 3 was seen at load 5 on 2 cores)
    admitted = d["accepted_new"] + d["waiting_now"] - d["waiting_before"]
    assert abs(admitted - deltas["Tcp.PassiveOpens"]) <= 3, (admitted, deltas)
    assert s["current_backlog"] == 4 and 0.5 < s["load"] < 2.0 and not s["no_backlog_helps"]
    later, total = drop_fraction(ns, 10)
    assert total > 200 and abs(s["predicted_drop_fraction"] - later) <= TOLERANCE, (s, later)
    backlog = s["recommended_backlog"]
    assert backlog is not None and 4 < backlog <= 4096
    # the same advice in the port's BacklogRejectsByPort alert (check's own two samples)
    # check's own two samples are 3 s apart: at rho 0.9 so short a window can measure arrivals above the
    # accept rate, or drops under the target (CI saw a None once): whatever the window measured, the
    # alert's advice must be the sizing's own (the 6 s window above carries the quantitative checks).
    report = check(ns, tmp_path, "3")
    a = alert(report, "BacklogRejectsByPort", PORT)
    accept = a["detail"]["accept"]
    sizing = accept["sizing"]
    assert accept["verdict"] in ("burst", "saturated") and a["value"] == accept["turned_away"]
    if sizing["no_backlog_helps"]:
        assert sizing["recommended_backlog"] is None and "a bigger backlog will not help" in a["action"]
    elif sizing["recommended_backlog"] is None:  # that window's drops were under the target already
        assert "Raise the backlog" not in a["action"]
    else:
        assert sizing["recommended_backlog"] > 4
        assert f"Raise the backlog to at least {sizing['recommended_backlog']}" in a["action"]
        assert "somaxconn" in a["action"] and "backlog=N" in a["action"] and "511" in a["action"]
    for proc in first:  # the first load ends: the namespace's counters now see only the second server
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    ns.python("accept_server.py", "--port", str(OTHER), "--backlog", str(backlog), "--rate", str(MU))
    ns.python("arrivals.py", "--port", str(OTHER), "--rate", str(LAMBDA), "--duration", "14", "--hold", "3",
              "--seed", "5")
    after, total = drop_fraction(ns, 12)
    print(f"sizing: load {s['load']} ({s['load_with_resends']} with re-sends), predicted {s['predicted_drop_fraction']}"
          f" measured next {later:.4f}; recommended backlog {backlog}: measured {after:.4f} of {total}")
    assert total > 250 and after <= s["target_drop_fraction"] + RECOMMENDED_TOLERANCE, (backlog, after)


def test_stuck_owner_at_its_fd_limit_is_said(ns: Netns, tmp_path: Any) -> None:
    """accept() fails with EMFILE: the queue cannot drain; the verdict is stuck and names the fd limit."""
    ns.python("listener.py", "--port", str(PORT), "--backlog", "16", "--accept", "--max-fds", "64")
    ns.python("arrivals.py", "--port", str(PORT), "--rate", "0", "--duration", "0", "--count", "5", "--hold", "60")
    assert poll(lambda: recv_q(ns, PORT) == 5, 10), recv_q(ns, PORT)
    report = check(ns, tmp_path)
    a = alert(report, "AcceptActivity", PORT)
    d = a["detail"]
    assert d["verdict"] == "stuck" and a["value"] == d["waiting_before"] == d["waiting_now"] == recv_q(ns, PORT) == 5
    [owner] = d["owners"]
    assert owner["at_fd_limit"] and owner["fd_limit"] == 64 and owner["open_fds"] == 64
    assert "holds 64 of its 64 file descriptors: accept() fails with EMFILE" in a["explanation"]
    assert "LimitNOFILE" in a["action"]
