"""analyze's JSON document (`--format json`): without rich, which only the text report draws with
(analyze/output.py re-exports analysis_dict)."""

from __future__ import annotations

from typing import Any

from connwatch import __version__
from connwatch.analyze.hostfacts import ADVICE
from connwatch.analyze.report import Analysis
from connwatch.engine import STATUS_NAMES
from connwatch.outputs.jsonout import alert_dict, finding_dict, iso, listener_row


def basis_of(detail: Any, fallback: str) -> str:
    return str(detail.get("basis", fallback)) if hasattr(detail, "get") else fallback


def analysis_dict(a: Analysis) -> dict[str, Any]:
    cur = a.result.current
    alerts = []
    for alert in a.result.step.raised:
        d = alert_dict(alert)
        d["basis"] = basis_of(alert.detail, a.basis)
        alerts.append(d)
    findings = []
    for f in a.result.findings:
        d = finding_dict(f)
        d["basis"] = basis_of(f.measurement.detail, a.basis)
        findings.append(d)
    return {
        "connwatch": __version__, "command": "analyze", "status": STATUS_NAMES[a.exit_code],
        "exit_code": a.exit_code, "host": cur.host.hostname, "platform": a.platform, "basis": a.basis,
        "interval_s": a.interval_s, "uptime_s": a.uptime_s,
        "alerts": alerts, "findings": findings, "unsupported": list(a.unsupported),
        "captures": [{"name": c.name, "taken_at": iso(c.snapshot.taken_at) if c.snapshot else None,
                      "files": c.files, "skipped_files": c.skipped, "skipped_parts": c.skipped_parts,
                      "notes": list(dict.fromkeys(c.notes))}
                     for c in a.captures],
        "listeners": [listener_row(x) for x in cur.listeners],
        "sockets": None if cur.sockets is None else {"total": cur.sockets.total,
                                                     "by_state": dict(cur.sockets.by_state)},
        "counters": {k: v for k, v in sorted(cur.counters.items()) if k.startswith(
            ("TcpExt.Listen", "TcpExt.TCPReqQ", "TcpExt.Syncookies", "TcpExt.TW", "Tcp."))},
        "reconciliation": a.result.reconciliation,
        "limitations": list(cur.limitations),
        "advice": ADVICE.get(a.platform, []),
        "errors": list(a.errors),
    }
