"""The replay seam (sources/recorded.py): recorded sock_diag replies answer only the request recorded."""

from __future__ import annotations

import shutil
from pathlib import Path

from connwatch.clock import FakeClock
from connwatch.collect import CollectOptions, collect
from connwatch.model import Snapshot

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "e2e" / "backlog_stuck_timewait" / "after"


def _collect(replay: Path | str) -> Snapshot:
    return collect(FakeClock(), CollectOptions(proc_root=str(SAMPLE), replay=str(replay), owners=False))


def _status(snap: Snapshot, name: str) -> tuple[bool, str]:
    [status] = [s for s in snap.statuses if s.name == name]
    return status.ok, status.detail


def test_replay_decodes_the_recorded_listeners_and_sockets() -> None:
    snap = _collect(SAMPLE / "sock_diag")
    assert [(x.port, x.address, x.queue, x.backlog, x.drops) for x in snap.listeners] == [
        (8080, "127.0.0.1", 6, 5, 170), (8081, "127.0.0.1", 0, 128, 0), (8081, "::1", 0, 128, 0)]
    assert snap.sockets is not None and snap.sockets.by_state["TIME_WAIT"] == 500
    assert snap.limitations == ()


def test_a_request_other_than_the_recorded_one_is_refused(tmp_path: Path) -> None:
    replay = tmp_path / "sock_diag"
    shutil.copytree(SAMPLE / "sock_diag", replay)
    path = replay / "listeners-ipv4.hex"
    request, rest = path.read_text().split("\n", 1)
    path.write_text(request[:-2] + ("00" if not request.endswith("00") else "01") + "\n" + rest)
    snap = _collect(replay)
    expected = (False, "netlink sock_diag IPv4: unavailable: Protocol error")
    assert _status(snap, "netlink sock_diag listeners") == expected
    assert any("read /proc/net/tcp instead" in note for note in snap.limitations)


def test_missing_ipv6_recording_reads_as_a_kernel_without_ipv6_diag(tmp_path: Path) -> None:
    replay = tmp_path / "sock_diag"
    shutil.copytree(SAMPLE / "sock_diag", replay)
    for path in replay.glob("*-ipv6.hex"):
        path.unlink()
    snap = _collect(replay)
    assert [x.family for x in snap.listeners] == [4, 4]
    assert snap.limitations == ("IPv6 sockets not visible (netlink sock_diag IPv6: unavailable: No such file or "
                                "directory): the kernel has no IPv6 sock_diag support",)


def test_missing_replay_directory_is_named(tmp_path: Path) -> None:
    snap = _collect(tmp_path / "nowhere")
    ok, detail = _status(snap, "netlink sock_diag")
    assert not ok and str(tmp_path / "nowhere") in detail and "recorded replies" in detail
