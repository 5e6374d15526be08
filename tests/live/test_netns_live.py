"""Real kernel: every network namespace sampled from inside it (collect_all).

Namespaces, processes and cgroups made here are removed at the end, also on failure. Traffic only
on the namespaces' own loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import pytest

from connwatch.clock import SystemClock
from connwatch.collect import CollectOptions, sample
from connwatch.collect_netns import NETNS_SOURCE, NetnsListenerPoller, collect_all, collect_netns, discover
from connwatch.errors import SelectorError
from connwatch.model import NetnsInfo, Snapshot
from connwatch.sources.containers import NamingRoots
from connwatch.sources.netns import NetnsRef, run_in_netns
from connwatch.sources.procfs import ThreadNetProcFS

from .netns import Netns, netns, poll
from .unprivileged import world_readable_site as _world_readable_site

PORT = 9200


def _inode(ns: Netns) -> int:
    return os.stat(f"/run/netns/{ns.name}").st_ino


def _by_name(snaps: list[Snapshot], *spaces: Netns) -> dict[str, Snapshot]:
    names = {ns.name for ns in spaces}
    return {s.netns.name: s for s in snaps if s.netns is not None and s.netns.name in names}


def test_a_flood_shows_only_in_its_own_namespace(ns: Netns) -> None:
    with ExitStack() as stack:
        spaces = [ns, stack.enter_context(netns()), stack.enter_context(netns())]
        for space in spaces:
            space.python("listener.py", "--port", str(PORT), "--backlog", "5")
        flooded = spaces[0]
        before = _by_name(collect_all(SystemClock()), *spaces)
        nstat_before = flooded.nstat("TcpExtListenOverflows")
        flood = flooded.python("flood.py", "--port", str(PORT), "--count", "40", "--hold", "30")
        assert poll(lambda: flooded.ss_drops(PORT) >= 20, 15)
        flood.kill()
        flood.wait(10)  # its SYN_SENT sockets are gone: the counters stop moving
        after = _by_name(collect_all(SystemClock()), *spaces)
        nstat_delta = flooded.nstat("TcpExtListenOverflows") - nstat_before
    assert set(after) == {s.name for s in spaces}
    deltas = {name: after[name].counters["TcpExt.ListenOverflows"] - before[name].counters["TcpExt.ListenOverflows"]
              for name in after}
    assert nstat_delta > 0 and deltas[flooded.name] == nstat_delta
    assert all(deltas[s.name] == 0 for s in spaces[1:])
    [hot] = after[flooded.name].listeners_on(PORT)
    assert hot.drops is not None and hot.drops >= 20 and hot.backlog == 5
    for quiet in spaces[1:]:
        [lst] = after[quiet.name].listeners_on(PORT)
        assert lst.drops == 0 and lst.queue == 0
        assert lst.owner is not None and lst.owner.pid == quiet.procs[0].pid  # owners through /proc/<pid>/fd
    assert all(s.netns is not None and not s.netns.own for s in after.values())


def _cgroup2_mount() -> Path | None:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        if fields[sep + 1] == "cgroup2" and fields[4].startswith("/sys/fs/cgroup"):
            return Path(fields[4])
    return None


@contextmanager
def pod_cgroup(pod_uid: str, container_id: str) -> Iterator[Path]:
    """A real cgroup named like a kubelet pod's container; processes moved out and the directories
    this test made removed at the end."""
    base = _cgroup2_mount()
    if base is None:
        pytest.skip("needs a cgroup v2 hierarchy under /sys/fs/cgroup")
    parts = ["kubepods.slice", "kubepods-besteffort.slice",
             f"kubepods-besteffort-pod{pod_uid.replace('-', '_')}.slice", f"cri-containerd-{container_id}.scope"]
    made: list[Path] = []
    path = base
    try:
        for part in parts:
            path = path / part
            if not path.exists():
                path.mkdir()
                made.append(path)
        yield path
    finally:
        for folder in reversed(made):
            with suppress(OSError):
                for pid in (folder / "cgroup.procs").read_text().split():
                    (base / "cgroup.procs").write_text(pid)
            assert poll(lambda f=folder: _rmdir(f), 5), f"could not remove {folder}"  # type: ignore[misc]


def _rmdir(folder: Path) -> bool:
    try:
        folder.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def test_a_namespace_is_named_as_the_pod_and_container_its_process_runs_in(ns: Netns, tmp_path: Path) -> None:
    pod_uid, cid = str(uuid.uuid4()), uuid.uuid4().hex + uuid.uuid4().hex
    logs = tmp_path / "log"  # the kubelet's layout: /var/log/pods/<ns>_<pod>_<uid>, /var/log/containers/...
    (logs / "pods" / f"shop_checkout-7d9f_{pod_uid}" / "checkout").mkdir(parents=True)
    (logs / "containers").mkdir()
    (logs / "containers" / f"checkout-7d9f_shop_checkout-{cid}.log").write_text("")
    naming = NamingRoots(logs=str(logs))
    listener = ns.python("listener.py", "--port", str(PORT), "--backlog", "5")
    with pod_cgroup(pod_uid, cid) as cgroup:
        (cgroup / "cgroup.procs").write_text(str(listener.pid))
        comm = Path(f"/proc/{listener.pid}/comm").read_text().strip()
        assert f"cri-containerd-{cid}.scope" in Path(f"/proc/{listener.pid}/cgroup").read_text()
        [snap] = collect_all(SystemClock(), selector="shop/checkout-7d9f", naming=naming)
        listener.kill()
        listener.wait(10)
    info = snap.netns
    assert info is not None and info.inode == _inode(ns) and info.name == ns.name
    assert info.pod is not None and info.pod.uid == pod_uid and info.pod.label == "shop/checkout-7d9f"
    assert info.container is not None and info.container.id == cid and info.container.runtime == "containerd"
    assert info.label == "pod shop/checkout-7d9f (container checkout)"
    assert info.pid == listener.pid and info.command == comm
    [lst] = snap.listeners_on(PORT)
    assert lst.owner is not None and lst.owner.pid == listener.pid


def test_each_namespace_is_read_with_its_own_port_range(ns: Netns) -> None:
    with netns() as other:
        ns.sysctl("net.ipv4.ip_local_port_range", "40000 40099")
        other.sysctl("net.ipv4.ip_local_port_range", "50000 50999")
        other.sysctl("net.core.somaxconn", "16")
        snaps = collect_all(SystemClock(), CollectOptions(owners=False))
    mine = _by_name(snaps, ns, other)
    assert mine[ns.name].sysctls.ip_local_port_range == (40000, 40099)
    assert mine[other.name].sysctls.ip_local_port_range == (50000, 50999)
    assert mine[other.name].sysctls.somaxconn == 16 and mine[ns.name].sysctls.somaxconn != 16
    [own] = [s for s in snaps if s.netns is not None and s.netns.own]
    assert own.sysctls.ip_local_port_range not in {(40000, 40099), (50000, 50999)}
    for snap in mine.values():  # host-wide in a child namespace: not applicable, not a failure
        assert snap.sysctls.tcp_max_orphans is None
        [status] = [x for x in snap.statuses if x.name == "sysctl"]
        assert status.ok and "tcp_max_orphans: not applicable" in status.detail
    assert own.sysctls.tcp_max_orphans is not None


def test_a_deleted_namespace_gives_no_exception_and_no_data(ns: Netns) -> None:
    with netns() as gone:
        gone.python("listener.py", "--port", str(PORT), "--backlog", "5")
        ns.python("listener.py", "--port", str(PORT), "--backlog", "7")
        first = _by_name(collect_all(SystemClock()), ns, gone)
        inode = _inode(gone)
        stale = NetnsRef(inode, pids=(gone.procs[0].pid,), paths=(f"/run/netns/{gone.name}",), name=gone.name)
    assert [x.backlog for x in first[gone.name].listeners_on(PORT)] == [5]
    second = collect_all(SystemClock())
    assert inode not in {s.netns.inode for s in second if s.netns is not None}
    [kept] = _by_name(second, ns).values()
    assert [x.backlog for x in kept.listeners_on(PORT)] == [7]
    # Vanished between enumeration and sampling: a failed source, no values (not zeros).
    snap = collect_netns(SystemClock(), CollectOptions(), stale, NetnsInfo(inode, name=gone.name))
    [status] = snap.statuses
    assert status.name == NETNS_SOURCE and not status.ok and "no longer exists" in status.detail
    assert snap.listeners == () and snap.counters == {} and snap.sockets is None
    assert snap.sysctls.somaxconn is None and "netns " + gone.name in snap.limitations[0]


def test_a_reused_pid_is_not_taken_for_the_namespace_it_had(ns: Netns) -> None:
    """The pid now lives in another namespace (here: this test's own): the inode check refuses it."""
    stale = NetnsRef(_inode(ns) + 1_000_000, pids=(os.getpid(),))
    snap = collect_netns(SystemClock(), CollectOptions(), stale, NetnsInfo(stale.inode))
    assert not snap.statuses[0].ok and snap.listeners == () and snap.counters == {}


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv to drop privileges")
def test_non_root_sees_only_its_own_namespace_and_says_so(ns: Netns, tmp_path: Path) -> None:
    with netns() as other:
        other.python("listener.py", "--port", str(PORT), "--backlog", "5")
        ns.python("listener.py", "--port", str(PORT), "--backlog", "7")
        site = _world_readable_site(tmp_path)
        os.chmod(tmp_path, 0o777)
        code = ("import json\nfrom connwatch.clock import SystemClock\n"
                "from connwatch.collect_netns import collect_all\n"
                "snaps = collect_all(SystemClock())\n"
                "print(json.dumps([{'inode': s.netns.inode, 'own': s.netns.own, 'limits': list(s.limitations),"
                " 'backlogs': [x.backlog for x in s.listeners]} for s in snaps]))\n")
        python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
        done = ns.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c", code],
                      check=False, env={**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(site)})
    assert done.returncode == 0, done.stderr
    [snap] = json.loads(done.stdout)
    assert snap["own"] and snap["inode"] == _inode(ns) and snap["backlogs"] == [7]
    assert any("only connwatch's own network namespace" in x and "run as root" in x for x in snap["limits"])


