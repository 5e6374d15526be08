"""`connwatch top` on a terminal: the alternate screen, cbreak keys, redraw after every poll and key.

Keys: q quit; p or space pause; Tab next pane, 1-4 one pane (listeners, destinations, sources, alerts),
0 or a all panes; s next sort of the shown pane (the overview sorts listeners); f port filter, n namespace
filter (type, Enter applies, Esc cancels); c clears the filters. The terminal mode is restored on any exit
(q, Ctrl-C, an error)."""

from __future__ import annotations

import argparse
import os
import select
import sys
import termios
import time
import tty
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connwatch.commands.top import Sampler
    from connwatch.outputs.top import TopView

ESC, TAB, ENTER, BACKSPACE = "\x1b", "\t", ("\r", "\n"), ("\x7f", "\x08")


def handle(view: TopView, key: str) -> bool:
    """Apply one key to the view; False means quit."""
    from connwatch.outputs.top import PANES, SORTS

    if view.prompt is not None:
        return _typing(view, key)
    if key in ("q", "Q", "\x03"):
        return False
    if key in ("p", " "):
        view.paused = not view.paused
    elif key == TAB:
        view.pane = PANES[(PANES.index(view.pane) + 1) % len(PANES)]
    elif key in "01234a" and len(key) == 1:
        view.pane = PANES[0 if key == "a" else int(key)]
    elif key == "s":
        pane = "listeners" if view.pane == "all" else view.pane
        if pane in SORTS:
            view.sort[pane] = view.sort.get(pane, 0) + 1
    elif key in ("f", "/"):
        view.prompt, view.typed = "port", ""
    elif key == "n":
        view.prompt, view.typed = "namespace", ""
    elif key == "c":
        view.port = view.namespace = None
    return True


def _typing(view: TopView, key: str) -> bool:
    if key == ESC:
        view.prompt = None
    elif key in ENTER:
        text = view.typed.strip()
        if view.prompt == "port":
            view.port = int(text) if text.isdigit() and 0 < int(text) < 65536 else None
        else:
            view.namespace = text or None
        view.prompt = None
    elif key in BACKSPACE:
        view.typed = view.typed[:-1]
    elif key.isprintable() and len(view.typed) < 40 and (view.prompt != "port" or key.isdigit()):
        view.typed += key
    return True


def keys(data: bytes) -> list[str]:
    """Bytes read from the terminal as keys; an escape sequence (an arrow key) is one ignored key."""
    text, out, i = data.decode(errors="replace"), [], 0
    while i < len(text):
        if text[i] == ESC and i + 1 < len(text) and text[i + 1] in "[O":
            j = i + 2
            while j < len(text) and not text[j].isalpha() and text[j] != "~":
                j += 1
            out.append(text[i:j + 1])
            i = j + 1
            continue
        out.append(text[i])
        i += 1
    return out


def interactive(args: argparse.Namespace, sampler: Sampler, view: TopView) -> int:
    from rich.live import Live

    from connwatch.outputs.console import console
    from connwatch.outputs.top import frame

    out = console()
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    live = Live(console=out, screen=True, auto_refresh=False, transient=True, redirect_stdout=False,
                redirect_stderr=False)
    try:
        tty.setcbreak(fd)
        live.start()
        assert sampler.data is not None  # the first listener poll: drawn at once, before the full sample
        live.update(frame(sampler.data, view, out.size.width, out.size.height), refresh=True)
        shown = 1
        next_full = time.monotonic()
        next_poll = next_full + args.listener_interval
        while args.iterations is None or shown < args.iterations:
            now = time.monotonic()
            if not view.paused and now >= next_full:
                sampler.full()
                next_full = now + args.interval
            if not view.paused and now >= next_poll:
                sampler.poll()
                next_poll = now + args.listener_interval
            live.update(frame(sampler.data, view, out.size.width, out.size.height), refresh=True)
            shown += 1
            wait = 0.5 if view.paused else max(min(next_poll, next_full) - time.monotonic(), 0.0)
            ready, _, _ = select.select([fd], [], [], wait)
            if ready:
                for key in keys(os.read(fd, 64)):
                    if not handle(view, key):
                        return 0
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        live.stop()
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
