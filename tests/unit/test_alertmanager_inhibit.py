"""A real Alertmanager with the inhibit rules `connwatch rules --format prometheus` prints: one unsuppressed
alert per problem, whether the tiers come from the generated rules or the agent, or both deliver."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connwatch.outputs.promrules import inhibit_rules

AM_BIN = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = pytest.mark.skipif(AM_BIN is None, reason="needs Alertmanager (Debian package prometheus-alertmanager)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


@pytest.fixture
def am(tmp_path: Path) -> Iterator[str]:
    assert AM_BIN is not None
    config = {"route": {"receiver": "null"}, "receivers": [{"name": "null"}], "inhibit_rules": inhibit_rules()}
    (tmp_path / "am.yml").write_text(json.dumps(config))  # JSON is YAML
    port = _free_port()
    proc = subprocess.Popen([AM_BIN, f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                            stdout=subprocess.DEVNULL, stderr=(tmp_path / "am.log").open("w"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(url + "/-/ready", timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "am.log").read_text()
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _post(url: str, alerts: list[dict[str, Any]]) -> None:
    req = urllib.request.Request(url + "/api/v2/alerts", data=json.dumps(alerts).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(req, timeout=5).close()


def _alert(severity: str, level: str, origin: str, instance: str, **labels: str) -> dict[str, Any]:
    return {"labels": {"alertname": "BacklogRejectsByPort", "severity": severity, "connwatch_severity": level,
                       "connwatch_origin": origin, "instance": instance, "host": "web-1", **labels}}


def _states(url: str) -> dict[tuple[str, str, str], str]:
    return {(a["labels"]["connwatch_origin"], a["labels"]["connwatch_severity"], a["labels"].get("port", "")):
            a["status"]["state"] for a in _get(url + "/api/v2/alerts")}


def test_one_active_alert_per_problem_through_inhibition(am: str) -> None:
    _post(am, [
        # Prometheus: both tiers of port 8080 fire (the lower one never flaps), and the low tier of 8081.
        _alert("critical", "high", "prometheus", "web-1:9815", port="8080"),
        _alert("warning", "medium", "prometheus", "web-1:9815", port="8080"),
        _alert("warning", "medium", "prometheus", "web-1:9815", port="8081"),
        # The agent delivers the same problem of 8080 itself, under its own instance label.
        _alert("critical", "high", "agent", "web-1", port="8080"),
    ])
    want = {("prometheus", "high", "8080"): "suppressed", ("prometheus", "medium", "8080"): "suppressed",
            ("prometheus", "medium", "8081"): "active", ("agent", "high", "8080"): "active"}
    deadline = time.monotonic() + 20
    while _states(am) != want and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _states(am) == want
