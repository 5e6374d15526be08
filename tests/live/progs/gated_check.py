"""Run `connwatch check ARGS...` unchanged, but hold it between its two samples until told to go.

Tests use it to make traffic happen strictly between the check's two samples, so the kernel's own
counters read by the test around the traffic bracket exactly the interval connwatch measured:
after the first sample this prints "SAMPLED 1" on stderr and waits for one line on stdin (bounded:
120 s), then the check goes on (waits --interval, takes the second sample, prints its output).
Only the wait is added; sampling, judging and output are connwatch's own.
"""

import select
import sys

import connwatch.collect
from connwatch.cli import main

_real = connwatch.collect.collect
_calls = [0]


def _gated(*args, **kwargs):  # type: ignore[no-untyped-def]
    snap = _real(*args, **kwargs)
    _calls[0] += 1
    if _calls[0] == 1:
        print("SAMPLED 1", file=sys.stderr, flush=True)
        ready, _, _ = select.select([sys.stdin], [], [], 120.0)
        if not ready:
            print("gated_check: no go within 120 s", file=sys.stderr, flush=True)
            raise SystemExit(3)
        sys.stdin.readline()
    return snap


connwatch.collect.collect = _gated
raise SystemExit(main(["check", *sys.argv[1:]]))
