"""SocketAggregator.summary's keying by address text (parsers/sock_diag.py _by_text, _destinations) against the
straightforward one it replaced: each key formatted on its own, counts merged into copies, an inode list per
destination. Random aggregates (synthetic: fuzzing only), with IPv4, IPv6 and IPv4-mapped IPv6 keys that merge."""

from __future__ import annotations

import _socket
import random

import pytest

from connwatch.model import STATE_NAMES, DestinationUsage
from connwatch.parsers.sock_diag import _NSTATES, _OWNER_SAMPLE, SocketAggregator, format_address

V4MAPPED = b"\0" * 10 + b"\xff\xff"


def _reference(agg: SocketAggregator) -> tuple[DestinationUsage, ...]:
    dests: dict[tuple[str, str, int], list[int]] = {}
    inodes: dict[tuple[str, str, int], list[int]] = {}
    for (fam, src, dst, dport), counts in agg.destinations.items():
        name = (format_address(fam, src), format_address(fam, dst), _socket.ntohs(dport))
        have = dests.get(name)
        if have is None:
            dests[name] = list(counts)
        else:
            for i, n in enumerate(counts):
                have[i] += n
        inodes.setdefault(name, []).extend(agg.owner_inodes.get((fam, src, dst, dport), ()))
    return tuple(DestinationUsage(local_address=local, remote_address=remote, remote_port=port,
                                  states={STATE_NAMES[i]: n for i, n in enumerate(counts[:_NSTATES]) if n},
                                  time_wait_young=counts[_NSTATES],
                                  owner_inodes=tuple(inodes.get((local, remote, port), ())[:_OWNER_SAMPLE]))
                 for (local, remote, port), counts in dests.items())


def _address(rng: random.Random, v4: bytes) -> tuple[int, bytes]:
    """One address as the kernel gives it (16 bytes): IPv4, the same IPv4 mapped into IPv6, or IPv6."""
    kind = rng.randrange(3)
    if kind == 0:
        return _socket.AF_INET, v4 + bytes(12)
    if kind == 1:
        return _socket.AF_INET6, V4MAPPED + v4
    return _socket.AF_INET6, bytes([0x20, 0x01, 0x0d, 0xb8]) + bytes(11) + v4[3:]


def _random_aggregator(rng: random.Random, size: int) -> SocketAggregator:
    agg = SocketAggregator(frozenset())
    for _ in range(size):
        local = bytes([10, 0, 0, rng.randrange(1, 4)])
        remote = bytes([192, 0, 2, rng.randrange(1, 40)])
        fam, src = _address(rng, local)
        _fam, dst = _address(rng, remote)
        if _fam != fam:  # (a socket's addresses are of one family)
            dst = (V4MAPPED + remote) if fam == _socket.AF_INET6 else remote + bytes(12)
        key = (fam, src, dst, _socket.htons(rng.choice((80, 443, 9100))))
        counts = agg.destinations.setdefault(key, [0] * (_NSTATES + 1))
        counts[rng.randrange(1, _NSTATES)] += rng.randrange(1, 4)
        counts[_NSTATES] += rng.randrange(2)
        if rng.random() < 0.5:
            agg.owner_inodes.setdefault(key, []).extend(rng.randrange(1, 10**6) for _ in range(rng.randrange(1, 6)))
    return agg


@pytest.mark.parametrize("seed", range(40))
def test_the_summary_keys_destinations_as_the_straightforward_keying_does(seed: int) -> None:
    rng = random.Random(seed)
    agg = _random_aggregator(rng, rng.randrange(0, 300))
    counted = {k: list(v) for k, v in agg.destinations.items()}
    want = _reference(agg)
    got = agg.summary().destinations
    assert got == want
    assert agg.destinations == counted  # merging made new lists: the aggregator's counts are as counted
    assert agg.summary().destinations == want  # and a second summary is the same


def test_merged_keys_add_up_and_keep_their_owner_inodes_bounded() -> None:
    agg = SocketAggregator(frozenset())
    v4 = bytes([192, 0, 2, 7])
    port = _socket.htons(443)
    plain = (_socket.AF_INET, bytes([10, 0, 0, 1]) + bytes(12), v4 + bytes(12), port)
    mapped = (_socket.AF_INET6, V4MAPPED + bytes([10, 0, 0, 1]), V4MAPPED + v4, port)
    agg.destinations[plain] = [0, 2, *([0] * (_NSTATES - 1))]
    agg.destinations[mapped] = [0, 3, *([0] * (_NSTATES - 1))]
    agg.owner_inodes[plain] = list(range(1, 6))
    agg.owner_inodes[mapped] = list(range(6, 12))
    [d] = agg.summary().destinations
    assert (d.local_address, d.destination, d.total) == ("10.0.0.1", "192.0.2.7:443", 5)
    assert d.owner_inodes == tuple(range(1, 1 + _OWNER_SAMPLE))
