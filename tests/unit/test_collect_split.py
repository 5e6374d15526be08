"""collect's TIME_WAIT dumped apart (CollectOptions.split_time_wait): two dumps, each one walk for both
families (the legacy request), into one aggregate equal to one dump of every state; a kernel that refuses
the legacy request gets the per-family dumps."""

from __future__ import annotations

import struct

import pytest

from connwatch.collect import CollectOptions, _all_sockets, _sockets
from connwatch.errors import SourceUnavailable
from connwatch.model import SourceStatus
from connwatch.sources.procfs import ProcFS

from .test_collect_tw import LISTEN_PORTS, FakeDiag, _messages, _normal, _summary

TCPDIAG_GETSOCK = 18


class _Kernel(FakeDiag):
    """Answers a per-family request or, unless `legacy` is False (then EINVAL, as an old kernel without
    the compat request would), a legacy both-family one."""

    def __init__(self, legacy: bool) -> None:
        super().__init__()
        self.legacy = legacy
        self.asked: list[str] = []

    def send(self, data: bytes, /) -> int:
        if struct.unpack_from("=H", data, 4)[0] == TCPDIAG_GETSOCK:
            self.asked.append("legacy")
            if not self.legacy:
                self.refuse(data)
                return len(data)
            self.answer(2, struct.unpack_from("=I", data, 16 + 52)[0])
        else:
            self.asked.append(f"family {data[16]}")
            self.answer(data[16], struct.unpack_from("=I", data, 20)[0])
        return len(data)


def test_split_dumps_equal_one_dump() -> None:
    kernel = _Kernel(legacy=True)
    got = _all_sockets(kernel, LISTEN_PORTS, None, [], False, split=True)
    assert kernel.asked == ["legacy", "legacy"]
    assert _normal(got) == _normal(_summary(_messages())) and got.by_state.get("TIME_WAIT")


def test_a_refused_legacy_request_falls_back_to_per_family_dumps() -> None:
    kernel = _Kernel(legacy=False)
    got = _all_sockets(kernel, LISTEN_PORTS, None, [], False, split=True)
    assert kernel.asked == ["legacy", "family 2", "family 10", "family 2", "family 10"]
    assert _normal(got) == _normal(_summary(_messages()))


def test_one_walk_asked_for_a_refusal_propagates() -> None:
    try:
        _all_sockets(_Kernel(legacy=False), LISTEN_PORTS, None, [], True, split=True)
    except SourceUnavailable as exc:
        assert "EINVAL" in str(exc)
    else:
        raise AssertionError("the refusal was not raised")


def _live_sockets(kernel: _Kernel, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """collect's _sockets on a live (not recorded) sample, its netlink socket being `kernel`: how many
    listeners and sockets it saw."""
    from connwatch.sources import netlink

    monkeypatch.setattr(netlink, "open_socket", lambda: kernel)
    statuses: list[SourceStatus] = []
    listeners, summary = _sockets(CollectOptions(owners=False), ProcFS("/nonexistent"), statuses, [], None)
    assert all(s.ok for s in statuses), statuses
    assert summary is not None
    return len(listeners), summary.total


def test_a_live_sample_walks_once_for_both_families(monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = _Kernel(legacy=True)
    per_family = _Kernel(legacy=False)
    assert _live_sockets(kernel, monkeypatch) == _live_sockets(per_family, monkeypatch)
    assert kernel.asked == ["legacy", "legacy"]  # the listeners, then every other state: one walk each


def test_a_kernel_refusing_the_one_walk_is_asked_per_family_for_the_whole_sample(
        monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = _Kernel(legacy=False)
    listeners, total = _live_sockets(kernel, monkeypatch)
    assert listeners == len([m for m in _messages() if m[17] == 10])
    assert kernel.asked == ["legacy", "family 2", "family 10", "family 2", "family 10"]
    assert total == len([m for m in _messages() if m[17] != 10])
