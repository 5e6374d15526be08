"""Real kernel: `connwatch destinations` text off a terminal, written without rich (reports/destinations.py
plain), is what rich draws of the same namespace (FORCE_COLOR makes the command draw through rich; its
colour codes taken out), and its rows hold what `ss` counts toward each destination."""

from __future__ import annotations

import os
import re
import sys
from collections import Counter

from .netns import Netns, poll
from .test_ephemeral_live import RANGE_200, _client, _start

BUSY, LIGHT = 8481, 8482
SGR = re.compile(r"\x1b\[[0-9;]*m")


def _text(ns: Netns, **env: str) -> str:
    done = ns.run([sys.executable, "-m", "connwatch", "destinations", "--interval", "0"], check=False,
                  env={**os.environ, "CONNWATCH_NETNS": "own", **env})
    assert done.returncode == 0, done.stderr
    return done.stdout


def _states(ns: Netns) -> Counter[tuple[str, str]]:
    """(destination, state) of every non-listening socket as `ss` shows it (the independent count)."""
    rows = ns.run(["ss", "-tanH"]).stdout.splitlines()
    return Counter((row.split()[4], row.split()[0]) for row in rows if row.split()[0] != "LISTEN")


def test_plain_text_is_richs_on_a_real_namespace(ns: Netns) -> None:
    ns.sysctl("net.ipv4.ip_local_port_range", RANGE_200)
    ns.sysctl("net.ipv4.tcp_tw_reuse", "0")
    ns.python("tw_server.py", "--port", str(BUSY))
    ns.python("tw_server.py", "--port", str(LIGHT))
    holder, ready = _start(ns, "--port", str(BUSY), "--hold", "30", "--cycles", "60", "--lifetime", "60")
    assert "error=none" in ready, ready
    assert _client(ns, "--port", str(LIGHT), "--cycles", "7")["error"] == "none"

    def settled() -> bool:  # nothing in transition: only ESTABLISHED (both ends) and TIME_WAIT
        return set(s for _, s in _states(ns)) <= {"ESTAB", "TIME-WAIT"}

    assert poll(settled, 30), _states(ns)
    counts = _states(ns)
    plain = _text(ns)
    drawn = _text(ns, FORCE_COLOR="1", TERM="xterm-256color")  # rich draws it (colour codes: a terminal's)
    assert counts == _states(ns), "the sockets moved between the two runs"
    assert "\x1b[" in drawn and "\x1b[" not in plain
    drawn = "\n".join(SGR.sub("", line).rstrip() for line in drawn.split("\n"))
    # The first line holds the kernel's orphan count, which is host-wide (other jobs' sockets): it may move
    # between the two runs, and with its digits where rich wraps the line. Everything after it is equal.
    (head, rest), (drawn_head, drawn_rest) = plain.split("Ports in use:", 1), drawn.split("Ports in use:", 1)
    assert rest == drawn_rest
    assert re.sub(r"orphans \d+", "orphans N", " ".join(head.split())) == \
        re.sub(r"orphans \d+", "orphans N", " ".join(drawn_head.split()))
    lines = plain.splitlines()
    assert lines[0].startswith("Ephemeral ports per destination: range 40000-40199, 200 usable")
    for port in (BUSY, LIGHT):
        dest = f"127.0.0.1:{port}"
        held = counts[(dest, "ESTAB")] + counts[(dest, "TIME-WAIT")]
        row = next(i for i, x in enumerate(lines) if x.startswith(dest + " "))
        assert lines[row].split()[3] == str(held), (lines[row], held)  # Held: every state toward it
        assert lines[row + 1] == "from 127.0.0.1"
    busy_row = next(x for x in lines if x.startswith(f"127.0.0.1:{BUSY} "))
    assert busy_row.endswith(f" pid {holder.pid}"), busy_row  # the owner inferred from its ESTABLISHED