@pytest.mark.parametrize("workers", [1, 2])
def test_the_listener_poll_sees_each_namespace_and_lets_a_deleted_one_go(ns: Netns, workers: int) -> None:
    """One thread, or the namespaces split over two (min_per_worker=1: the parallel path with few namespaces)."""
    ns.python("listener.py", "--port", str(PORT), "--backlog", "5")
    ns.python("listener.py", "--host", "::1", "--port", str(PORT), "--backlog", "6")
    poller = NetnsListenerPoller(workers=workers, min_per_worker=1)
    try:
        with netns() as gone:
            gone.python("listener.py", "--port", str(PORT), "--backlog", "9")
            refs = [ref for ref, _ in discover(CollectOptions())[0]]
            poller.refresh(refs)
            first = poller.poll()
            inode = _inode(gone)
            assert [x.backlog for x in first[inode] or ()] == [9]
            flood = ns.python("flood.py", "--port", str(PORT), "--count", "20", "--hold", "30")
            assert poll(lambda: ns.ss_drops(PORT) > 0, 15)
            flood.kill()
            flood.wait(10)
        mine = poller.poll()[_inode(ns)] or ()
        # One legacy dump carries both families, with the same values as two per-family dumps.
        assert sorted((x.family, x.backlog) for x in mine) == [(4, 5), (6, 6)]
        [v4] = [x for x in mine if x.family == 4]
        assert v4.drops == ns.ss_drops(PORT) > 0 and v4.queue == 6
        assert poll(lambda: inode not in {r.inode for r, _ in discover(CollectOptions())[0]}, 10)
        poller.refresh(ref for ref, _ in discover(CollectOptions())[0])
        assert inode not in poller.poll()  # its socket closed: the namespace is released, not polled
    finally:
        poller.close()


