"""Small helpers for the hot paths (100k+ sockets per sample)."""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import ParamSpec, TypeVar

    P = ParamSpec("P")
    R = TypeVar("R")


def gc_paused(fn: Callable[P, R]) -> Callable[P, R]:
    """Run fn with the cyclic GC paused. For passes that allocate one small acyclic object per socket
    or source: with 100,000 of them, repeated GC passes doubled the time."""
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()
    return wrapper


GEN0_THRESHOLD = 700  # CPython's default for the youngest generation (gc.get_threshold()[0])


def startup_begins() -> None:
    """No automatic cyclic GC while a sampling command starts (cli.main, before its parser): the imports
    and the parser make ~12k objects that live to the end and free almost no cycle, yet the collector
    ran ~11 passes over them between main() and the first kernel read (2.1 M instructions, 1.5 % of the
    start-up, issue 17; the import of connwatch.cli itself runs ~7 more before main() can say). A gen0
    threshold of 0 stops automatic collection only: gc_paused's disable/enable and gc.collect() work as
    before."""
    gc.set_threshold(0, *gc.get_threshold()[1:])


def startup_over(*, freeze: bool = True) -> None:
    """After startup_begins(), at the first sample (collect_netns.collect_all): what start-up made is
    kept for the whole run, so it leaves the collector's sight (gc.freeze, as before a fork) and automatic
    collection resumes. Nothing when start-up was not marked (the agent, tests, a later sample)."""
    if gc.get_threshold()[0] == 0:
        if freeze:
            gc.freeze()
            malloc_warmed()
        gc.set_threshold(GEN0_THRESHOLD, *gc.get_threshold()[1:])


MALLOC_WARM = 1 << 20


def malloc_warmed() -> None:
    """One MALLOC_WARM block allocated and freed, as a sample starts: glibc's malloc maps a block that large
    apart and, freeing it, raises its thresholds to it (blocks up to 1 MiB from then on come from its heap,
    and up to 2 MiB of it stay free), where a sample's decoding otherwise had its batches of TIME_WAIT
    replies (~390 KB and 32 KiB chunks) mapped, then trimmed or unmapped, anew each time: a 35k-socket
    `check` took 882 + 1,376 page faults in its two samples, 395 + 114 after this (~1.3 us each, perf: 6 % of
    its CPU was in page faults). calloc'ed (bytes(n)): the block is mapped and unmapped without a page
    touched. Any other allocator merely allocates and frees it."""
    block = bytes(MALLOC_WARM)
    del block
