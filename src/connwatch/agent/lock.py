"""One agent per state directory: two agents judging into one history would clear each other's alerts
and deliver everything twice. The lock is an flock on `<state_dir>/agent.lock` (released by the kernel
when the process ends, even on kill -9), with the holder's pid written in it for the error message."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from connwatch.errors import StateError

LOCK_NAME = "agent.lock"


def hold(state_dir: Path) -> int | None:
    """Take the state directory for this agent; StateError naming the other agent when it is taken.
    None when the lock file cannot even be made (a read-only or full state dir): the agent then runs
    without history, as it does for any unusable state dir, and says so through the store's own errors."""
    path = Path(state_dir) / LOCK_NAME
    try:
        Path(state_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StateError(f"{state_dir}: another connwatch agent (pid {holder}) is using this state directory; "
                         "stop it, or give this one its own --state-dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
