"""A command's arguments without argparse, where they are plain: what `connwatch CMD ...` parses to when every
word after CMD is one of CMD's own long or short options, exactly spelled, each option a flag or taking one
value. Anything else (help, an abbreviation, an unknown word, a value that looks like an option, a value
its type or choices refuse, an option this reader does not model) is left to argparse (None): its
messages and exit codes stay the only ones.

argparse and the building of the command's parser were 17.1 M instructions of `snapshot --format json`'s
122.2 M to its first kernel read (callgrind, issue 17; 105.1 M without), for a namespace of five values;
whole process at 35k sockets: CPU pair ratio 0.925 to the tree before (21 rounds, load 1.8-2.0).
The values are the ones argparse gives: the command module declares its options once
(add_arguments, given a Recorder here), and tests/unit/test_fastargs.py compares both parsers' namespaces
over every command and many argument lists.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from argparse import Namespace
    from collections.abc import Callable, Sequence
    from typing import Any
else:  # (the same attributes, set and read by name; argparse.Namespace would import argparse)
    from types import SimpleNamespace as Namespace

# Attributes argparse's top-level parser (cli.build_parser) sets beside the command's: its subcommand
# dest and the defaults of --print-completion and --print-man-page (-V and --help set none)
TOP_LEVEL = {"print_completion": None, "print_man_page": None}
_ACTIONS = (None, "store", "store_true", "store_false", "append", "version")
_MODELLED = frozenset(("action", "default", "choices", "type", "help", "metavar", "dest", "version"))


class _Option:
    """One add_argument() this reader models: a flag, an option taking one value (stored, or appended to a
    copy of the default list), or -V/--version (argparse's to print: it leaves no attribute)."""

    __slots__ = ("append", "choices", "convert", "default", "dest", "flag", "value", "version")

    def __init__(self, flags: tuple[str, ...], kw: dict[str, Any]) -> None:
        action = kw.get("action")
        self.flag = action in ("store_true", "store_false")
        self.value = action == "store_true"  # (the value a flag sets)
        self.append, self.version = action == "append", action == "version"
        long = [f for f in flags if f.startswith("--")]
        self.dest: str = kw.get("dest") or (long or list(flags))[0].lstrip("-").replace("-", "_")
        self.default = kw.get("default", (action == "store_false") if self.flag else None)
        self.choices = kw.get("choices")
        self.convert: Callable[[str], Any] | None = kw.get("type")

    def parsed(self, text: str) -> Any:
        """The value of `text` as argparse makes it (type, then choices); ValueError where argparse errs."""
        value = self.convert(text) if self.convert is not None else text
        if self.choices is not None and value not in self.choices:
            raise ValueError(text)
        return value


class Recorder:
    """Stands for the command's argparse parser in its add_arguments(): records the options; `plain` turns
    False at anything this reader does not model (then the command's arguments go to argparse)."""

    def __init__(self) -> None:
        self.options: dict[str, _Option] = {}
        self.plain = True

    def add_argument(self, *flags: str, **kw: Any) -> None:
        if not flags or not all(f.startswith("-") and f != "-" for f in flags) or kw.keys() - _MODELLED or \
                kw.get("action") not in _ACTIONS:
            self.plain = False
            return
        option = _Option(flags, kw)
        for flag in flags:
            self.options[flag] = option

    def __getattr__(self, name: str) -> Any:  # (add_mutually_exclusive_group, set_defaults...: not modelled)
        self.plain = False
        return lambda *_a, **_kw: self


def parse(name: str, words: Sequence[str]) -> Namespace | None:
    """`connwatch NAME WORDS...` as argparse parses it (NAME's module loaded), or None: left to argparse."""
    module = importlib.import_module(f"connwatch.commands.{name}")
    recorder = Recorder()
    module.add_arguments(recorder)
    if not recorder.plain:
        return None
    try:
        values = _values(recorder.options, words)
    except Exception:  # a value its type or choices refuse (argparse.ArgumentTypeError too): argparse's to say
        return None
    return None if values is None else Namespace(**TOP_LEVEL, command=name, **values, _module=module)


def _values(options: dict[str, _Option], words: Sequence[str]) -> dict[str, Any] | None:
    """dest -> value of every option (given or default), or None where argparse must read the words."""
    given: dict[str, Any] = {}
    i = 0
    while i < len(words):
        word = words[i]
        flag, eq, text = word.partition("=") if word.startswith("--") else (word, "", "")
        option = options.get(flag)
        if option is None or option.version:
            return None
        if option.flag:
            if eq:
                return None
            given[option.dest] = option.value
        else:
            if not eq:
                i += 1
                if i == len(words) or words[i].startswith("-"):  # (a missing value, or one argparse may read
                    return None  # as an option or a negative number)
                text = words[i]
            value = option.parsed(text)
            if option.append:  # (argparse appends to a copy of what is there: the default list first)
                value = [*given.get(option.dest, option.default or ()), value]
            given[option.dest] = value
        i += 1
    out = {}
    for option in options.values():
        if option.version:
            continue
        if option.dest in given:
            out[option.dest] = given[option.dest]
        elif isinstance(option.default, str) and option.convert is not None:  # (argparse converts it too)
            out[option.dest] = option.convert(option.default)
        else:
            out[option.dest] = option.default
    return out
