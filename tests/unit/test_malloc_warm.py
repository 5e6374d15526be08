"""perf.malloc_warmed (called as a command's first sample starts, perf.startup_over): glibc's malloc keeps
the batches a sample's decoding allocates and frees in its heap instead of mapping fresh pages each time.
Counted in fresh interpreters (minor page faults, deterministic for one binary), glibc only."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

CHURN = """import resource, sys
from connwatch.perf import malloc_warmed
if sys.argv[1] == "warm":
    malloc_warmed()
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):  # as a TIME_WAIT dump's batches: 12 written chunks of 32 KB, joined, one column read
    chunks = [b"\\1" * 32_000 for _ in range(12)]
    run = b"".join(chunks)
    column = memoryview(run).cast("H")[10::48].tobytes()
    del chunks, run, column
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
"""


def _faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's dynamic mmap and trim thresholds")
def test_a_warmed_allocator_maps_fewer_pages_for_repeated_batches() -> None:
    cold, warm = _faults("cold"), _faults("warm")
    assert warm < cold * 0.8, (cold, warm)


def test_the_first_sample_of_a_command_warms_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    from connwatch import perf

    calls: list[int] = []
    monkeypatch.setattr(perf, "malloc_warmed", lambda: calls.append(1))
    monkeypatch.setattr(gc, "freeze", lambda: None)  # (the test session's objects stay in the collector's sight)
    threshold = gc.get_threshold()
    try:
        perf.startup_begins()
        perf.startup_over()
        perf.startup_over()  # (a later sample: start-up was over)
    finally:
        gc.set_threshold(*threshold)
    assert calls == [1]
