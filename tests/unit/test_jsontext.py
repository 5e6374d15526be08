"""outputs/jsontext.py writes json.dumps(value, indent=2, default=str)'s text: on fuzzed documents (every type
json writes, subclasses, keys json converts, objects it writes by str), on what json refuses (the same
error), and on snapshot documents of the fixture captures."""

from __future__ import annotations

import enum
import io
import json
import random
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from connwatch.cli import main
from connwatch.outputs import jsontext

PROC = Path(__file__).parents[1] / "fixtures" / "proc"


class Small(enum.IntEnum):
    ONE = 1


class Word(str):
    pass


class Thing:
    def __str__(self) -> str:
        return 'a "thing"\n'


SCALARS: list[Any] = ["", "plain", 'q"uote\\', "\x00\x1f\x7f", "é ß 日本 🙂", "\ud800", Word("w"), 0, -1, 2**70, True,
                      False, None, 0.0, -0.0, 1.5, 1e300, -1e-300, float("nan"), float("inf"), float("-inf"),
                      Small.ONE, Thing(), (1, "2"), b"bytes", {1, 2}.__class__.__name__]
KEYS: list[Any] = ["k", "", "é", 'a"b', 1, -2, 2.5, float("nan"), True, False, None, Small.ONE, Word("w")]


def _document(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 4 or roll < 0.45:
        return rng.choice(SCALARS)
    if roll < 0.7:
        items = [_document(rng, depth + 1) for _ in range(rng.randint(0, 4))]
        return tuple(items) if rng.random() < 0.2 else items
    return {rng.choice(KEYS): _document(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def test_fuzzed_documents_are_written_as_json_writes_them() -> None:
    rng = random.Random("jsontext")
    for _ in range(3000):
        doc = _document(rng)
        assert jsontext.dumps(doc) == json.dumps(doc, indent=2, default=str), doc


@pytest.mark.parametrize("doc", [{(1, 2): 3}, {"a": [{object(): 1}]}])
def test_keys_json_refuses_raise_jsons_error(doc: Any) -> None:
    with pytest.raises(TypeError) as ours:
        jsontext.dumps(doc)
    with pytest.raises(TypeError) as theirs:
        json.dumps(doc, indent=2, default=str)
    assert str(ours.value) == str(theirs.value)


def test_a_cycle_raises_jsons_error() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="Circular reference detected"):
        jsontext.dumps(cycle)


@pytest.mark.parametrize("capture", sorted(p.name for p in PROC.iterdir() if p.is_dir()))
def test_snapshot_documents_of_every_capture(capture: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The text `snapshot --format json` prints is json.dumps's of the document it parses back to."""
    monkeypatch.setenv("CONNWATCH_CONFIG", "")
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["snapshot", "--format", "json", "--proc-root", str(PROC / capture), "--no-netlink",
                     "--netns", "own"]) == 0
    text = out.getvalue()
    assert text == json.dumps(json.loads(text), indent=2) + "\n"
