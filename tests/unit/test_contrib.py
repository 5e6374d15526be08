"""contrib/: the Grafana dashboard queries only series the agent exports, in valid PromQL; the unit is sane."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

from connwatch.model import DestinationUsage, SocketSummary, SourceStatus, SourceTable, SourceUsage
from connwatch.outputs.prometheus import AgentStats, MetricsOptions, SnapshotCollector, View

from .builders import listener, snapshot
from .test_prometheus import _alert

CONTRIB = Path(__file__).parents[2] / "contrib"


def _exported_names() -> set[str]:
    summary = SocketSummary(10, {"ESTABLISHED": 10}, (DestinationUsage("a", "b", 1, {"ESTABLISHED": 1}),),
                            SourceTable.of((SourceUsage("192.0.2.3", 80, {"ESTABLISHED": 1}),)))
    counters = {"TcpExt.ListenDrops": 1, "TcpExt.ListenOverflows": 1, "TcpExt.TCPReqQFullDrop": 0}
    snap = snapshot(1.0, (listener(80, drops=1),), counters, sockets=summary)
    snap = dataclasses.replace(snap, statuses=(SourceStatus("sysctl", True),),
                               sysctls=dataclasses.replace(snap.sysctls, ip_local_port_range=(32768, 60999)))
    col = SnapshotCollector(MetricsOptions(legacy=False))  # the dashboard must outlive the 0.1 names
    col.update(View(snap, snap.listeners, alerts=(_alert(80),), stats=AgentStats(
        source_errors={"sysctl": 1}, sample_seconds={"full": 0.1}, pending={"r": 1}, sent={"r": 1},
        failures={"r": 1}, samples={"full": 1})))
    registry = CollectorRegistry()
    registry.register(col)
    ProcessCollector(namespace="", registry=registry)
    text = generate_latest(registry).decode()
    return {line.split("{")[0].split()[0] for line in text.splitlines() if line and not line.startswith("#")}


def _dashboard_exprs() -> list[str]:
    dash = json.loads((CONTRIB / "grafana-connwatch.json").read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def test_dashboard_uses_only_exported_series() -> None:
    names = _exported_names()
    used = {m for e in _dashboard_exprs() for m in re.findall(r"\b(?:connwatch|process)_[a-z_]+", e)}
    assert used and used <= names, used - names


def test_titles_say_what_the_queries_show_and_each_axis_has_one_unit() -> None:
    dash = json.loads((CONTRIB / "grafana-connwatch.json").read_text())
    for panel in dash["panels"]:
        tops = {int(n) for t in panel.get("targets", []) for n in re.findall(r"topk\((\d+),", t["expr"])}
        said = {int(n) for n in re.findall(r"top (\d+)", panel["title"])}
        assert said == tops, panel["title"]
        if panel["title"] == "Agent: CPU and memory":  # cores left, bytes right: never on one axis
            [override] = panel["fieldConfig"]["overrides"]
            props = {p["id"]: p["value"] for p in override["properties"]}
            assert props == {"unit": "bytes", "custom.axisPlacement": "right", "custom.axisLabel": "resident memory"}
        assert not any("2^20" in t["expr"] for t in panel.get("targets", []))


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool (Debian package prometheus)")
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(_dashboard_exprs()):
        concrete = expr.replace("$__rate_interval", "1m").replace("$instance", ".*")
        lines += [f"      - record: dashboard:q{i}", f"        expr: {json.dumps(concrete)}"]
    path = tmp_path / "dash.yml"
    path.write_text("\n".join(lines) + "\n")
    done = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_systemd_unit_grants_only_the_read_capabilities() -> None:
    unit = (CONTRIB / "connwatch.service").read_text()
    caps = re.findall(r"^(?:CapabilityBoundingSet|AmbientCapabilities)=(.*)$", unit, re.M)
    assert caps == ["CAP_DAC_READ_SEARCH CAP_SYS_PTRACE"] * 2
    for setting in ("DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict", "ExecReload=/bin/kill -HUP",
                    "--listen 127.0.0.1:9815", "StateDirectory=connwatch"):
        assert setting in unit
    if shutil.which("systemd-analyze"):
        done = subprocess.run(["systemd-analyze", "verify", str(CONTRIB / "connwatch.service")],
                              capture_output=True, text=True, timeout=60)
        problems = [x for x in done.stderr.splitlines() if "is not executable" not in x and x.strip()]
        assert not problems, problems
