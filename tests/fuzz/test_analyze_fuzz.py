"""The analyze fuzzer in CI: every kept crash replays cleanly, then >= 20,000 fresh mutated inputs.

The run's seed is fixed (FIXED_SEED: the same inputs every run, so a failure reproduces) for half
the inputs, and varies (printed, or taken from CONNWATCH_FUZZ_SEED) for the other half, so every CI
run also tries inputs no run tried before. A failure prints each crash's case seed: re-run it with
`python -m tests.fuzz.analyze_fuzz --case SEED --save` (which also keeps it in the corpus).
Only tests/fuzz runs it (the unit runs on 3.12/3.13 cover tests/unit), so it costs CI one run.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from connwatch.rules.config import load_config
from tests.fuzz.analyze_fuzz import CORPUS, analyse, fuzz

FIXED_SEED = 14  # issue 14
INPUTS = int(os.environ.get("CONNWATCH_FUZZ_INPUTS", "20000"))
BUDGET_S = 600.0  # a safety net on a loaded machine; about 35 s on 2 idle cores


def _corpus() -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize("case", _corpus(), ids=lambda p: p.name)
def test_corpus_case_ends_in_a_report_or_one_line_errors(case: Path) -> None:
    args = [str(p) for p in sorted(case.iterdir())] if case.is_dir() else [str(case)]
    assert analyse(args, load_config(None)) is None


def test_fuzzed_inputs_never_reach_an_internal_error(capsys: pytest.CaptureFixture[str]) -> None:
    varying = int(os.environ.get("CONNWATCH_FUZZ_SEED") or random.SystemRandom().randrange(1 << 31))
    start = time.monotonic()
    fixed = fuzz(INPUTS // 2, FIXED_SEED, BUDGET_S / 2)
    fresh = fuzz(INPUTS - INPUTS // 2, varying, BUDGET_S / 2)
    took = time.monotonic() - start
    with capsys.disabled():
        print(f"\nfuzz: {fixed.inputs} inputs (seed {FIXED_SEED}) + {fresh.inputs} inputs (seed {varying}, "
              f"CONNWATCH_FUZZ_SEED={varying} repeats them) in {took:.1f} s")
    crashes = [f"case {seed:016x}: {crash.strip().splitlines()[-1]}"
               for seed, crash, _ in fixed.crashes + fresh.crashes]
    assert crashes == [], "\n".join(crashes[:20])
    assert fixed.inputs + fresh.inputs == INPUTS, "stopped by the time budget: the machine is too loaded"
