"""Real kernel: `connwatch check` over every network namespace (issue 11), from the host.

`check --netns all` as root also sees namespaces other tests made at the same time: every assertion
is about the namespaces made here, found by their `ip netns` names. Traffic only on their loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tests.unit.test_delivery import Recorder

from .netns import Netns, netns, poll

PORT = 9300


def _check(tmp_path: Path, *args: str, timeout: float = 120) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "connwatch", "check", "--format", "json", "--state-dir",
                           str(tmp_path / "state"), *args], capture_output=True, text=True, timeout=timeout)
    assert done.stdout, done.stderr
    assert "Traceback" not in done.stderr
    return done.returncode, json.loads(done.stdout)


def _alerts_in(report: dict[str, Any], space: Netns) -> list[dict[str, Any]]:
    return [a for a in report["alerts"] if (a.get("netns") or {}).get("name") == space.name]


def test_three_namespaces_one_flooded_only_that_one_is_alerted_by_name(tmp_path: Path, ns: Netns) -> None:
    with ExitStack() as stack:
        spaces = [ns, stack.enter_context(netns()), stack.enter_context(netns())]
        for space in spaces:
            space.python("listener.py", "--port", str(PORT), "--backlog", "5")
        hot = spaces[0]
        hot.python("flood.py", "--port", str(PORT), "--count", "40", "--hold", "60")
        assert poll(lambda: hot.ss_drops(PORT) >= 20, 15), "the full queue never dropped a SYN"
        before = hot.nstat("TcpExtListenOverflows")
        code, report = _check(tmp_path, "--interval", "2", "--netns", "all")
        after = hot.nstat("TcpExtListenOverflows")
        [alert] = _alerts_in(report, hot)
        assert not _alerts_in(report, spaces[1]) and not _alerts_in(report, spaces[2])
    assert code == 2
    assert alert["attribute"] == "BacklogRejectsByPort" and alert["port"] == PORT
    assert alert["resource"] == f"TCP({PORT}) in netns {hot.name}"
    assert alert["description"].endswith(f"in netns {hot.name}")
    # Judged on that namespace's own counters: its ListenOverflows over the check's interval, which the
    # namespace's own nstat brackets from outside.
    rec = alert["detail"]["reconciliation"]
    assert alert["value"] == rec["host_listen_overflows"] == rec["attributed"] > 0
    assert alert["value"] <= after - before
    names = {n["name"] for n in report["namespaces"]}
    ours = {s.name for s in spaces}  # other tests' namespaces may listen on the same port
    assert ours <= names
    rows = [x for x in report["listeners"] if x.get("netns", {}).get("name") in ours and x["port"] == PORT]
    assert len(rows) == 3 and all(r["backlog"] == 5 for r in rows)


def _time_wait(space: Netns, count: int, port: int) -> None:
    client = (f"import socket\nsrv = socket.create_server(('127.0.0.1', {port}), backlog=64)\n"
              f"for _ in range({count}):\n"
              f"    c = socket.create_connection(('127.0.0.1', {port}), timeout=5); a, _ = srv.accept()\n"
              "    c.close(); a.recv(1); a.close()\n")
    space.run([sys.executable, "-c", client], timeout=60)


def test_each_namespace_is_judged_against_its_own_port_range(tmp_path: Path, ns: Netns) -> None:
    with netns() as wide:
        for space, high in ((ns, "40099"), (wide, "40999")):
            space.sysctl("net.ipv4.ip_local_port_range", f"40000 {high}")
            space.sysctl("net.ipv4.tcp_tw_reuse", "0")
            _time_wait(space, 60, PORT + 1)
        _code, report = _check(tmp_path, "--interval", "0.5", "--netns", "all")
        narrow_alerts = _alerts_in(report, ns)
        wide_alerts = _alerts_in(report, wide)
    # 60 TIME_WAIT toward one destination: 60 % of 100 ports (Medium), 6 % of 1,000 ports (nothing).
    [usage] = [a for a in narrow_alerts if a["attribute"] == "EphemeralPortUsage"]
    assert usage["value"] == 60.0 and usage["detail"]["usable_ports"] == 100
    assert not [a for a in wide_alerts if a["attribute"].startswith("EphemeralPort")]


def test_one_namespace_never_clears_another_namespaces_alert(tmp_path: Path, ns: Netns) -> None:
    config = tmp_path / "rules.toml"
    config.write_text("[settings]\nclear_after = 1\n")
    with netns() as quiet:
        ns.python("listener.py", "--port", str(PORT), "--backlog", "5")
        quiet.python("listener.py", "--port", str(PORT), "--backlog", "5")
        ns.python("flood.py", "--port", str(PORT), "--count", "40", "--hold", "60")
        assert poll(lambda: ns.ss_drops(PORT) >= 20, 15)
        _code, first = _check(tmp_path, "--interval", "1", "--netns", ns.name, "--config", str(config))
        [alert] = _alerts_in(first, ns)
        for _ in range(2):  # the quiet namespace judged clean twice, clear_after = 1
            code, report = _check(tmp_path, "--interval", "0.5", "--netns", quiet.name, "--config", str(config))
            assert code == 0 and not report["cleared"]
    listed = subprocess.run([sys.executable, "-m", "connwatch", "alerts", "--format", "json", "--state-dir",
                             str(tmp_path / "state")], capture_output=True, text=True, timeout=60)
    active = json.loads(listed.stdout)["alerts"]
    assert [a["id"] for a in active] == [alert["id"]] and active[0]["state"] == "active"


def test_runs_under_ip_netns_exec_sharing_a_state_dir_keep_their_own_alerts(tmp_path: Path, ns: Netns) -> None:
    """`ip netns exec NAME connwatch check` keys its own namespace's alerts without a namespace (TCP(PORT)), as the
    host's check keys the host's: sharing one state dir, a healthy namespace's runs must neither show another's
    alert as theirs nor clear it (alerts/store.py scopes)."""
    config = tmp_path / "rules.toml"
    config.write_text("[settings]\nclear_after = 1\n")
    state = str(tmp_path / "state")
    common = ("--format", "json", "--state-dir", state, "--config", str(config))
    with netns() as quiet:
        ns.python("listener.py", "--port", str(PORT), "--backlog", "5")
        quiet.python("listener.py", "--port", str(PORT), "--backlog", "5")
        ns.python("flood.py", "--port", str(PORT), "--count", "40", "--hold", "60")
        assert poll(lambda: ns.ss_drops(PORT) >= 20, 15), "the full queue never dropped a SYN"
        before = ns.nstat("TcpExtListenOverflows")
        hot = ns.connwatch("check", "--interval", "1", *common)
        after = ns.nstat("TcpExtListenOverflows")
        [alert] = [a for a in json.loads(hot.stdout)["alerts"] if a["attribute"] == "BacklogRejectsByPort"]
        assert alert["resource"] == f"TCP({PORT})" and 0 < alert["value"] <= after - before
        for _ in range(2):  # clear_after = 1: one clean judgement of the same key would clear it
            calm = quiet.connwatch("check", "--interval", "0.5", *common)
            report = json.loads(calm.stdout)
            assert calm.returncode == 0, calm.stdout
            assert report["alerts"] == [] and report["cleared"] == []
        from_quiet = json.loads(quiet.connwatch("alerts", "--all", "--format", "json", "--state-dir", state).stdout)
        from_hot = json.loads(ns.connwatch("alerts", "--all", "--format", "json", "--state-dir", state).stdout)
        shown = json.loads(quiet.connwatch("alerts", "show", str(alert["id"]), "--format", "json",
                                           "--state-dir", state).stdout)
    # Listed wherever `alerts` runs (the state dir holds it), still active, with the scope of the run that
    # recorded it: the hot namespace's inode, name and cookie.
    [(scope, state_now)] = {(a["scope"], a["state"]) for a in from_quiet["alerts"] if a["id"] == alert["id"]}
    assert state_now == "active" and scope.startswith("netns ") and f" {ns.name}" in scope
    assert from_hot["alerts"] == from_quiet["alerts"]
    assert [a["id"] for a in shown["alerts"]] == [alert["id"]]


def test_a_namespace_made_again_under_its_name_is_a_new_scope(ns: Netns) -> None:
    """`ip netns del x; ip netns add x` usually gets the same nsfs inode back: the cookie keeps the new namespace
    from inheriting the alerts runs in the old one recorded (alerts/store.py scopes)."""
    probe = [sys.executable, "-c", "from connwatch.sources.netns import run_scope; print(run_scope())"]
    first = ns.run(probe).stdout.strip()
    subprocess.run(["ip", "netns", "del", ns.name], check=True, capture_output=True)
    subprocess.run(["ip", "netns", "add", ns.name], check=True, capture_output=True)  # (the fixture deletes it)
    again = ns.run(probe).stdout.strip()
    host = subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip()
    assert first.startswith("netns ") and f" {ns.name}" in first and again.startswith("netns ")
    assert again != first and host == ""


def test_a_namespace_deleted_between_the_samples_raises_nothing(tmp_path: Path, ns: Netns) -> None:
    gone = subprocess.run(["ip", "netns", "add", f"{ns.name}-gone"], capture_output=True)
    assert gone.returncode == 0
    try:
        subprocess.run(["ip", "netns", "exec", f"{ns.name}-gone", "ip", "link", "set", "lo", "up"], check=True)
        proc = subprocess.Popen([sys.executable, "-m", "connwatch", "check", "--format", "json", "--interval", "3",
                                 "--netns", "all", "--state-dir", str(tmp_path / "state")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)  # the first sample is taken (bounded: the check waits 3 s before the second)
        subprocess.run(["ip", "netns", "del", f"{ns.name}-gone"], capture_output=True)
        out, err = proc.communicate(timeout=120)
    finally:
        subprocess.run(["ip", "netns", "del", f"{ns.name}-gone"], capture_output=True)
    report = json.loads(out)
    assert "Traceback" not in err and proc.returncode in (0, 1, 2)
    assert not [a for a in report["alerts"] if (a.get("netns") or {}).get("name") == f"{ns.name}-gone"]
    assert f"{ns.name}-gone" not in {n["name"] for n in report["namespaces"]}


def test_a_snapshot_of_every_namespace_is_analysable_offline(tmp_path: Path, ns: Netns) -> None:
    """`snapshot --netns all` on the host, then `analyze` of that file: the flooded namespace's full queue
    and its rejects since the listener opened are found and named, judged on that namespace's counters."""
    ns.python("listener.py", "--port", str(PORT), "--backlog", "5")
    ns.python("flood.py", "--port", str(PORT), "--count", "40", "--hold", "60")
    assert poll(lambda: ns.ss_drops(PORT) >= 20, 15)
    snap = subprocess.run([sys.executable, "-m", "connwatch", "snapshot", "--netns", "all"], capture_output=True,
                          text=True, timeout=120)
    assert snap.returncode == 0, snap.stderr
    capture = tmp_path / "host.json"
    capture.write_text(snap.stdout)
    raw = json.loads(snap.stdout)
    [mine] = [x for x in raw["namespaces"] if x["netns"]["name"] == ns.name]
    done = subprocess.run([sys.executable, "-m", "connwatch", "analyze", "--format", "json", str(capture)],
                          capture_output=True, text=True, timeout=120)
    report = json.loads(done.stdout)
    [alert] = _alerts_in(report, ns)
    assert alert["attribute"] == "BacklogRejectsByPort" and alert["basis"] == "since the listener opened"
    drops = sum(x["drops"] for x in mine["listeners"] if x["port"] == PORT)
    overflows = mine["counters"]["TcpExt.ListenOverflows"]
    assert alert["value"] == min(drops, overflows) > 0  # never more than that namespace's own counter
    assert alert["resource"] == f"TCP({PORT}) in netns {ns.name}"


