"""/metrics of every sampled namespace (issue 11): netns/container/pod labels, bounded, promtool-clean.

The snapshots are the agent's view of three namespaces: its own, an `ip netns` one (blue) and a Docker
container of a Kubernetes pod (no `ip netns` name: netns:[inode]); each with a listener on port 8080 and
its own counters. The own namespace's series keep the label sets they had before namespaces (an empty
label is no label to Prometheus).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from connwatch.findings import Measurement
from connwatch.model import Container, NetnsInfo, Pod, Snapshot
from connwatch.outputs import prom_netns
from connwatch.outputs.alertmanager import am_alert
from connwatch.outputs.prometheus import AgentStats, MetricsOptions, SnapshotCollector, View
from connwatch.snapshot_json import netns_dict

from .builders import listener, snapshot

Series = dict[str, list[tuple[dict[str, str], float]]]
BLUE = NetnsInfo(4026532101, "blue", pid=4242, command="python3")
POD = NetnsInfo(4026532999, None, Container("docker", "ab" * 32, "checkout"), Pod("0f1e", "shop", "checkout-7d9f"),
                pid=5151, command="nginx")


def _ns_snap(info: NetnsInfo | None, backlog: int, overflows: int, drops: int = 0) -> Snapshot:
    inode = (info.inode if info else 1) % 1000
    snap = snapshot(10.0, (listener(8080, backlog=backlog, drops=drops, inode=inode),),
                    {"TcpExt.ListenOverflows": overflows, "TcpExt.ListenDrops": overflows})
    return dataclasses.replace(snap, netns=info)


def _scrape(col: SnapshotCollector) -> tuple[str, Series]:
    reg = CollectorRegistry()
    reg.register(col)
    text = generate_latest(reg).decode()
    out: Series = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return text, out


def _of(series: Series, name: str, **labels: str) -> float:
    """The one series with exactly these namespace labels (absent = empty) and the other labels given."""
    found = [v for lab, v in series[name]
             if all(lab.get(k, "") == labels.get(k, "") for k in ("netns", "container", "pod"))
             and all(lab.get(k) == want for k, want in labels.items() if k not in ("netns", "container", "pod"))]
    assert len(found) == 1, (name, labels, series.get(name))
    return found[0]


def test_every_namespace_is_exported_with_its_labels() -> None:
    own = _ns_snap(NetnsInfo(4026531840, own=True), 128, 0)
    col = SnapshotCollector(MetricsOptions(legacy=False))
    col.update(View(own, own.listeners, namespaces=(_ns_snap(BLUE, 5, 7, drops=7), _ns_snap(POD, 9, 0))))
    text, series = _scrape(col)
    pod = {"netns": "netns:[4026532999]", "container": "checkout", "pod": "shop/checkout-7d9f"}
    assert _of(series, "connwatch_listener_backlog", port="8080") == 128  # own: no namespace label at all
    assert 'connwatch_listener_backlog{address="0.0.0.0",family="4",port="8080"} 128.0' in text
    assert _of(series, "connwatch_listener_backlog", netns="blue", port="8080") == 5
    assert _of(series, "connwatch_listener_drops_total", netns="blue", port="8080") == 7
    assert _of(series, "connwatch_listener_backlog", port="8080", **pod) == 9
    overflows = "connwatch_netstat_tcpext_listen_overflows_total"
    assert (_of(series, overflows), _of(series, overflows, netns="blue"), _of(series, overflows, **pod)) == (0, 7, 0)
    assert _of(series, "connwatch_sysctl_net_core_somaxconn", netns="blue") == 4096
    assert _of(series, "connwatch_netns_info", inode="4026532999", pid="5151", command="nginx", **pod) == 1
    assert _of(series, "connwatch_namespaces_omitted") == 0
    # a listener poll between full samples: the other namespaces' fresh queues, by inode
    col.update_listeners(own.listeners, {}, AgentStats(), {BLUE.inode: (listener(8080, queue=3, backlog=5),)})
    _text, series = _scrape(col)
    assert _of(series, "connwatch_listener_queue", netns="blue", port="8080") == 3
    assert _of(series, "connwatch_listener_queue", port="8080", **pod) == 0  # not polled: its full sample


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool (Debian package prometheus)")
def test_promtool_finds_nothing_in_the_labelled_scrape() -> None:
    own = _ns_snap(None, 128, 0)
    col = SnapshotCollector(MetricsOptions(legacy=False, kernel_counters="all"))
    col.update(View(own, own.listeners, namespaces=(_ns_snap(BLUE, 5, 7), _ns_snap(POD, 9, 1))))
    text, _series = _scrape(col)
    assert 'netns="blue"' in text and 'pod="shop/checkout-7d9f"' in text
    done = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_namespaces_and_listeners_are_bounded_and_the_rest_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prom_netns, "MAX_NAMESPACES", 2)
    quiet = [_ns_snap(NetnsInfo(4026532200 + i, f"quiet{i}"), 5, 0) for i in range(3)]
    dropping = _ns_snap(NetnsInfo(4026532300, "zz-dropping"), 5, 4, drops=4)
    own = _ns_snap(None, 128, 0)
    col = SnapshotCollector()
    col.update(View(own, own.listeners, namespaces=(*quiet, dropping)))
    _text, series = _scrape(col)
    exported = {lab.get("netns", "") for lab, _v in series["connwatch_listener_backlog"]}
    assert exported == {"", "zz-dropping"}  # the own first, then the one whose listener drops
    assert _of(series, "connwatch_namespaces_omitted") == 3
    assert {lab.get("netns", "") for lab, _v in series["connwatch_netstat_tcpext_listen_overflows_total"]} == exported
    monkeypatch.setattr("connwatch.outputs.prometheus.MAX_LISTENER_GROUPS", 1)
    col.update(View(own, own.listeners, namespaces=(*quiet, dropping)))
    _text, series = _scrape(col)
    assert [lab.get("netns") for lab, _v in series["connwatch_listener_backlog"]] == ["zz-dropping"]
    assert _of(series, "connwatch_listeners_omitted") == 1


def test_attribute_series_and_agent_alerts_name_the_namespace() -> None:
    m = Measurement("BacklogRejectsByPort", {"port": 8080, "netns": POD.key}, f"TCP(8080) in {POD.key}", 12.0,
                    "requests", notes={"netns": netns_dict(POD)})
    own = _ns_snap(None, 128, 0)
    col = SnapshotCollector()
    col.update(View(own, own.listeners, measurements=(m, dataclasses.replace(m, resource={"port": 8080}, notes={}))))
    _text, series = _scrape(col)
    name = "connwatch_attribute_backlog_rejects_by_port"
    assert sorted(lab.get("netns", "") for lab, _v in series[name]) == ["", "netns:[4026532999]"]
    stored = {"alert": {"attribute": "BacklogRejectsByPort", "severity": 2, "severity_name": "High",
                        "resource": f"TCP(8080) in {POD.key}", "port": 8080, "netns": netns_dict(POD),
                        "value": 12.0, "limit": 0.0, "unit": "requests", "explanation": "", "action": "", "text": "",
                        "owner": ""},
              "instance": "node1", "created_at": 1.0, "cleared_at": None, "alert_class": "backlog"}
    labels = am_alert(json.loads(json.dumps(stored)), "firing", 2.0, 60)["labels"]
    assert labels["netns"] == "netns:[4026532999]"  # what the generated rules' inhibit rules match on


def test_without_empty_drops_only_empty_namespace_labels_and_keeps_the_rest() -> None:
    from prometheus_client.core import GaugeMetricFamily

    fam = GaugeMetricFamily("connwatch_x", "doc", labels=["netns", "container", "pod", "port"])
    fam.add_metric(["", "", "", "80"], 1)  # the own namespace: its labels go
    fam.add_metric(["blue", "", "", "81"], 2)  # blue: netns stays, the empty ones go
    fam.add_metric(["netns:[7]", "web", "default/pod", "82"], 3.5)
    plain = GaugeMetricFamily("connwatch_y", "doc", labels=["port"])
    plain.add_metric(["443"], 4)
    kept = plain.samples[0]
    [x, y] = prom_netns.without_empty([fam, plain])
    assert [s.labels for s in x.samples] == [{"port": "80"}, {"netns": "blue", "port": "81"},
                                            {"netns": "netns:[7]", "container": "web", "pod": "default/pod",
                                             "port": "82"}]
    assert [(s.name, s.value, s.timestamp, s.exemplar) for s in x.samples] == [
        ("connwatch_x", 1, None, None), ("connwatch_x", 2, None, None), ("connwatch_x", 3.5, None, None)]
    assert y.samples[0] is kept and type(x.samples[0]) is type(kept)  # (no namespace label: the same sample)
