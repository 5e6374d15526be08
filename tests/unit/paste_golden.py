"""Golden findings for the pasted-capture corpus (tests/fixtures/captures/pastes, see SOURCES.md there).

Each paste is analysed alone; the golden file records what a support engineer needs from it: the exit
code, host, platform, which lines were read as which format (and with which command), which lines
were skipped, the listeners' queue/backlog, the socket total, the listen counters and the alerts.
Regenerate after a deliberate change (then review the diff):  python -m tests.unit.paste_golden
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PASTES = ROOT / "tests" / "fixtures" / "captures" / "pastes"
GOLDEN = ROOT / "tests" / "fixtures" / "golden" / "pastes.json"
COUNTERS = ("TcpExt.ListenOverflows", "TcpExt.ListenDrops", "TcpExt.TCPReqQFullDrop", "TcpExt.TW")


def summary(code: int, report: dict[str, Any] | None, stderr: str) -> dict[str, Any]:
    if report is None:
        return {"exit_code": code, "error": stderr.strip().split(": ", 1)[-1]}
    caps = report["captures"]
    return {
        "exit_code": code, "host": report["host"], "platform": report["platform"],
        "parts": [[f["format"], f.get("lines"), f.get("command", ""), f["records"]] for c in caps for f in c["files"]],
        "skipped": [[s["lines"][0], s["lines"][1]] for c in caps for s in c["skipped_parts"]],
        "listeners": sorted([x["port"], x["queue"], x["backlog"]] for x in report["listeners"]),
        "sockets": report["sockets"]["total"] if report["sockets"] else None,
        "counters": {k: v for k, v in report["counters"].items() if k in COUNTERS},
        "alerts": sorted([a["attribute"], a["value"]] for a in report["alerts"]),
    }


def run_paste(name: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "connwatch", "analyze", "--format", "json", str(PASTES / name)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    report = json.loads(done.stdout) if done.stdout.strip() else None
    return summary(done.returncode, report, done.stderr)


def write_all() -> None:
    data = {p.name: run_paste(p.name) for p in sorted(PASTES.glob("*.txt"))}
    GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    print(f"wrote {len(data)} cases to {GOLDEN}")


if __name__ == "__main__":
    write_all()