MANY = """
import socket, time
socks = []
for port in range(9260, 9220, -1):  # (bound in descending order: the kernel's hash order is not the port order)
    for fam, host in ((socket.AF_INET6, '::1'), (socket.AF_INET, '127.0.0.1')):
        s = socket.socket(fam); s.bind((host, port)); s.listen(8); socks.append(s)
print('READY', flush=True)
time.sleep(60)
"""


def test_a_poll_of_unchanged_listeners_equals_the_full_sample_order_included(ns: Netns) -> None:
    """The /metrics listener families are kept while the listeners they show are equal (agent/loop.py):
    a poll gives a full sample's listeners in the full sample's order, not the kernel's."""
    proc = ns.popen([sys.executable, "-c", MANY])
    assert proc.stdout is not None and proc.stdout.readline().startswith("READY")
    found = [(ref, info) for ref, info in discover(CollectOptions())[0] if ref.inode == _inode(ns)]
    poller = NetnsListenerPoller(workers=1)
    try:
        poller.refresh(ref for ref, _ in found)
        polled = poller.poll()[_inode(ns)]
        full = collect_netns(SystemClock(), CollectOptions(owners=False), *found[0])
    finally:
        poller.close()
    assert polled is not None and len(polled) == 80
    assert polled == full.listeners
    assert [x.port for x in polled] == sorted(x.port for x in polled)


