"""What a SocketAggregator ends with after some reply chunks: the column paths (sock_diag_run, sock_diag_full)
are compared with the slim loop through it (test_sock_diag_run.py, test_sock_diag_full.py)."""

from __future__ import annotations

from typing import Any

from connwatch.errors import ParseError, SourceUnavailable
from connwatch.parsers.sock_diag import SocketAggregator
from connwatch.parsers.sock_diag_run import flush


def aggregate_state(agg: SocketAggregator) -> list[Any]:
    """Every table the decoder fills, in insertion order (the order is part of what must agree)."""
    return [agg.total, agg.by_state, list(agg.destinations.items()), list(agg.owner_inodes.items()),
            [(p, list(a.items())) for p, a in agg.sources.items()], list(agg.closed.items()),
            list(agg.accepts.items())]


def outcome(parts: list[bytes], slim: bool, listening: frozenset[int]) -> tuple[Any, ...]:
    """The decoder's end (each chunk's return, or the error it raised) and its tables; runs still waiting to
    be keyed (agg.pending: summary() keys them) are keyed before the tables are compared. `slim`: every
    chunk by the slim loop alone, the reference."""
    agg = SocketAggregator(listening, 1000)
    ends = []
    try:
        for chunk in parts:
            ends.append(agg._slim(chunk, 0) if slim else agg(chunk))
    except (ParseError, SourceUnavailable) as exc:
        flush(agg)
        return ("raised", type(exc).__name__, str(exc), aggregate_state(agg))
    flush(agg)
    return ("ended", ends, aggregate_state(agg), agg.summary())
