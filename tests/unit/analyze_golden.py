"""Golden cases for `connwatch analyze`: real captures -> expected findings (tests/fixtures/golden).

Regenerate after a deliberate change:  python -m tests.unit.analyze_golden
Each golden file records the attributes connwatch knew when it was written; the test compares
only those, so a newly registered attribute module does not break it (regenerate to cover it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "tests" / "fixtures" / "captures"
GOLDEN = ROOT / "tests" / "fixtures" / "golden"

CASES: dict[str, list[str]] = {
    "lls_k8s_node": ["lls_k8s_node"],
    "ss_ltnp_full_nginx": ["ss/ss_ltnp_full_nginx_gnuser.txt"],
    "ss_timewait_661_inferred_listener": ["ss/ss_na_timewait_661_k8s_pod.txt"],
    "ss_tan_19000_two_destinations": ["ss/ss_tan_19000_k8s_pod.txt"],
    "ss_antup_timewait_one_peer": ["ss/ss_antup_timewait_one_peer.txt"],
    "ss_o_i_no_state_column": ["ss/ss_o_i_established.txt"],
    "ss_s_summary": ["ss/ss_s_timewait954.txt"],
    "ss_tupna_mixed_protocols": ["ss/ss_tupna_rhel.txt"],
    "windows_ano": ["netstat/windows_ano.txt"],
    "windows_french_b": ["netstat/windows_anb_french_excerpt.txt"],
    "windows_timewait_grpc_with_stats": ["netstat/windows_an_timewait_grpc.txt",
                                         "netstat_s/windows_netstat_s_tcp.txt"],
    "freebsd_aL": ["netstat/freebsd_aL_httpd.txt"],
    "macos_Lan_overloaded": ["netstat/macos_Lan_overloaded.txt"],
    "linux_netstat_neopa": ["netstat/linux_neopa.txt"],
    "linux_netstat_tulpn": ["netstat/linux_tulpn.txt"],
    "linux_netstat_hostnames": ["netstat/linux_tp_closewait_names.txt"],
    "netstat_s_hiboma": ["netstat_s/linux_tcpext_hiboma.txt"],
    "netstat_s_metrix": ["netstat_s/linux_metrix.txt"],
    "nstat_listen_overflows": ["nstat/nstat_listen_overflows.txt"],
    "nstat_reqqfulldrop": ["nstat/nstat_reqqfulldrop.txt"],
    "proc_tree_pcp_bigsys": ["proc_pcp_bigsys"],
    "proc_tree_local_6x_with_sysctls": ["../proc/local_6x"],  # the dev VM's /proc copy (tests/fixtures/proc)
}


def summary(report: dict[str, Any], attributes: set[str]) -> dict[str, Any]:
    """The parts of an analyze report a golden file pins down (stable, host-independent)."""
    def keep(item: dict[str, Any]) -> bool:
        return item["attribute"] in attributes
    return {
        "platform": report["platform"], "basis": report["basis"],
        "alerts": [{k: a[k] for k in ("attribute", "resource", "port", "value", "unit", "limit", "severity",
                                      "basis")} for a in report["alerts"] if keep(a)],
        "findings": sorted(([f["attribute"], f["resource"], f["value"], f["breached"]]
                            for f in report["findings"] if keep(f)), key=lambda x: (x[0], x[1])),
        "unsupported": sorted(u["check"] for u in report["unsupported"] if u["check"] in attributes),
        "listeners": sorted([x["port"], x["address"], x["queue"], x["backlog"]] for x in report["listeners"]),
        "sockets": report["sockets"],
        "counters": report["counters"],
        "formats": [[Path(f["path"]).name, f["format"]] for c in report["captures"] for f in c["files"]],
        "assumed_port_range": any("assumed" in x for x in report["limitations"]),
    }


def run_case(inputs: list[str]) -> tuple[int, dict[str, Any], str]:
    import subprocess

    done = subprocess.run([sys.executable, "-m", "connwatch", "analyze", "--format", "json",
                           *(str(CAPTURES / x) for x in inputs)], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    return done.returncode, json.loads(done.stdout), done.stderr


def write_all() -> None:
    from connwatch.attributes import known_attributes

    attributes = set(known_attributes())
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name, inputs in CASES.items():
        code, report, _err = run_case(inputs)
        data = {"inputs": inputs, "attributes": sorted(attributes), "exit_code": code,
                **summary(report, attributes)}
        (GOLDEN / f"{name}.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        print(f"wrote {name}.json (exit {code}, {len(data['alerts'])} alerts)")


if __name__ == "__main__":
    write_all()
