"""fastargs.py reads a command's plain options to the namespace argparse gives, or leaves the words to
argparse (None): over every command, each option with good and bad values, and random word lists."""

from __future__ import annotations

import importlib
import random
from typing import Any

import pytest

from connwatch import fastargs
from connwatch.cli import COMMANDS, build_parser

VALUES = ["json", "text", "own", "all", "1", "0", "0.5", "2.5", "70000", "-1", "abc", "", "x y", "1e9", "nan",
          "/proc", "--format", "-", "=", "10.0.0.1:80"]


def _argparse(name: str, words: list[str]) -> dict[str, Any] | None:
    """argparse's namespace as a dict, or None when it refuses the words (a usage error, help)."""
    try:
        return vars(build_parser(name).parse_args([name, *words]))
    except SystemExit:
        return None


def _options(name: str) -> fastargs.Recorder:
    recorder = fastargs.Recorder()
    importlib.import_module(f"connwatch.commands.{name}").add_arguments(recorder)
    return recorder


def _same(name: str, words: list[str]) -> bool:
    """Both parsers agree on `words` (or fastargs leaves them to argparse); True when fastargs read them."""
    fast = fastargs.parse(name, words)
    if fast is None:
        return False
    expected = _argparse(name, words)
    assert expected is not None, f"fastargs read {words!r}, argparse refuses them"
    assert _nan_named(vars(fast)) == _nan_named(expected), words
    return True


def _nan_named(values: dict[str, Any]) -> dict[str, Any]:
    """(float("nan") equals nothing, not even another nan: compared by name)"""
    return {k: "nan" if isinstance(v, float) and v != v else v for k, v in values.items()}


def _word_lists(name: str) -> list[list[str]]:
    recorder = _options(name)
    lists: list[list[str]] = [[], ["-h"], ["--help"], ["--"], ["bogus"], ["--bogus"]]
    for flag, option in recorder.options.items():
        lists += [[flag], [f"{flag}="], [flag[:-1]], [flag, flag]]
        for value in [*VALUES, *(option.choices or ())]:
            lists += [[flag, value], [f"{flag}={value}"], [flag, value, flag, "own"], [flag, value, "extra"]]
    return lists


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_alone_parses_as_argparse_parses_it(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    for words in _word_lists(name):
        _same(name, words)
    capsys.readouterr()  # (argparse's usage errors and help)


@pytest.mark.parametrize("name", COMMANDS)
def test_random_word_lists_parse_as_argparse_parses_them(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(f"fastargs {name}")
    pool = [*_options(name).options, *VALUES, "--no-netlink", "-n", "--format=json", "--netns=own"]
    for _ in range(400):
        _same(name, [rng.choice(pool) for _ in range(rng.randint(0, 6))])
    capsys.readouterr()


def test_defaults_follow_the_environment_as_argparse_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNWATCH_NETNS", "own")
    monkeypatch.setenv("CONNWATCH_PROC_ROOT", "/tmp/tree")
    assert _same("snapshot", []) and _same("listeners", ["--format", "json"])
    fast = fastargs.parse("snapshot", [])
    assert fast is not None and (fast.netns, fast.proc_root) == ("own", "/tmp/tree")


@pytest.mark.parametrize("words", [
    [], ["--format", "json"], ["--format=text", "--listeners-only"], ["--netns", "own", "--no-netlink"],
    ["--proc-root", "/tmp/x", "--format", "json", "--netns=all"],
])
def test_snapshot_and_listeners_plain_options_need_no_argparse(words: list[str]) -> None:
    """What bench_process and users run: read by fastargs (argparse not built), with argparse's values."""
    assert _same("snapshot", words)
    listeners = [w for w in words if w not in ("--listeners-only", "--format=text")]
    assert _same("listeners", listeners)


def test_what_fastargs_does_not_model_goes_to_argparse() -> None:
    """An option with nargs, a count or a const, a required one or a positional makes the whole command
    argparse's (append and version are modelled: -V is argparse's to print when given)."""
    recorder = fastargs.Recorder()
    recorder.add_argument("--interval", type=float, default=1.0)
    recorder.add_argument("--listen", action="append")
    recorder.add_argument("-V", "--version", action="version", version="x")
    assert recorder.plain
    assert fastargs._values(recorder.options, ["-V"]) is None and fastargs._values(recorder.options, []) == {
        "interval": 1.0, "listen": None}
    for args, kw in ((("-v",), {"action": "count"}), (("files",), {"nargs": "+"}), (("--x",), {"nargs": "?"}),
                     (("--x",), {"required": True}), (("--x",), {"action": "store_const", "const": 1})):
        one = fastargs.Recorder()
        one.add_argument(*args, **kw)
        assert not one.plain, (args, kw)
    group = fastargs.Recorder()
    group.add_mutually_exclusive_group()
    assert not group.plain
    assert fastargs.parse("analyze", ["file.txt"]) is None  # (a positional: argparse's)
