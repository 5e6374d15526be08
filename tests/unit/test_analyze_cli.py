"""`connwatch analyze` end to end: bad input, sets with one bad file, tarballs, two captures, no store."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connwatch import snapshot_json
from connwatch.cli import main
from connwatch.model import HostInfo, Listener, Snapshot, Sysctls

CAP = Path(__file__).resolve().parents[1] / "fixtures" / "captures"


def analyze(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "connwatch", "analyze", *args], capture_output=True, text=True,
                          timeout=60, env=env)


def test_unrecognised_empty_binary_truncated_each_exit_3_with_one_line(tmp_path: Path) -> None:
    cases = {"notes.txt": b"hello world\nthis is not netstat\n", "empty.txt": b"", "core.bin": b"\x7fELF\0\0\1\2" * 50,
             "cut.txt": b"State Recv-Q Send-Q Local Address:Port Peer Address:Port\nLISTEN 0 128 0.0.0.0:80 0.0\n"}
    expect = {"notes.txt": "unrecognised format", "empty.txt": "empty file", "core.bin": "binary file",
              "cut.txt": ":2: bad address"}
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        done = analyze(str(path))
        assert done.returncode == 3, (name, done.stderr)
        assert done.stdout == ""
        err = done.stderr.splitlines()
        assert len(err) == 1 and err[0].startswith(str(path)) and expect[name] in err[0], err
        assert "Traceback" not in done.stderr


def test_one_bad_file_is_reported_and_the_rest_analysed(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("tcp 0 0 10.0.0.1:22 10.0.0.2:5000 NOT_A_STATE\n")
    done = analyze("--format", "json", str(CAP / "ss/ss_ltnp_full_nginx_gnuser.txt"), str(bad))
    report = json.loads(done.stdout)
    assert done.stderr.strip() == f"{bad}:1: unknown TCP state 'NOT_A_STATE'"
    assert report["errors"] == [done.stderr.strip()]
    assert [a["attribute"] for a in report["alerts"]] == ["AcceptQueueFill"]  # the good file still analysed
    assert done.returncode == 3 and report["exit_code"] == 3  # incomplete and nothing critical -> UNKNOWN


def test_critical_findings_outrank_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\0\0\0")
    done = analyze(str(CAP / "lls_k8s_node/ss_nltp.txt"), str(bad))
    assert done.returncode == 2 and done.stderr.count("\n") == 1


def test_tarball_is_one_host_and_sysctls_from_proc_sys(tmp_path: Path) -> None:
    tar_path = tmp_path / "sosreport-host.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for name, rel in (("sos_commands/networking/ss_-ltn", "ss/ss_ltnp_full_nginx_gnuser.txt"),
                          ("sos_commands/networking/nstat_-az", "nstat/nstat_listen_overflows.txt")):
            tar.add(CAP / rel, arcname=name)
        for name, data in (("proc/sys/net/core/somaxconn", b"10\n"), ("uptime", b" 10:20:11 up 2 days,  1:00,  "
                                                                                 b"1 user,  load average: 0.1\n"),
                           ("hostname", b"web-7\n"), ("etc/motd", b"welcome\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    done = analyze("--format", "json", str(tar_path))
    report = json.loads(done.stdout)
    assert done.stderr == "" and report["host"] == "web-7" and len(report["captures"]) == 1
    assert report["uptime_s"] == 2 * 86400 + 3600
    [over] = [a for a in report["alerts"] if a["attribute"] == "ListenOverflows"]
    assert over["value"] == 4 and over["basis"] == "since boot" and "Cumulative since boot (2.0 days" in \
        over["explanation"]
    [fill] = [a for a in report["alerts"] if a["attribute"] == "AcceptQueueFill"]
    assert "equals net.core.somaxconn (10)" in fill["explanation"]
    assert report["captures"][0]["skipped_files"] == 1  # etc/motd is not a capture file


def _snapshot(taken: float, overflows: int, queue: int) -> dict[str, Any]:
    lst = Listener(family=4, address="0.0.0.0", port=8080, queue=queue, backlog=5, drops=overflows, inode=7, uid=0,
                   cookie=99)
    snap = Snapshot(taken_at=taken, monotonic=taken, host=HostInfo("db-1", boot_time=taken - 1000),
                    counters={"TcpExt.ListenOverflows": overflows, "TcpExt.ListenDrops": overflows},
                    sockstat={}, sysctls=Sysctls(somaxconn=4096), listeners=(lst,), sockets=None)
    return snapshot_json.to_dict(snap)


def test_two_snapshots_taken_apart_give_deltas_and_rates(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_snapshot(1_700_000_000.0, 100, 6)))
    b.write_text(json.dumps(_snapshot(1_700_000_010.0, 130, 6)))
    report = json.loads(analyze("--format", "json", str(a), str(b)).stdout)
    assert report["basis"] == "interval" and report["interval_s"] == 10
    [rej] = [a for a in report["alerts"] if a["attribute"] == "BacklogRejectsByPort"]
    assert rej["value"] == 30 and rej["detail"]["rate_per_s"] == 3.0
    # One problem, one alert: the namespace's ListenOverflows are all this port's rejects, so they are a
    # fact of its alert, not an alert of their own.
    assert not [a for a in report["alerts"] if a["attribute"] == "ListenOverflows"]
    [over] = [f for f in report["findings"] if f["attribute"] == "ListenOverflows"]
    assert over["value"] == 30 and over["folded_into"] == "the per-port alerts"


def test_single_snapshot_is_since_boot_with_uptime(tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    a.write_text(json.dumps(_snapshot(1_700_000_000.0, 100, 6)))
    report = json.loads(analyze("--format", "json", str(a)).stdout)
    assert report["basis"] == "since boot" and report["uptime_s"] == 1000
    [rej] = [x for x in report["alerts"] if x["attribute"] == "BacklogRejectsByPort"]
    assert rej["detail"]["reconciliation"]["host_listen_overflows"] == 100
    assert rej["basis"] == "since the listener opened"
    assert rej["detail"]["rate_per_s"] == round(rej["value"] / 1000, 3)


def test_different_hosts_are_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_snapshot(1_700_000_000.0, 1, 0)))
    other = _snapshot(1_700_000_010.0, 1, 0)
    other["host"]["hostname"] = "db-2"
    b.write_text(json.dumps(other))
    done = analyze(str(a), str(b))
    assert done.returncode == 3 and "one host per invocation" in done.stderr and done.stdout == ""


def test_platform_defaults_and_port_range_override() -> None:
    win = json.loads(analyze("--format", "json", str(CAP / "netstat/windows_ano.txt")).stdout)
    assert win["platform"] == "windows" and any("TcpTimedWaitDelay" in x for x in win["advice"])
    assert any("49152–65535" in x for x in win["limitations"])
    assert {u["check"] for u in win["unsupported"]} >= {"AcceptQueueFill", "ListenOverflows"}
    macos = str(CAP / "netstat/macos_Lan_overloaded.txt")
    bsd = json.loads(analyze("--format", "json", "--somaxconn", "128", macos).stdout)
    [fill] = bsd["alerts"]
    assert "kern.ipc.somaxconn" in fill["explanation"] and "net.core" not in fill["explanation"] + fill["action"]
    narrow = json.loads(analyze("--format", "json", "--port-range", "19000-19010",
                                str(CAP / "ss/ss_tan_19000_k8s_pod.txt")).stdout)
    assert not any("assumed" in x for x in narrow["limitations"])


def test_linux_netstat_names_missing_backlog() -> None:
    report = json.loads(analyze("--format", "json", str(CAP / "netstat/linux_tulpn.txt")).stdout)
    reasons = {u["check"]: u["reason"] for u in report["unsupported"]}
    assert "Linux netstat" in reasons["AcceptQueueFill"] and "ss -ltn" in reasons["AcceptQueueFill"]


def test_nagios_and_text_outputs() -> None:
    done = analyze("--format", "nagios", str(CAP / "lls_k8s_node"))
    assert done.returncode == 2 and done.stdout.startswith("CONNWATCH CRITICAL - 4 alert(s)")
    text = analyze(str(CAP / "lls_k8s_node"))
    assert "Not supported by this capture" in text.stdout and "Cumulative since boot" in text.stdout


def test_analyze_never_writes_the_alert_store(tmp_path: Path) -> None:
    env = {**os.environ, "CONNWATCH_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path)}
    done = analyze(str(CAP / "lls_k8s_node"), env=env)
    assert done.returncode == 2
    assert list(tmp_path.rglob("*.db")) == [] and list(tmp_path.rglob("*.sqlite*")) == []


def test_large_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    with big.open("w") as fh:
        fh.write("State Recv-Q Send-Q Local Address:Port Peer Address:Port\n")
        fh.write("LISTEN 0 128 0.0.0.0:8080 0.0.0.0:*\n")
        for i in range(300_000):
            fh.write(f"TIME-WAIT 0 0 10.0.{i % 200}.{i % 250 + 1}:8080 10.1.{i % 7}.9:{1024 + i % 60000}\n")
    # VmHWM, not ru_maxrss: after fork+exec ru_maxrss keeps the parent's (pytest's) peak
    code = ("import re,sys,json;from connwatch.cli import main;"
            "rc=main(['analyze','--format','json',sys.argv[1]]);"
            "sys.stderr.write(re.search(r'VmHWM:\\s+(\\d+)',open('/proc/self/status').read()).group(1))")
    done = subprocess.run([sys.executable, "-c", code, str(big)], capture_output=True, text=True, timeout=300)
    report = json.loads(done.stdout)
    assert report["sockets"]["total"] == 300_000
    assert int(done.stderr.strip()) < 80_000  # KiB: 300k rows kept as objects would need well over 100 MB


def _analyze_json(path: Path) -> tuple[int, io.StringIO, io.StringIO]:
    """`connwatch analyze --format json PATH` in-process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["analyze", "--format", "json", str(path)])
    return rc, out, err


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=600))
def test_cli_maps_any_bytes_to_a_report_or_exit_3(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "capture.txt"
    path.write_bytes(data)
    rc, out, err = _analyze_json(path)
    assert rc in (0, 1, 2, 3)
    assert "internal error" not in err.getvalue() and "Traceback" not in err.getvalue()
    if rc == 3 and not out.getvalue():
        assert len(err.getvalue().splitlines()) == 1 and err.getvalue().startswith(str(path))


def test_two_text_captures_with_interval_give_rates(tmp_path: Path) -> None:
    first, second = tmp_path / "nstat-1.txt", tmp_path / "nstat-2.txt"
    first.write_text("#kernel\nTcpExtListenOverflows 100 0.0\nTcpExtListenDrops 100 0.0\n")
    second.write_text("#kernel\nTcpExtListenOverflows 160 0.0\nTcpExtListenDrops 160 0.0\n")
    report = json.loads(analyze("--format", "json", "--interval", "30", str(first), str(second)).stdout)
    [over] = report["alerts"]
    assert report["basis"] == "interval" and len(report["captures"]) == 2
    assert over["value"] == 60 and over["detail"]["rate_per_s"] == 2.0 and over["basis"] == "interval"
    alone = json.loads(analyze("--format", "json", str(first), str(second)).stdout)
    assert alone["basis"] == "since boot" and alone["alerts"][0]["value"] == 160
    assert any("--interval" in n for n in alone["captures"][0]["notes"])


def test_sosreport_directories_with_date_files_give_rates(tmp_path: Path) -> None:
    for name, when, value in (("sos1", "Sun Nov 22 21:00:00 UTC 2026", 10),
                              ("sos2", "Sun Nov 22 21:01:40 UTC 2026", 60)):
        net = tmp_path / name / "sos_commands" / "networking"
        net.mkdir(parents=True)
        (net / "nstat_-az").write_text(f"#kernel\nTcpExtListenOverflows {value} 0.0\n")
        (tmp_path / name / "date").write_text(when + "\n")
    report = json.loads(analyze("--format", "json", str(tmp_path / "sos1"), str(tmp_path / "sos2")).stdout)
    assert report["basis"] == "interval" and report["interval_s"] == 100
    assert report["alerts"][0]["value"] == 50 and report["alerts"][0]["detail"]["rate_per_s"] == 0.5


HEADERS = ["State Recv-Q Send-Q Local Address:Port Peer Address:Port", "Proto Recv-Q Send-Q Local Address "
           "Foreign Address State", "  Proto  Local Address  Foreign Address  State  PID", "#kernel", "TcpExt:",
           "Current listen queue sizes (qlen/incqlen/maxqlen)", "sl  local_address rem_address   st", "Tcp: A B"]
FIELDS = st.sampled_from(["tcp", "TCP", "tcp4", "LISTEN", "ESTAB", "TIME_WAIT", "LISTENING", "0", "128", "-1",
                          "1.2.3.4:80", "[::1]:443", "*:*", "*.80", "0.0.0.0:0", "10.0.0.1.5000", "0/0/128",
                          "users:((\"x\",pid=1,fd=3))", "timer:(timewait,59sec,0)", "=", "12", "TcpExtListenDrops",
                          "0500000A:0016", "0A", "00000000:00000001", "é", "\t", "skmem:(d5)"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(HEADERS), st.lists(st.lists(FIELDS, min_size=1, max_size=9).map(" ".join), max_size=12))
def test_cli_near_valid_captures_never_crash(tmp_path: Path, header: str, rows: list[str]) -> None:
    path = tmp_path / "capture.txt"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    rc, out, err = _analyze_json(path)
    assert rc in (0, 1, 2, 3) and "internal error" not in err.getvalue()
    if out.getvalue():
        json.loads(out.getvalue())
    else:
        assert rc == 3 and len(err.getvalue().splitlines()) == 1
