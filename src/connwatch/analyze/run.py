"""Command-line arguments -> captures -> Analysis. Errors about files are collected, never raised."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from connwatch.analyze import detect as fmt
from connwatch.analyze.build import Capture, finish, read_file_into
from connwatch.analyze.hostfacts import DEFAULT_RANGES
from connwatch.analyze.inputs import InputFile, expand, read_head
from connwatch.analyze.report import Analysis, analyse
from connwatch.errors import ParseError
from connwatch.model import Snapshot
from connwatch.rules.config import Config


def _kind(f: InputFile) -> str | None:
    try:
        head, enc = read_head(f)
    except ParseError:
        return None
    return fmt.detect(head.decode(enc, "replace"), f.rel)


def gather(args: Sequence[str]) -> tuple[list[Capture], list[str]]:
    """Group the arguments into captures of one host, in order.

    A directory or tarball is one capture. Plain files join the current capture until a format
    repeats (`ss-1.txt nstat-1.txt ss-2.txt nstat-2.txt` is two captures taken apart).
    """
    captures: list[Capture] = []
    errors: list[str] = []
    loose: Capture | None = None
    for arg in args:
        try:
            files, whole = expand(arg)
        except ParseError as exc:
            errors.append(str(exc))
            continue
        if whole:
            cap = Capture(arg)
            for f in files:
                read_file_into(cap, f)
            captures.append(cap)
            loose = None
            continue
        f = files[0]
        kind = _kind(f)
        if loose is None or (kind is not None and (kind in loose.formats or kind == fmt.SNAPSHOT)):
            loose = Capture(arg)
            captures.append(loose)
        else:
            loose.name = f"{loose.name} + {arg}" if len(loose.name) < 200 else loose.name
        read_file_into(loose, f, kind)
    for cap in captures:
        errors.extend(cap.errors)
    return [c for c in captures if c.files], errors


def _check_one_host(captures: list[Capture], snaps: list[Snapshot]) -> list[str]:
    problems = []
    names = {s.host.hostname for c, s in zip(captures, snaps, strict=True) if c.snapshot is not None}
    if len(names) > 1:
        problems.append(f"{captures[-1].name}: captures of different hosts ({', '.join(sorted(names))}): "
                        "analyze one host per invocation")
    platforms = {s.host.platform for s in snaps}
    if len(platforms) > 1:
        problems.append(f"{captures[-1].name}: captures of different platforms ({', '.join(sorted(platforms))}): "
                        "analyze one host per invocation")
    return problems


def run_analysis(args: Sequence[str], config: Config, interval: float | None,
                 port_range: tuple[int, int] | None, somaxconn: int | None) -> tuple[Analysis | None, list[str]]:
    captures, errors = gather(args)
    if not captures:
        return None, errors
    snaps = []
    for cap in captures:
        default = DEFAULT_RANGES.get(cap.platform, DEFAULT_RANGES["linux"])
        snap = finish(cap, port_range or cap.sysctls.ip_local_port_range or default)
        snaps.append(_overrides(snap, cap, port_range, somaxconn))
    problems = _check_one_host(captures, snaps)
    if problems:
        return None, errors + problems
    if len(snaps) > 1 and interval is None and not all(c.timestamped for c in captures):
        captures[-1].notes.append(f"{len(snaps)} captures given but no timestamps: pass --interval SECONDS "
                                  "(time between them) for rates; analysed the last one alone")
        captures, snaps = captures[-1:], snaps[-1:]
    return analyse(captures, snaps, config, interval, errors), errors


def _overrides(snap: Snapshot, cap: Capture, port_range: tuple[int, int] | None, somaxconn: int | None) -> Snapshot:
    sysctls = snap.sysctls
    notes = list(snap.limitations)
    if port_range is not None:
        sysctls = replace(sysctls, ip_local_port_range=port_range)
    elif sysctls.ip_local_port_range is None:
        default = DEFAULT_RANGES.get(snap.host.platform, DEFAULT_RANGES["linux"])
        sysctls = replace(sysctls, ip_local_port_range=default)
        notes.append(f"ephemeral port range not in the capture: assumed the {snap.host.platform} default "
                     f"{default[0]}–{default[1]} (override with --port-range LO-HI)")
    if somaxconn is not None:
        sysctls = replace(sysctls, somaxconn=somaxconn)
    return replace(snap, sysctls=sysctls, limitations=tuple(dict.fromkeys(notes)))
