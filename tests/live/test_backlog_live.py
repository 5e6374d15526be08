"""Real kernel: a listener that never accepts, flooded, next to a healthy one, in a fresh netns."""

from __future__ import annotations

import json
import sys
from typing import Any

from .netns import Netns, poll

HOT, HEALTHY = 8080, 8081


def _check(ns: Netns, tmp_path: Any, *extra: str) -> tuple[int, dict[str, Any]]:
    done = ns.connwatch("check", "--interval", "3", "--format", "json", "--state-dir", str(tmp_path), *extra)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def _alerts(report: dict[str, Any], attribute: str, port: int | None = None) -> list[dict[str, Any]]:
    return [a for a in report["alerts"] if a["attribute"] == attribute and (port is None or a["port"] == port)]


def _healthy_traffic(ns: Netns) -> None:
    client = ("import socket\nfor _ in range(20):\n"
              f"    s = socket.create_connection(('127.0.0.1', {HEALTHY}), timeout=5); s.close()\n")
    ns.run([sys.executable, "-c", client])


def test_flooded_listener_alerts_with_kernel_drop_counts(ns: Netns, tmp_path: Any) -> None:
    ns.python("listener.py", "--port", str(HOT), "--backlog", "5")
    ns.python("listener.py", "--port", str(HEALTHY), "--backlog", "128", "--accept")
    _healthy_traffic(ns)
    ns.python("flood.py", "--port", str(HOT), "--count", "60", "--hold", "60")
    assert poll(lambda: ns.ss_drops(HOT) > 0, 10), "the full queue never dropped a SYN"
    before = ns.ss_drops(HOT)
    host_before = ns.nstat("TcpExtListenDrops")
    code, report = _check(ns, tmp_path)
    after = ns.ss_drops(HOT)
    assert code == 2, report  # AcceptQueueFill > 100 % is severity 2 (High) -> CRITICAL
    [alert] = _alerts(report, "BacklogRejectsByPort", HOT)
    hot = [x for x in report["listeners"] if x["port"] == HOT]
    # The value is exactly the listeners' drop-counter delta between the two samples...
    assert alert["value"] == sum(x["drops_delta"] for x in hot) > 0
    # ...which the kernel's own counter brackets from outside.
    assert before <= hot[0]["drops"] - alert["value"] and hot[0]["drops"] <= after
    # In this namespace only that listener drops, every drop a SYN-time overflow: the namespace's own
    # ListenOverflows is fully attributed to it, and nothing of the listener's counter is left over.
    rec = report["reconciliation"]
    assert rec["host_listen_overflows"] == rec["attributed"] == rec["host_listen_drops"] == alert["value"]
    assert rec["unattributed"] == 0 and rec["listener_drops"] == alert["value"]
    assert alert["detail"]["rejects"]["accept_queue_overflows"] == alert["value"]
    assert alert["detail"]["not_rejections"] == {"deferred_accept": 0, "double_counted": 0, "other": 0}
    assert alert["unit"] == "requests"
    assert ns.nstat("TcpExtListenDrops") - host_before >= alert["value"]
    assert alert["resource"] == f"TCP({HOT})" and alert["severity"] in (2, 3)
    assert alert["description"].startswith(f"TCP({HOT}) BacklogRejectsByPort High, ")
    assert "It persists" in alert["explanation"] and "asked listen() for a backlog of 5" in alert["explanation"]
    assert "listener.py" in alert["owner"] or "python" in alert["owner"]
    # One problem, one alert: the full queue (120 %, High) is a fact of the rejects alert, which takes its
    # severity; the host-wide ListenOverflows it explains is not an alert of its own either.
    assert [a["attribute"] for a in report["alerts"]] == ["BacklogRejectsByPort"] and alert["severity"] == 2
    [fill] = [m for m in report["measurements"] if m["attribute"] == "AcceptQueueFill" and m["port"] == HOT]
    assert fill["value"] == 120.0 and fill["folded_into"] == f"BacklogRejectsByPort TCP({HOT})"
    assert "AcceptQueueFill 120 % (limit 100, High)" in alert["explanation"]
    assert not [a for a in report["alerts"] if a["port"] == HEALTHY]
    healthy = [x for x in report["listeners"] if x["port"] == HEALTHY]
    assert healthy and healthy[0]["drops"] == 0 and healthy[0]["backlog"] == 128


def test_backlog_capped_by_namespace_somaxconn(ns: Netns, tmp_path: Any) -> None:
    ns.sysctl("net.core.somaxconn", "16")
    ns.python("listener.py", "--port", str(HOT), "--backlog", "100")
    ns.python("flood.py", "--port", str(HOT), "--count", "60", "--hold", "60")
    assert poll(lambda: ns.ss_drops(HOT) > 0, 10)
    code, report = _check(ns, tmp_path)
    assert code == 2
    [alert] = _alerts(report, "BacklogRejectsByPort", HOT)
    [lst] = [x for x in report["listeners"] if x["port"] == HOT]
    assert lst["backlog"] == 16 and lst["queue"] == 17
    assert "equals net.core.somaxconn (16)" in alert["explanation"]
    assert "capped by somaxconn" in alert["explanation"]
    assert "net.core.somaxconn" in alert["action"] and "restart" in alert["action"]


def test_history_and_nagios_output(ns: Netns, tmp_path: Any) -> None:
    ns.python("listener.py", "--port", str(HOT), "--backlog", "5")
    ns.python("flood.py", "--port", str(HOT), "--count", "40", "--hold", "60")
    assert poll(lambda: ns.ss_drops(HOT) > 0, 10)
    done = ns.connwatch("check", "--interval", "2", "--format", "nagios", "--state-dir", str(tmp_path))
    assert done.returncode == 2
    assert done.stdout.startswith("CONNWATCH CRITICAL - ")
    assert f"TCP({HOT})" in done.stdout and "|" in done.stdout
    listed = ns.connwatch("alerts", "--format", "json", "--state-dir", str(tmp_path))
    assert listed.returncode == 0, listed.stderr
    alerts = json.loads(listed.stdout)["alerts"]
    rejects = [a for a in alerts if a["attribute"] == "BacklogRejectsByPort"]
    assert rejects and rejects[0]["occurrences"] == 1
    shown = ns.connwatch("alerts", "show", str(rejects[0]["id"]), "--state-dir", str(tmp_path))
    assert shown.returncode == 0
    for heading in ("Alert Description", "Alert History", "Number of occurrences", "Severity",
                    "Alert Text", "Alert Explanation", "User Action"):
        assert heading in shown.stdout
    missing = ns.connwatch("alerts", "show", "999", "--state-dir", str(tmp_path))
    assert missing.returncode == 3 and "no alert with ID 999" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_owner_at_fd_limit_is_named_as_the_cause(ns: Netns, tmp_path: Any) -> None:
    ns.python("listener.py", "--port", str(HOT), "--backlog", "8", "--accept", "--max-fds", "64")
    ns.python("flood.py", "--port", str(HOT), "--count", "30", "--hold", "60")
    assert poll(lambda: ns.ss_drops(HOT) > 0, 10), "accept() kept up although every fd was in use"
    code, report = _check(ns, tmp_path)
    assert code == 2
    [alert] = _alerts(report, "BacklogRejectsByPort", HOT)
    [lst] = [x for x in report["listeners"] if x["port"] == HOT]
    assert lst["owner"]["fd_limit"] == 64 and lst["owner"]["open_fds"] == 64
    assert "holds 64 of its 64 file descriptors: accept() fails with EMFILE" in alert["explanation"]
    assert "LimitNOFILE" in alert["action"]
