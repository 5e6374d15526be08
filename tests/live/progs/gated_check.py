"""Run `connwatch check ARGS...` unchanged, but hold it between its two samples until told to go.

Tests use it to make traffic happen strictly between the check's two samples, so the kernel's own
counters read by the test around the traffic bracket exactly the interval connwatch measured:
when the check starts its wait between the samples (commands/check.py `_wait`), this prints
"SAMPLED 1" on stderr and waits for one line on stdin (bounded: 120 s), then the check goes on
(waits --interval, takes the second sample, prints its output). Only the hold is added; sampling,
judging and output are connwatch's own.
"""

import select
import sys
from typing import Any

import connwatch.commands.check as check
from connwatch.cli import main

_wait = check._wait


def _gated(*args: Any, **kwargs: Any) -> None:
    print("SAMPLED 1", file=sys.stderr, flush=True)
    ready = select.select([sys.stdin], [], [], 120.0)[0]
    if not ready:
        print("gated_check: no go within 120 s", file=sys.stderr, flush=True)
        raise SystemExit(3)
    sys.stdin.readline()
    _wait(*args, **kwargs)


check._wait = _gated
raise SystemExit(main(["check", *sys.argv[1:]]))