def test_the_agent_judges_every_namespace_and_names_the_flooded_one(tmp_path: Path, ns: Netns) -> None:
    import os
    import signal

    ns.python("listener.py", "--port", str(PORT), "--backlog", "5")
    agent = subprocess.Popen([sys.executable, "-m", "connwatch", "run", "--netns", "all", "--interval", "1",
                              "--listener-interval", "0.5", "--listen", "127.0.0.1:0", "--state-dir",
                              str(tmp_path / "state")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ns.python("flood.py", "--port", str(PORT), "--count", "40", "--hold", "60")

        def mine() -> list[dict[str, Any]]:
            done = subprocess.run([sys.executable, "-m", "connwatch", "alerts", "--format", "json", "--state-dir",
                                   str(tmp_path / "state")], capture_output=True, text=True, timeout=30)
            return [a for a in json.loads(done.stdout or '{"alerts": []}')["alerts"]
                    if (a.get("netns") or {}).get("name") == ns.name]

        assert poll(lambda: bool(mine()), 30, 0.5), "the agent never alerted the flooded namespace"
        [alert] = mine()
        assert alert["attribute"] == "BacklogRejectsByPort" and alert["resource"] == f"TCP({PORT}) in netns {ns.name}"
        # The value is that namespace's own overflows (a fresh namespace: its counter started at 0), never
        # more than it counted, and no other namespace's drops are in it.
        overflows = ns.nstat("TcpExtListenOverflows")
        assert 0 < alert["value"] <= overflows, (alert["value"], overflows)
        assert alert["unit"] == "requests"
    finally:
        os.kill(agent.pid, signal.SIGTERM)
        _out, err = agent.communicate(timeout=30)
    assert agent.returncode == 0 and "Traceback" not in err


def test_the_agent_sees_a_queue_fill_and_drain_between_full_samples_in_another_namespace(
        tmp_path: Path, ns: Netns) -> None:
    """The listener polls cover the other namespaces too: a queue that filled (6 of 5) and drained before
    the next full sample is still judged at its peak, in that namespace's alert."""
    import os
    import re
    import signal
    import socket
    import urllib.request

    slow = ("import socket, sys, time\n"
            f"s = socket.create_server(('127.0.0.1', {PORT + 2}), backlog=5)\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"  # wait until told: the queue fills meanwhile
            "held = []\n"
            "s.settimeout(0.5)\n"
            "end = time.monotonic() + 30\n"
            "while time.monotonic() < end:\n"
            "    try:\n"
            "        held.append(s.accept()[0])\n"
            "    except OSError:\n"
            "        pass\n")
    server = ns.popen([sys.executable, "-c", slow], stdin=subprocess.PIPE)
    assert server.stdout is not None and server.stdin is not None
    assert server.stdout.readline().startswith("READY")
    with socket.socket() as probe:  # a free loopback port for the agent's /metrics
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    agent = subprocess.Popen([sys.executable, "-m", "connwatch", "run", "--netns", "all", "--interval", "3",
                              "--listener-interval", "0.2", "--listen", f"127.0.0.1:{port}", "--state-dir",
                              str(tmp_path / "state")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def polls(kind: str = "listeners") -> int:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        except OSError:
            return -1
        m = re.search(rf'^connwatch_samples_total\{{kind="{kind}"\}} ([0-9.e+]+)$', text, re.M)
        return int(float(m.group(1))) if m else -1

    try:
        # The first full sample is the baseline of the drop counters: drops before it cannot be placed in
        # time (the agent then rightly raises AcceptQueueFill alone), so flood only after it.
        assert poll(lambda: polls("full") >= 1, 20), "the agent did not start"
        ns.python("flood.py", "--port", str(PORT + 2), "--count", "10", "--hold", "60")
        assert poll(lambda: _recv_q(ns, PORT + 2) == "6" and ns.ss_drops(PORT + 2) > 0, 10)
        seen_full = polls()
        assert poll(lambda: polls() >= seen_full + 2, 30)  # two listener polls while it was full (slower with
        # many namespaces on the host: the agent samples them all)
        server.stdin.write("go\n")
        server.stdin.flush()  # it drains now; the next full sample finds it empty
        assert poll(lambda: _recv_q(ns, PORT + 2) == "0", 10)

        def mine() -> list[dict[str, Any]]:
            got = subprocess.run([sys.executable, "-m", "connwatch", "alerts", "--format", "json", "--state-dir",
                                  str(tmp_path / "state")], capture_output=True, text=True, timeout=30)
            return [a for a in json.loads(got.stdout or '{"alerts": []}')["alerts"]
                    if (a.get("netns") or {}).get("name") == ns.name]

        assert poll(lambda: bool(mine()), 30, 0.5), "no alert for the namespace"
        [alert] = mine()
        peaks = [x["value"] for x in alert["detail"].get("folded", []) if x["attribute"] == "AcceptQueueFill"]
        assert alert["attribute"] == "BacklogRejectsByPort" and peaks == [120.0], alert["detail"].get("folded")
    finally:
        os.kill(agent.pid, signal.SIGTERM)
        agent.communicate(timeout=30)


def _recv_q(ns: Netns, port: int) -> str:
    out = ns.run(["ss", "-ltnH", f"sport = :{port}"]).stdout.split()
    return out[1] if len(out) > 1 else ""


def _listed(tmp_path: Path, *args: str) -> list[dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "connwatch", "alerts", "--format", "json", "--state-dir",
                           str(tmp_path / "state"), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return list(json.loads(done.stdout)["alerts"])


def test_an_alert_of_a_namespace_deleted_clears_saying_why(tmp_path: Path, ns: Netns) -> None:
    """A container gone while its alert was active: no judgement of it ever comes again, so its alert stayed
    active (and firing) for ever. Now each check that lists every namespace counts it clean: it clears after
    clear_after (2) checks, saying why; the other namespace's alert is not touched."""
    config = tmp_path / "rules.toml"
    config.write_text("[settings]\nclear_after = 2\n")
    with netns() as doomed:
        for space in (ns, doomed):
            space.python("listener.py", "--port", str(PORT), "--backlog", "5")
            space.python("flood.py", "--port", str(PORT), "--count", "40", "--hold", "60")
        assert poll(lambda: ns.ss_drops(PORT) >= 20 and doomed.ss_drops(PORT) >= 20, 15)
        for space in (ns, doomed):
            _code, report = _check(tmp_path, "--interval", "1", "--netns", space.name, "--config", str(config))
            [raised] = _alerts_in(report, space)
            # its value: that namespace's own overflows (a fresh namespace: its counter started at 0)
            assert raised["attribute"] == "BacklogRejectsByPort"
            assert 0 < raised["value"] <= space.nstat("TcpExtListenOverflows")
        name = doomed.name
    ids = {a["netns"]["name"]: a["id"] for a in _listed(tmp_path)}
    assert set(ids) == {ns.name, name}
    _code, report = _check(tmp_path, "--interval", "0.2", "--netns", ns.name, "--config", str(config))
    assert not report["cleared"]  # the first check without it: one clean sample of two
    [counting] = [a for a in _listed(tmp_path) if a["id"] == ids[name]]
    assert counting["state"] == "active" and counting["clean_samples"] == 1
    _code, report = _check(tmp_path, "--interval", "0.2", "--netns", ns.name, "--config", str(config))
    [cleared] = report["cleared"]
    assert cleared["id"] == ids[name]
    assert cleared["detail"]["cleared_because"] == "its network namespace no longer exists"
    still = _listed(tmp_path)
    assert [a["id"] for a in still] == [ids[ns.name]] and still[0]["clean_samples"] == 0
    shown = subprocess.run([sys.executable, "-m", "connwatch", "alerts", "show", str(ids[name]), "--state-dir",
                            str(tmp_path / "state")], capture_output=True, text=True, timeout=60, env={
                                **os.environ, "COLUMNS": "200"})
    assert f"netns {name}" in shown.stdout and "its network namespace no longer exists" in shown.stdout


def test_a_check_of_its_own_namespace_never_clears_another_namespaces_alert(tmp_path: Path, ns: Netns) -> None:
    """`--netns own` lists no namespace: it cannot tell one gone from one not looked at, and steps none."""
    config = tmp_path / "rules.toml"
    config.write_text("[settings]\nclear_after = 1\n")
    ns.python("listener.py", "--port", str(PORT), "--backlog", "5")
    ns.python("flood.py", "--port", str(PORT), "--count", "40", "--hold", "60")
    assert poll(lambda: ns.ss_drops(PORT) >= 20, 15)
    _check(tmp_path, "--interval", "1", "--netns", ns.name, "--config", str(config))
    [alert] = _listed(tmp_path)
    for _ in range(2):
        _code, report = _check(tmp_path, "--interval", "0.2", "--config", str(config))
        assert not report["cleared"]
    assert [(a["id"], a["clean_samples"]) for a in _listed(tmp_path)] == [(alert["id"], 0)]


def test_the_agent_clears_the_alert_of_a_namespace_deleted(tmp_path: Path) -> None:
    """The agent (`--netns all`): a namespace deleted while alerted, its alert clears after clear_after samples
    with the reason, in the store and in the log; it never resolved before."""
    import signal

    config = tmp_path / "rules.toml"
    config.write_text("[settings]\nclear_after = 2\n")
    alertmanager = Recorder()  # (tests/unit/test_delivery.py: records what is posted to it)
    agent = None
    try:
        with netns() as doomed:
            doomed.python("listener.py", "--port", str(PORT), "--backlog", "5")
            agent = subprocess.Popen([sys.executable, "-m", "connwatch", "run", "--netns", "all", "--interval", "1",
                                      "--listener-interval", "0.5", "--listen", "127.0.0.1:0", "--config", str(config),
                                      "--alertmanager", alertmanager.url, "--state-dir", str(tmp_path / "state")],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            doomed.python("flood.py", "--port", str(PORT), "--count", "40", "--hold", "60")
            name = doomed.name

            def mine(state: str) -> list[dict[str, Any]]:
                return [a for a in _listed(tmp_path, "--all") if a["state"] == state
                        and (a.get("netns") or {}).get("name") == name]

            assert poll(lambda: bool(mine("active")), 30, 0.5), "the agent never alerted the flooded namespace"
            [alert] = mine("active")
            assert 0 < alert["value"] <= doomed.nstat("TcpExtListenOverflows")  # that namespace's own counter
        assert poll(lambda: bool(mine("cleared")), 30, 0.5), "the alert of the deleted namespace never cleared"
        [cleared] = mine("cleared")
        assert cleared["id"] == alert["id"] and cleared["clean_samples"] == 2
        assert cleared["detail"]["cleared_because"] == "its network namespace no longer exists"

        def resolved() -> list[dict[str, Any]]:  # Alertmanager told: its endsAt is the time it cleared
            return [x for r in list(alertmanager.requests) if r.get("method") != "GET" for x in r["body"]
                    if x["labels"]["resource"] == f"TCP({PORT}) in netns {name}"
                    and x["endsAt"][:19] == cleared["cleared_at"][:19]]  # (the JSON's time is to the second)

        assert poll(lambda: bool(resolved()), 30, 0.5), "Alertmanager was never told the alert resolved"
    finally:
        alertmanager.shutdown()
        if agent is not None:
            os.kill(agent.pid, signal.SIGTERM)
            _out, err = agent.communicate(timeout=30)
    assert agent.returncode == 0 and "Traceback" not in err
    assert f"cleared (alert {alert['id']}," in err and "its network namespace no longer exists" in err