MIXED = """
import socket, time
socks = []
for fam, host in ((socket.AF_INET, '127.0.0.1'), (socket.AF_INET6, '::1')):
    srv = socket.socket(fam, socket.SOCK_STREAM); srv.bind((host, PORT)); srv.listen(16); socks.append(srv)
    for i in range(6):
        c = socket.create_connection((host, PORT)); a, _ = srv.accept(); socks += [c, a]
    for i in range(3):  # active close by the client: TIME_WAIT on the client side
        c = socket.create_connection((host, PORT)); a, _ = srv.accept(); c.close(); a.close()
print('READY', flush=True)
time.sleep(60)
"""


def test_one_kernel_walk_sees_the_same_sockets_as_two(ns: Netns) -> None:
    """The legacy TCPDIAG_GETSOCK dump used inside other namespaces (both families in one walk)
    gives the same listeners and socket aggregates as the two per-family dumps collect() makes."""
    proc = ns.popen([sys.executable, "-c", MIXED.replace("PORT", str(PORT))])
    assert proc.stdout is not None and proc.stdout.readline().startswith("READY")
    fd = os.open(f"/run/netns/{ns.name}", os.O_RDONLY)
    try:
        two = run_in_netns(fd, lambda: collect_sample(CollectOptions(owners=False)))
        one = run_in_netns(fd, lambda: collect_sample(CollectOptions(owners=False, one_walk=True)))
    finally:
        os.close(fd)
    assert {x.family for x in one.listeners} == {4, 6}
    assert [(x.family, x.address, x.port, x.backlog, x.inode) for x in one.listeners] == \
           [(x.family, x.address, x.port, x.backlog, x.inode) for x in two.listeners]
    assert one.sockets is not None and two.sockets is not None
    assert dict(one.sockets.by_state) == dict(two.sockets.by_state)
    assert one.sockets.by_state["ESTABLISHED"] == 24 and one.sockets.by_state["TIME_WAIT"] == 6
    assert sorted((d.destination, dict(d.states)) for d in one.sockets.destinations) == \
           sorted((d.destination, dict(d.states)) for d in two.sockets.destinations)
    assert sorted((s.source, s.port, dict(s.states)) for s in one.sockets.sources) == \
           sorted((s.source, s.port, dict(s.states)) for s in two.sockets.sources)


def collect_sample(opts: CollectOptions) -> Snapshot:
    return sample(SystemClock(), opts, ThreadNetProcFS())


def test_a_pid_or_a_path_selects_one_namespace_and_a_wrong_one_is_one_line(ns: Netns, tmp_path: Path) -> None:
    listener = ns.python("listener.py", "--port", str(PORT), "--backlog", "5")
    for selector in (str(listener.pid), f"/run/netns/{ns.name}", f"/proc/{listener.pid}/ns/net", ns.name):
        [snap] = collect_all(SystemClock(), CollectOptions(owners=False), selector=selector)
        assert snap.netns is not None and snap.netns.inode == _inode(ns), selector
        assert [x.backlog for x in snap.listeners_on(PORT)] == [5]
    [own] = collect_all(SystemClock(), CollectOptions(owners=False, sockets=False), selector=str(os.getpid()))
    assert own.netns is not None and own.netns.own
    not_ns = tmp_path / "plain-file"
    not_ns.write_text("")
    for bad, words in ((str(2**22 + 12345), "no such pid"), (str(not_ns), "is not a network namespace"),
                       ("/no/such/path", "no such path"), ("no-such-name", "no network namespace")):
        with pytest.raises(SelectorError) as err:
            collect_all(SystemClock(), CollectOptions(owners=False), selector=bad)
        assert words in str(err.value) and "\n" not in str(err.value)
