"""Network namespaces for real-kernel tests: made by the test, cleaned up on any exit.

Traffic stays on the namespace's own loopback. Processes are ended by PID, never by name.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

PROGS = Path(__file__).parent / "progs"


def why_no_netns() -> str | None:
    """The reason real-kernel tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip` to create network namespaces"
    return None


class Netns:
    def __init__(self, name: str) -> None:
        self.name = name
        self.procs: list[subprocess.Popen[str]] = []

    def cmd(self, args: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def run(self, args: Sequence[str], timeout: float = 120, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.cmd(args), capture_output=True, text=True, timeout=timeout, check=check,
                              env=env)

    def popen(self, args: Sequence[str], **kw: object) -> subprocess.Popen[str]:
        proc: subprocess.Popen[str] = subprocess.Popen(self.cmd(args), stdout=subprocess.PIPE,
                                                       stderr=subprocess.PIPE, text=True,
                                                       **kw)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def python(self, prog: str, *args: str) -> subprocess.Popen[str]:
        """Start one of tests/live/progs inside the namespace and wait for its READY line."""
        proc = self.popen([sys.executable, str(PROGS / prog), *args])
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("READY"):
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"{prog} did not start: {line!r} {err}")
        return proc

    def sysctl(self, key: str, value: str) -> None:
        self.run(["sysctl", "-q", "-w", f"{key}={value}"])

    def connwatch(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """connwatch inside the namespace, judging that namespace only (pass --netns to say otherwise: as root
        the default is every namespace on the host, other tests' included)."""
        env = {**os.environ, "CONNWATCH_NETNS": "own"}
        return self.run([sys.executable, "-m", "connwatch", *args], timeout=timeout, check=False, env=env)

    def ss_drops(self, port: int) -> int:
        """Sum of `d` (SK_MEMINFO_DROPS) over listeners on port, as ss -ltnm reports it."""
        out = self.run(["ss", "-ltnmH", f"sport = :{port}"]).stdout
        return sum(int(d) for d in re.findall(r"\bd(\d+)\)", out))

    def nstat(self, name: str) -> int:
        out = self.run(["nstat", "-az", name]).stdout
        m = re.search(rf"^{name}\s+(\d+)", out, re.M)
        return int(m.group(1)) if m else 0

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=10)


@contextmanager
def netns() -> Iterator[Netns]:
    # (CONNWATCH_TEST_NETNS_PREFIX: a prefix of one's own on a host shared by several test runs)
    name = f"{os.environ.get('CONNWATCH_TEST_NETNS_PREFIX', 'cwt')}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    ns = Netns(name)
    try:
        ns.run(["ip", "link", "set", "lo", "up"])
        yield ns
    finally:
        ns.stop_all()
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def poll(check: Callable[[], object], deadline_s: float, step_s: float = 0.05) -> bool:
    """Poll until check() is true(thy) or the deadline passes (no fixed sleeps in kernel-timing tests)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(step_s)
    return bool(check())
