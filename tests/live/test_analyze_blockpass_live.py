"""Real kernel: `ss -tan`, `ss -tano` and (net-tools installed) `netstat -tan` dumps of a namespace with IPv4
and IPv6 listeners, their ESTABLISHED connections and TIME_WAIT sockets read the same by the block path (PlainBlocks,
analyze/plaincount.py) and by the row-by-row path: same RowScan, key order included, same segments, same
JSON report (tests/unit/test_analyze_blockpass.py compares them on recorded and fuzzed listings)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from connwatch.analyze import detect as fmt
from connwatch.analyze import rowpass
from connwatch.cli import main
from tests.unit.test_analyze_blockpass import plain_blocks, same_everywhere

from .netns import Netns, poll

PORT4, PORT6, PAIRS, CLOSED = 8310, 8311, 150, 60

LOAD = f"""
import socket, sys, time
srv4 = socket.create_server(("127.0.0.1", {PORT4}), backlog=512)
srv6 = socket.create_server(("::1", {PORT6}), family=socket.AF_INET6, backlog=512)
keep = []
for srv, host in ((srv4, "127.0.0.1"), (srv6, "::1")):
    for _ in range({PAIRS}):
        c = socket.create_connection((host, srv.getsockname()[1]), timeout=5)
        a, _ = srv.accept()
        keep.append((c, a))
for c, a in keep[:{CLOSED}]:  # the client closes first: its port stays in TIME_WAIT
    c.close(); a.recv(1); a.close()
print("READY", flush=True)
sys.stdin.read()  # until the test ends it (stop_all)
"""


def _count(ns: Netns, state: str) -> int:
    return len(ns.run(["ss", "-tanH", "state", state]).stdout.splitlines())


def test_real_ss_dump_reads_the_same_by_blocks_and_by_rows(ns: Netns, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    proc = ns.popen([sys.executable, "-c", LOAD], stdin=-1)
    assert proc.stdout is not None and proc.stdout.readline().startswith("READY")
    # the client closes first: its port goes to TIME_WAIT, unless the kernel kills the fresh one with an RST
    # (seen on loopback for 0-13 % of them): what ss holds is counted, not one per close
    assert poll(lambda: _count(ns, "time-wait") >= CLOSED // 2 and not any(
        _count(ns, s) for s in ("fin-wait-1", "fin-wait-2", "last-ack", "closing")), 10), "TIME_WAIT not in place"
    dumps = [(["ss", "-tan"], fmt.SS), (["ss", "-tano"], fmt.SS)]
    if shutil.which("netstat"):
        dumps.append((["netstat", "-tan"], fmt.NETSTAT_LINUX))  # IPv4 rows `tcp` (blocks), IPv6 `tcp6` (rows)
    fast = dict(rowpass._PLAIN_BLOCK)
    for args, kind in dumps:
        monkeypatch.setattr(rowpass, "_PLAIN_BLOCK", fast)
        dump = ns.run(args).stdout
        lines = dump.split("\n")
        assert sum("ESTAB" in x for x in lines) == 4 * PAIRS - 2 * CLOSED
        blocks = same_everywhere(lines, kind)
        if args[1] == "-tan":
            assert blocks > 0 and plain_blocks(lines, kind, 5) > 0  # plain rows: the block path is used
        capture = tmp_path / f"{args[0]}.txt"
        capture.write_text(dump)
        reports = []
        for plain in (fast, {}):
            monkeypatch.setattr(rowpass, "BLOCK_LINES", 5)
            monkeypatch.setattr(rowpass, "_PLAIN_BLOCK", plain)
            code = main(["analyze", "--format", "json", str(capture)])
            report = json.loads(capsys.readouterr().out)
            report.pop("generated_at", None)
            reports.append((code, json.dumps(report, sort_keys=True)))
        assert reports[0] == reports[1]
