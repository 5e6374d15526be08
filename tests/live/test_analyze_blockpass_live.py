"""Real kernel: `ss -tan` and `ss -tano` dumps of a namespace with IPv4 and IPv6 listeners, their
ESTABLISHED connections and TIME_WAIT sockets read the same by the block path (PlainBlocks,
analyze/plaincount.py) and by the row-by-row path: same RowScan, key order included, same segments, same
JSON report (tests/unit/test_analyze_blockpass.py compares them on recorded and fuzzed listings)."""

from __future__ import annotations

import json
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
    assert poll(lambda: _count(ns, "time-wait") == CLOSED, 10), "TIME_WAIT load not in place"
    for args in (["-tan"], ["-tano"]):
        dump = ns.run(["ss", *args]).stdout
        lines = dump.split("\n")
        assert sum("ESTAB" in x for x in lines) == 4 * PAIRS - 2 * CLOSED
        blocks = same_everywhere(lines, fmt.SS)
        if args == ["-tan"]:
            assert blocks > 0 and plain_blocks(lines, fmt.SS, 5) > 0  # plain rows: the block path is used
        capture = tmp_path / "ss.txt"
        capture.write_text(dump)
        reports = []
        for plain in (rowpass._PLAIN_BLOCK, {}):
            monkeypatch.setattr(rowpass, "BLOCK_LINES", 5)
            monkeypatch.setattr(rowpass, "_PLAIN_BLOCK", plain)
            code = main(["analyze", "--format", "json", str(capture)])
            report = json.loads(capsys.readouterr().out)
            report.pop("generated_at", None)
            reports.append((code, json.dumps(report, sort_keys=True)))
        assert reports[0] == reports[1]
