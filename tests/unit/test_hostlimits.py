"""Host limits: parsers on real captured files (tests/fixtures/hostlimits) and the measurements' values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from connwatch.attributes.hostlimits import measure
from connwatch.attributes.registry import spec
from connwatch.errors import ParseError
from connwatch.findings import Finding
from connwatch.model import HostInfo, Snapshot, Sysctls
from connwatch.parsers.hostlimits import parse_int_triple, parse_nf_conntrack_stat

FIX = Path(__file__).parents[1] / "fixtures" / "hostlimits"


def _text(name: str) -> str:
    return (FIX / name).read_text()


def test_nf_conntrack_stat_real_capture() -> None:
    stats = parse_nf_conntrack_stat(_text("nf_conntrack.kernel-6.18"), "nf_conntrack")
    assert stats["entries"] == 20 and stats["cpus"] == 2  # entries is printed per CPU, not summed
    assert stats["drop"] == stats["early_drop"] == stats["insert_failed"] == 0


def test_nf_conntrack_stat_sums_per_cpu_columns_and_rejects_bad_rows() -> None:
    text = _text("nf_conntrack.kernel-6.18").replace("00000014  00000000 00000000", "00000014  00000000 0000000a", 1)
    assert parse_nf_conntrack_stat(text, "x")["found"] == 10
    with pytest.raises(ParseError, match="hex columns") as bad:
        parse_nf_conntrack_stat(text + "00000001 00000002\n", "x")
    assert bad.value.line == 4
    with pytest.raises(ParseError, match="not a hex number"):
        parse_nf_conntrack_stat(text.replace("0000000a", "zz", 1), "x")
    with pytest.raises(ParseError, match="header"):
        parse_nf_conntrack_stat("00000000 00000000\n", "x")


def test_triples() -> None:
    low, pressure, high = parse_int_triple(_text("tcp_mem.kernel-6.18"), "tcp_mem")
    assert 0 < low < pressure < high
    allocated, free, file_max = parse_int_triple(_text("file-nr.kernel-6.18"), "file-nr")
    assert 0 < allocated < file_max and free == 0
    with pytest.raises(ParseError, match="three integers"):
        parse_int_triple("1 2\n", "x")


def _snap(mono: float, count: int, drop: int, pages: int, aborts: int) -> Snapshot:
    stats = parse_nf_conntrack_stat(_text("nf_conntrack.kernel-6.18"), "nf_conntrack")
    mem = parse_int_triple(_text("tcp_mem.kernel-6.18"), "tcp_mem")
    files = parse_int_triple(_text("file-nr.kernel-6.18"), "file-nr")
    return Snapshot(mono, mono, HostInfo("h"), {"TcpExt.ListenOverflows": 7, "TcpExt.TCPAbortOnMemory": aborts},
                    {"TCP.mem": pages, "TCP.orphan": 3}, Sysctls(nf_conntrack_max=1000, tcp_mem=mem, file_max=files[2]),
                    (), None, conntrack_count=count, conntrack_stats={**stats, "drop": drop},
                    files_allocated=files[0])


def test_values_and_words() -> None:
    prev, cur = _snap(0.0, 600, 5, 100, 0), _snap(5.0, 900, 45, 100, 2)
    got = {m.attribute: m for m in measure(prev, cur)}
    usage, drops = got["ConntrackTableUsage"], got["ConntrackDrops"]
    assert usage.value == 90.0 and drops.value == 40.0
    assert usage.facts.growth_per_s == 60.0 and usage.facts.seconds_to_full == pytest.approx(100 / 60, abs=0.1)
    assert usage.facts.listen_overflows == 0
    drop_spec = spec("ConntrackDrops")
    assert drop_spec is not None
    words = drop_spec.explain_finding(Finding(drops, 0.0, 2, "conntrack", 3, True))
    assert "ListenOverflows rose by 0 while conntrack dropped 40" in words.explanation
    assert "A bigger backlog will not help" in words.explanation and "nf_conntrack_max" in words.action
    assert got["TcpMemoryAborts"].value == 2.0 and got["TcpMemoryUsage"].facts.aborts_on_memory == 2
    mem = got["TcpMemoryUsage"].facts
    assert got["TcpMemoryUsage"].value == pytest.approx(100 * 100 / mem.tcp_mem_max, abs=1e-3)
    assert got["FileHandleUsage"].value > 0


def test_not_available_is_not_zero() -> None:
    empty = dataclasses.replace(_snap(0.0, 0, 0, 0, 0), conntrack_count=None, conntrack_stats=None,
                                files_allocated=None, sysctls=Sysctls())
    assert measure(empty, empty) == []


def test_snapshot_json_keeps_the_host_limits() -> None:
    import json

    from connwatch.snapshot_json import from_dict, to_dict

    snap = _snap(1.0, 600, 5, 100, 0)
    back = from_dict(json.loads(json.dumps(to_dict(snap))), "snap.json")
    assert (back.conntrack_count, back.conntrack_stats, back.files_allocated) == \
        (snap.conntrack_count, snap.conntrack_stats, snap.files_allocated)
    assert back.sysctls == snap.sysctls  # tcp_mem comes back a tuple


def test_metrics_carry_the_host_limits() -> None:
    """One metric per value (node_exporter's nf_conntrack_entries, nf_conntrack_stat_*, filefd_allocated); the first
    families, which put the metric in a label, stay value for value while --legacy-metrics on, and only then."""
    import shutil
    import subprocess

    from prometheus_client import CollectorRegistry, generate_latest

    from connwatch.outputs.prom_netns import OWN
    from connwatch.outputs.prometheus import MetricsOptions, SnapshotCollector, View, _host_families

    snap = _snap(1.0, 600, 5, 100, 0)
    families = {f.name: f for f in _host_families([(OWN, snap)], MetricsOptions())}
    assert families["connwatch_conntrack_entries"].samples[0].value == 600
    assert families["connwatch_filefd_allocated"].samples[0].value == snap.files_allocated and snap.files_allocated
    assert families["connwatch_conntrack_stat_drop"].samples[0].name == "connwatch_conntrack_stat_drop_total"
    assert families["connwatch_conntrack_stat_drop"].samples[0].value == 5
    assert families["connwatch_sysctl_net_netfilter_nf_conntrack_max"].samples[0].value == 1000  # the limits
    assert "connwatch_sysctl_fs_file_max" in families and "connwatch_sysctl_net_ipv4_tcp_mem_max" in families
    usage = {s.labels["key"]: s.value for s in families["connwatch_host_limit_usage"].samples}
    assert usage == {"conntrack_entries": 600, "files_allocated": snap.files_allocated}
    stats = {s.labels["stat"]: s.value for s in families["connwatch_conntrack_stat"].samples
             if s.name.endswith("_total")}
    assert stats == {k: families[f"connwatch_conntrack_stat_{k}"].samples[0].value for k in stats}
    assert stats["drop"] == 5
    sysctls = {s.labels["sysctl"]: s.value for s in families["connwatch_sysctl"].samples}
    assert sysctls["nf_conntrack_max"] == 1000 and sysctls["tcp_mem_max"] > sysctls["tcp_mem_pressure"]
    clean = {f.name for f in _host_families([(OWN, snap)], MetricsOptions(legacy=False))}
    assert "connwatch_conntrack_entries" in clean
    assert not clean & {"connwatch_host_limit_usage", "connwatch_conntrack_stat"}
    if shutil.which("promtool") is not None:
        reg = CollectorRegistry()
        col = SnapshotCollector(MetricsOptions(legacy=False))
        col.update(View(snap))
        reg.register(col)
        body = generate_latest(reg).decode()
        assert "connwatch_conntrack_stat_early_drop_total" in body
        done = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_analyze_reads_the_host_limits_from_sysctl_a(tmp_path: Path) -> None:
    import json
    import shutil
    import subprocess
    import sys

    capture = tmp_path / "sysctl_-a"
    shutil.copy(FIX / "sysctl_a_grep.kernel-6.18", capture)
    done = subprocess.run([sys.executable, "-m", "connwatch", "analyze", "--format", "json", str(capture)],
                          capture_output=True, text=True, timeout=120)
    report = json.loads(done.stdout)
    values = {m["attribute"]: m["value"] for m in report["findings"]}
    assert values["ConntrackTableUsage"] == round(100 * 20 / 262144, 3)
    assert values["FileHandleUsage"] == round(100 * 877 / 2466116, 3)
    assert "TcpMemoryUsage" in {u["check"] for u in report["unsupported"]}  # no tcp_mem in a child namespace
