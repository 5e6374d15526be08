"""Real kernel: `connwatch listeners` against `ss -ltnpm` in a fresh netns — owners, queue, backlog and
drops — and the fast paths (the decoder's hot loop, the plain table, the flat JSON) against their
straightforward references on the same real dump."""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

from .netns import Netns, poll

PORTS = list(range(9300, 9340))
HOT = 9400


def _ss(ns: Netns) -> dict[str, dict[str, Any]]:
    """endpoint -> {queue, backlog, drops, pids} from `ss -ltnpmH` in the namespace."""
    out = ns.run(["ss", "-ltnpmH"]).stdout
    rows = {}
    for m in re.finditer(r"LISTEN\s+(\d+)\s+(\d+)\s+(\S+)\s+\S+(.*?)\n\s*skmem:\(.*?\bd(\d+)\)", out, re.S):
        pids = {int(p) for p in re.findall(r"pid=(\d+)", m.group(4))}
        rows[m.group(3)] = {"queue": int(m.group(1)), "backlog": int(m.group(2)), "drops": int(m.group(5)),
                            "pids": pids}
    return rows


def _listeners(ns: Netns) -> None:
    ns.python("multi_listener.py", "--ports", *map(str, PORTS))
    six = ("import socket, time\nheld = []\n"
           f"for port in {PORTS[:5]!r}:\n"
           "    s = socket.socket(socket.AF_INET6); s.bind(('::1', port)); s.listen(64); held.append(s)\n"
           "print('READY', flush=True)\ntime.sleep(120)\n")
    proc = ns.popen([sys.executable, "-c", six])
    assert proc.stdout is not None and proc.stdout.readline().startswith("READY")
    ns.python("listener.py", "--port", str(HOT), "--backlog", "3")
    ns.python("flood.py", "--port", str(HOT), "--count", "30", "--hold", "60")
    assert poll(lambda: ns.ss_drops(HOT) > 0, 10), "the full queue never dropped a SYN"


def test_listeners_json_equals_ss_ltnpm(ns: Netns) -> None:
    _listeners(ns)
    before = _ss(ns)
    done = ns.connwatch("listeners", "--format", "json")
    after = _ss(ns)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["listeners"]
    assert {r["endpoint"] for r in rows} == set(before) == set(after) and len(rows) == len(PORTS) + 5 + 1
    for r in rows:
        was, now = before[r["endpoint"]], after[r["endpoint"]]
        assert r["backlog"] == was["backlog"] == now["backlog"]
        assert was["drops"] <= r["drops"] <= now["drops"] and min(was["queue"], now["queue"]) <= r["queue"]
        assert r["queue"] <= max(was["queue"], now["queue"])
        assert r["owner"] is not None and {r["owner"]["pid"]} == was["pids"] == now["pids"]
        assert r["owner"]["open_fds"] >= 1 and r["owner"]["fd_limit"] > 0
    hot = next(r for r in rows if r["port"] == HOT)
    assert hot["queue"] == hot["backlog"] + 1 == 4 and hot["drops"] > 0 and hot["fill"] > 100


def test_listeners_text_piped_names_what_ss_names(ns: Netns) -> None:
    _listeners(ns)
    ss = _ss(ns)
    text = ns.run([sys.executable, "-m", "connwatch", "listeners", "--netns", "own"],
                  env={k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}).stdout
    rows = [line.split() for line in text.splitlines() if line[:1].isdigit() or line.lstrip()[:1].isdigit()]
    assert len(rows) == len(ss) and "\x1b[" not in text
    for row in rows:
        port, address, qb = row[0], row[1], row[2]
        endpoint = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        queue, backlog = map(int, qb.split("/"))
        assert backlog == ss[endpoint]["backlog"]
        assert row[6].startswith("python") and {int(row[7])} == ss[endpoint]["pids"]  # Owner: command, pid
        if int(port) == HOT:
            assert queue == backlog + 1 and int(row[5]) >= 1  # fill bar, percent, then drops
    probe = ("import io, sys\nfrom connwatch.cli import main\nsys.stdout = io.StringIO()\n"
             "assert main(['listeners', '--netns', 'own']) == 0\nsys.stdout = sys.__stdout__\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rich'))\n")
    loaded = ns.run([sys.executable, "-c", probe],
                    env={k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}).stdout
    assert loaded.strip() == "[]"  # piped, nothing to style: rich is not loaded


def test_fast_paths_equal_their_references_on_a_real_dump(ns: Netns) -> None:
    """Inside the namespace (a child process enters it): the recorded replies decode the same in the hot
    loop and message by message; the piped table and the JSON equal rich's drawing and json.dumps."""
    _listeners(ns)
    code = (
        "import io, json, sys\n"
        "from connwatch.sources import netlink\n"
        "from connwatch import collect\n"
        "from connwatch.parsers.sock_diag_listeners import ListenerDecoder\n"
        "chunks = []\n"
        "def keep(c):\n"
        "    chunks.append(c); return ListenerDecoder([])._messages(c, 0)\n"
        "s = netlink.open_socket()\n"
        "collect._dump(s, netlink.TCPF_LISTEN, collect.SKMEMINFO_EXT, keep, [])\n"
        "fast, slow = [], []\n"
        "a = [ListenerDecoder(fast)(c) for c in chunks]\n"
        "b = [ListenerDecoder(slow)._messages(c, 0) for c in chunks]\n"
        "assert a == b and fast == slow and len(fast) == 46, (len(fast), len(slow))\n"
        "assert {x.drops for x in fast if x.port == 9400} != {0}\n"
        "from connwatch.clock import SystemClock\n"
        "snap = collect.collect(SystemClock(), collect.CollectOptions(sockets=False))\n"
        "assert all(x.owner is not None for x in snap.listeners)\n"
        "from connwatch.commands.listeners import json_text, render_text\n"
        "from connwatch.outputs.jsonout import dumps, snapshot_listeners\n"
        "old = dumps({'listeners': snapshot_listeners(snap), 'limitations': []}, 'listeners')\n"
        "assert json_text([snap], []) == old\n"
        "from connwatch.outputs.console import console\n"
        "from connwatch.outputs.fit import print_fitted\n"
        "from connwatch.outputs.text import listeners_cells\n"
        "for cols in ('80', '160', '250'):\n"
        "    import os; os.environ['COLUMNS'] = cols\n"
        "    sys.stdout = io.StringIO(); render_text([snap], [], sys.stdout); fast_text = sys.stdout.getvalue()\n"
        "    sys.stdout = io.StringIO(); out = console()\n"
        "    print_fitted(out, *listeners_cells(snap, width=out.width), title='TCP listeners')\n"
        "    rich_text = sys.stdout.getvalue(); sys.stdout = sys.__stdout__\n"
        "    assert fast_text == rich_text and fast_text.count('\\n') == 46 + 3, (cols, fast_text, rich_text)\n"
        "print('SAME', len(fast))\n"
    )
    done = ns.run([sys.executable, "-c", code], check=False,
                  env={k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")})
    assert done.returncode == 0 and done.stdout.strip() == "SAME 46", done.stderr[-3000:]
