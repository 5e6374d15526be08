"""Real kernel and a real terminal: `connwatch top` driven in tmux (send-keys, capture-pane) at 80x24 and
200x50 against a fresh namespace with a flooded listener and TIME_WAIT churn (issue 13).

The hot port appears with its rejects per second within two listener refreshes of the flood; the sort,
port filter, namespace filter and pane keys change what is shown; `q` exits 0 and gives the terminal back
(normal screen, canonical mode with echo). tmux runs on a private socket; its server is ended by PID."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress

import pytest

from .netns import Netns, poll

HOT, HEALTHY, QUIET = 8080, 8081, 7000
REFRESH = 1.0  # --listener-interval


class Tmux:
    def __init__(self, width: int, height: int) -> None:
        self.sock = f"cwt-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.width, self.height = width, height

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.sock, "-f", "/dev/null", *args], capture_output=True, text=True,
                              check=True, timeout=10).stdout

    def start(self, command: str) -> None:
        self("new-session", "-d", "-s", "top", "-x", str(self.width), "-y", str(self.height), command)

    def screen(self) -> list[str]:
        return self("capture-pane", "-p", "-t", "top").splitlines()

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", "top", *keys)

    def stop(self) -> None:
        with suppress(subprocess.SubprocessError, ValueError):
            pid = int(self("display-message", "-p", "-t", "top", "#{pid}").strip())  # the tmux server
            os.kill(pid, signal.SIGTERM)


@pytest.fixture
def tmux_at(request: pytest.FixtureRequest) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.skip("needs tmux (.ci/run installs it)")
    width, height = request.param
    t = Tmux(width, height)
    yield t
    t.stop()


def _rate(screen: list[str], port: int) -> float | None:
    """The Rejects/s value of the listener row of `port` (right-aligned under its header), or None."""
    header = next((x for x in screen if "Rejects/s" in x), None)
    if header is None:
        return None
    end = header.index("Rejects/s") + len("Rejects/s")
    for line in screen[screen.index(header) + 2:]:
        if not line.strip() or not line.strip()[0].isdigit():
            break
        if line.split()[0] == str(port):
            value = line[:end].split()[-1]
            return float(value) if re.fullmatch(r"[\d.]+", value) else None
    return None


def _listener_ports(screen: list[str]) -> list[int]:
    header = next((i for i, x in enumerate(screen) if "Rejects/s" in x), None)
    if header is None:
        return []
    ports = []
    for line in screen[header + 2:]:
        if not line.strip() or not line.split()[0].isdigit():
            break
        ports.append(int(line.split()[0]))
    return ports


def _until(t: Tmux, check: object, deadline: float) -> list[str]:
    got: list[list[str]] = []

    def seen() -> bool:
        got.append(t.screen())
        return bool(check(got[-1]))  # type: ignore[operator]

    assert poll(seen, deadline, 0.1), "\n".join(got[-1] if got else [])
    return got[-1]


@pytest.mark.parametrize("tmux_at", [(80, 24), (200, 50)], indirect=True, ids=["80x24", "200x50"])
def test_top_in_tmux(ns: Netns, tmux_at: Tmux) -> None:
    t = tmux_at
    ns.python("listener.py", "--port", str(HOT), "--backlog", "5", "--lifetime", "120")
    ns.python("tw_server.py", "--port", str(HEALTHY), "--lifetime", "120")  # the client closes first: TIME_WAIT
    ns.python("listener.py", "--port", str(QUIET), "--backlog", "128", "--accept", "--lifetime", "120")
    ns.python("churn.py", "--port", str(HEALTHY), "--cycles", "3000", "--rate", "150", "--duration", "40",
              "--background", "--lifetime", "60")
    top = shlex.join(ns.cmd(["env", "CONNWATCH_NETNS=own", sys.executable, "-m", "connwatch", "top", "--interval",
                             "2", "--listener-interval", str(REFRESH)]))
    t.start(f"{top}; echo \"top-exit=$?\"; stty -a | tr ' ' '\\n' | grep -xE -- '-?(icanon|echo)' | tr '\\n' ' '; "
            "echo; sleep 60")
    start = time.monotonic()
    screen = _until(t, lambda s: any(x.startswith("connwatch top") for x in s), 10)
    startup = time.monotonic() - start
    assert len(screen) <= t.height and max(map(len, screen)) <= t.width
    assert _rate(screen, HOT) in (None, 0.0)
    ns.python("flood.py", "--port", str(HOT), "--count", "60", "--hold", "60")
    flooded = time.monotonic()
    screen = _until(t, lambda s: (_rate(s, HOT) or 0) > 0, 2 * REFRESH + 0.5)  # within two refreshes
    assert time.monotonic() - flooded <= 2 * REFRESH + 0.5
    assert _listener_ports(screen)[0] == HOT  # sorted by rejects per second: the hot port first
    # TIME_WAIT churn toward the healthy port shows in the destinations pane after a full sample.
    screen = _until(t, lambda s: any(f"127.0.0.1:{HEALTHY}" in x and "TW" in x for x in s) or
                    any(f"127.0.0.1:{HEALTHY}" in x for x in s), 8)
    # Sort: rejects/s -> fill -> drops -> port.
    t.keys("s", "s", "s")
    screen = _until(t, lambda s: any("sort: port" in x for x in s), 3)
    assert _listener_ports(screen) == sorted(_listener_ports(screen)) and _listener_ports(screen)[0] == QUIET
    # Filter by port, then by a namespace that is not there, then clear.
    t.keys("f", "8", "0", "8", "1", "Enter")
    screen = _until(t, lambda s: any("port=8081" in x for x in s) and _listener_ports(s) == [HEALTHY], 3)
    t.keys("c", "n", "n", "o", "s", "u", "c", "h", "Enter")
    screen = _until(t, lambda s: any("Listeners (0 of 0)" in x for x in s), 3)
    t.keys("c")
    screen = _until(t, lambda s: HOT in _listener_ports(s) and QUIET in _listener_ports(s), 3)
    # One pane on the whole screen, then back.
    t.keys("2")
    screen = _until(t, lambda s: any(x.startswith("Destinations (") for x in s)
                    and not any(x.startswith("Listeners (") for x in s), 3)
    assert len(screen) <= t.height and max(map(len, screen)) <= t.width
    t.keys("q")
    screen = _until(t, lambda s: any(x.startswith("top-exit=") for x in s) and any("icanon" in x for x in s), 5)
    assert "top-exit=0" in screen, screen
    modes = next(x for x in screen if "icanon" in x).split()
    assert modes == ["icanon", "echo"], modes  # cbreak undone: line mode and echo are back
    assert t("display-message", "-p", "-t", "top", "#{alternate_on}").strip() == "0"  # the normal screen
    assert not any(x.startswith("connwatch top") for x in screen)  # the frame went with the alternate screen
    print(f"top first frame after {startup:.2f} s in tmux ({t.width}x{t.height})")
