"""Network namespaces without the kernel: the cgroup parser on real paths, enumeration and naming
on fixture trees, the --netns selector.

Provenance of the /proc/<pid>/cgroup lines and directory names below (copied from public issues):
- OTEL: https://github.com/open-telemetry/opentelemetry-java/issues/4507 (containerd, systemd
  literal "slice:cri-containerd:id" form, cgroup v1)
- RUNC: https://github.com/opencontainers/runc/issues/4620 (CRI-O container and conmon, cgroup v1)
- LXC: https://github.com/lxc/lxc/issues/3890 (docker under kubepods.slice, cgroup v1)
- CONTAINERD285: https://github.com/containerd/containerd/pull/285 (docker-<id>.scope, no pod)
- CTRSPLOIT: https://github.com/ctrsploit/ctrsploit/issues/280 (cgroupfs /docker/<id>, hybrid)
- CRUN: https://github.com/containers/crun/issues/729 (cgroupfs /kubepods/besteffort/pod<uid>/<id>,
  the root field of a mountinfo line)
- NRI: https://github.com/containerd/nri/pull/227 (cgroup v2 kubelet-kubepods… cri-containerd scope)
- ISTIO: https://github.com/istio/istio/issues/55139 (cgroup v2 crio-conmon in system.slice;
  /var/log/pods/default_shell-79b95cc8b5-z2v4j_475aa441-1968-49f8-ae50-24ce2284812c)
- FLUENT: https://github.com/fluent/fluent-operator/issues/855 (/var/log/containers and /var/log/pods
  entries of a static pod)
- FLUENTBIT: https://github.com/fluent/fluent-bit/pull/5343 (config.v2.json: nested and top-level "Name")
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from connwatch.collect_netns import NetnsSelector, parse_selector, select
from connwatch.errors import ParseError, SelectorError
from connwatch.model import Container, NetnsInfo, Pod
from connwatch.parsers.cgroup import CgroupIdentity, parse_cgroup
from connwatch.sources.containers import NamingRoots, describe_netns, read_kube_names
from connwatch.sources.netns import NetnsRef, enumerate_netns, init_inode, netns_cookie, run_scope

OTEL = """\
11:perf_event:/kubepods-besteffort-pod0125ec2f_b64a_4868_8f5b_94b56cbab864.slice:cri-containerd:ee4b20e90ac7f42a10bd004d05646b13d8ab5e2c5e7cbc01abf8006bac016459
10:blkio:/system.slice/containerd.service/kubepods-besteffort-pod0125ec2f_b64a_4868_8f5b_94b56cbab864.slice:cri-containerd:ee4b20e90ac7f42a10bd004d05646b13d8ab5e2c5e7cbc01abf8006bac016459
"""
RUNC = ("13:freezer:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_"
        "4afaafdaef89.slice/crio-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope\n"
        "11:files:/\n")
RUNC_CONMON = ("1:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_"
               "add7_4afaafdaef89.slice/crio-conmon-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c"
               ".scope\n")
LXC = ("12:rdma:/\n11:freezer:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7d4424e6_bb13_42f4_"
       "a47a_45a4828bf54d.slice/docker-d0b3604b67ac7930dd34ba3a796627e3e4717d12309e90a4afe3f38b6816ac98.scope\n")
CONTAINERD285 = ("11:perf_event:/system.slice/docker-b33dda97580e721a69fa81742190341f858ea809ec4a9d74a8cfd411b0ee7c26"
                 ".scope\n1:name=systemd:/system.slice/docker-b33dda97580e721a69fa81742190341f858ea809ec4a9d74a8cfd4"
                 "11b0ee7c26.scope\n")
CTRSPLOIT = """\
12:net_cls,net_prio:/docker/2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00dd303d
10:rdma:/
1:name=systemd:/docker/2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00dd303d
0::/system.slice/containerd.service
"""
CRUN = ("10:memory:/kubepods/besteffort/pod85401dd3-38cd-47b6-a90a-e16c0e1c06e6/dbc9f149296cec5d12b78385eb5b2c0cf"
        "e20b476f117c15c76d981cff44053c1\n")
NRI = ("0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod"
       "1e597579_417e_482f_bf65_5fe170c3aebd.slice/cri-containerd-a09bc17f5aa29b0dbdec9ede5f46cf1396d2405917ab02e6f1e"
       "b1019f388396e.scope\n")
ISTIO_CONMON = ("13:hugetlb:/\n"
                "0::/system.slice/crio-conmon-c055fa05e5c1c20cc4ef3e2ebd180ab360b5369538c9b7cd536b3e6c58311b39.scope\n")
HOST = "0::/init.scope\n"  # this project's machine shows "0::/" for a shell; systemd's pid 1 "0::/init.scope"


@pytest.mark.parametrize(("text", "want"), [
    (OTEL, CgroupIdentity("containerd", "ee4b20e90ac7f42a10bd004d05646b13d8ab5e2c5e7cbc01abf8006bac016459",
                          "0125ec2f-b64a-4868-8f5b-94b56cbab864")),
    (RUNC, CgroupIdentity("cri-o", "5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c",
                          "a5c1f8d5-1919-434d-add7-4afaafdaef89")),
    (RUNC_CONMON, CgroupIdentity("cri-o", "5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c",
                                 "a5c1f8d5-1919-434d-add7-4afaafdaef89", conmon=True)),
    (LXC, CgroupIdentity("docker", "d0b3604b67ac7930dd34ba3a796627e3e4717d12309e90a4afe3f38b6816ac98",
                         "7d4424e6-bb13-42f4-a47a-45a4828bf54d")),
    (CONTAINERD285, CgroupIdentity("docker", "b33dda97580e721a69fa81742190341f858ea809ec4a9d74a8cfd411b0ee7c26")),
    (CTRSPLOIT, CgroupIdentity("docker", "2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00dd303d")),
    (CRUN, CgroupIdentity(None, "dbc9f149296cec5d12b78385eb5b2c0cfe20b476f117c15c76d981cff44053c1",
                          "85401dd3-38cd-47b6-a90a-e16c0e1c06e6")),
    (NRI, CgroupIdentity("containerd", "a09bc17f5aa29b0dbdec9ede5f46cf1396d2405917ab02e6f1eb1019f388396e",
                         "1e597579-417e-482f-bf65-5fe170c3aebd")),
    (ISTIO_CONMON, CgroupIdentity("cri-o", "c055fa05e5c1c20cc4ef3e2ebd180ab360b5369538c9b7cd536b3e6c58311b39",
                                  conmon=True)),
    (HOST, CgroupIdentity()),
    ("0::/\n", CgroupIdentity()),
])
def test_cgroup_paths_from_real_hosts(text: str, want: CgroupIdentity) -> None:
    assert parse_cgroup(text, "cgroup") == want


def test_the_cgroup_v2_line_wins_over_v1_lines() -> None:
    v1_docker = CONTAINERD285.splitlines()[0]
    got = parse_cgroup(f"{v1_docker}\n{NRI}", "cgroup")
    assert got.runtime == "containerd" and got.container_id is not None and got.container_id.startswith("a09bc17f")


def test_a_malformed_cgroup_line_names_file_and_line() -> None:
    with pytest.raises(ParseError) as err:
        parse_cgroup("0::/\nkubepods without colons\n", "/proc/42/cgroup")
    assert err.value.line == 2 and "/proc/42/cgroup:2" in str(err.value)


def _proc_tree(root: Path, links: dict[int, int], own_pid: int) -> Path:
    proc = root / "proc"
    for pid, inode in links.items():
        (proc / str(pid) / "ns").mkdir(parents=True)
        os.symlink(f"net:[{inode}]", proc / str(pid) / "ns" / "net")
    os.symlink(str(own_pid), proc / "self")
    return proc


def test_enumeration_dedups_by_inode_and_keeps_the_lowest_pid(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "netns").mkdir(parents=True)
    (run / "docker" / "netns").mkdir(parents=True)
    (run / "netns" / "blue").write_text("")
    (run / "docker" / "netns" / "1a2b3c4d5e6f").write_text("")
    (run / "netns" / "empty").write_text("")
    blue = os.stat(run / "netns" / "blue").st_ino
    dock = os.stat(run / "docker" / "netns" / "1a2b3c4d5e6f").st_ino
    empty = os.stat(run / "netns" / "empty").st_ino
    proc = _proc_tree(tmp_path, {1: 4026531840, 7: 4026531840, 300: blue, 120: blue, 900: dock}, own_pid=7)
    (proc / "55").mkdir()  # a process whose ns link is gone (exited, or not ours): skipped
    found = enumerate_netns(proc, run, privileged=True)
    assert found.limitations == ()
    by_inode = {x.inode: x for x in found.namespaces}
    assert len(found.namespaces) == 4 and found.namespaces[0].inode == 4026531840
    assert by_inode[4026531840].own and by_inode[4026531840].pids == (1, 7)
    assert by_inode[blue].pid == 120 and by_inode[blue].name == "blue" and not by_inode[blue].own
    assert by_inode[blue].paths == (str(run / "netns" / "blue"),)
    assert by_inode[dock].name is None and by_inode[dock].pids == (900,)
    assert by_inode[empty].pids == () and by_inode[empty].pid is None and by_inode[empty].name == "empty"


def test_without_privilege_only_the_own_namespace_and_a_sentence(tmp_path: Path) -> None:
    proc = _proc_tree(tmp_path, {1: 4026531840, 7: 4026532999}, own_pid=7)
    found = enumerate_netns(proc, tmp_path / "run", privileged=False)
    assert [(x.inode, x.own) for x in found.namespaces] == [(4026532999, True)]
    [note] = found.limitations
    assert "only connwatch's own network namespace" in note and "CAP_SYS_ADMIN" in note


def _naming_tree(tmp_path: Path) -> NamingRoots:
    proc = tmp_path / "proc"
    pod_uid = "475aa441-1968-49f8-ae50-24ce2284812c"
    cid = "a09bc17f5aa29b0dbdec9ede5f46cf1396d2405917ab02e6f1eb1019f388396e"
    sandbox = "d7dfb4a21fe1703a8537e60d5af248af729315d187b24a538102d14874c8117d"
    pod_path = f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{pod_uid.replace('-', '_')}.slice"
    procs = {
        400: ("pause", f"{pod_path}/cri-containerd-{sandbox}.scope\n"),
        401: ("shell", f"{pod_path}/cri-containerd-{cid}.scope\n"),
        500: ("hoge", CONTAINERD285),
        600: ("conmon", ISTIO_CONMON),
    }
    inodes = {400: 4026532500, 401: 4026532500, 500: 4026532600, 600: 4026531840}
    for pid, (comm, cgroup) in procs.items():
        (proc / str(pid) / "ns").mkdir(parents=True)
        (proc / str(pid) / "comm").write_text(comm + "\n")
        (proc / str(pid) / "cgroup").write_text(cgroup)
        os.symlink(f"net:[{inodes[pid]}]", proc / str(pid) / "ns" / "net")
    logs = tmp_path / "log"
    (logs / "pods" / f"default_shell-79b95cc8b5-z2v4j_{pod_uid}").mkdir(parents=True)
    (logs / "pods" / "kube-system_kube-apiserver-pa-drs-cluster_8b1e9057c80f383869339e73f7286d7b").mkdir()
    (logs / "containers").mkdir()
    (logs / "containers" / f"shell-79b95cc8b5-z2v4j_default_shell-{cid}.log").write_text("")
    (logs / "containers" / ("kube-apiserver-pa-drs-cluster_kube-system_kube-apiserver-1ba81788e9d8a48998fea25d5fe51"
                            "1c774f9de76eaaca81c50ff44b5960223b2.log")).write_text("")
    docker = tmp_path / "docker" / "containers" / "b33dda97580e721a69fa81742190341f858ea809ec4a9d74a8cfd411b0ee7c26"
    docker.mkdir(parents=True)
    (docker / "config.v2.json").write_text(json.dumps({"NetworkSettings": {"Service": {"Name": "hoge"}},
                                                       "Name": "/hoge"}))
    return NamingRoots(proc=str(proc), docker=str(tmp_path / "docker"), logs=str(logs))


def test_kubelet_log_directories_name_pods_and_containers(tmp_path: Path) -> None:
    kube = read_kube_names(_naming_tree(tmp_path).logs)
    assert kube.pods["475aa441-1968-49f8-ae50-24ce2284812c"] == ("default", "shell-79b95cc8b5-z2v4j")
    assert kube.pods["8b1e9057c80f383869339e73f7286d7b"] == ("kube-system", "kube-apiserver-pa-drs-cluster")
    assert kube.containers["1ba81788e9d8a48998fea25d5fe511c774f9de76eaaca81c50ff44b5960223b2"] == "kube-apiserver"


def test_a_pod_is_named_by_its_workload_not_its_pause_container(tmp_path: Path) -> None:
    roots = _naming_tree(tmp_path)
    info = describe_netns(NetnsRef(4026532500, pids=(400, 401)), roots)
    assert info.pod == Pod("475aa441-1968-49f8-ae50-24ce2284812c", "default", "shell-79b95cc8b5-z2v4j")
    assert info.container is not None and info.container.name == "shell" and info.container.runtime == "containerd"
    assert info.pid == 400 and info.command == "pause"
    assert info.label == "pod default/shell-79b95cc8b5-z2v4j (container shell)"


def test_a_pid_now_in_another_namespace_lends_it_nothing(tmp_path: Path) -> None:
    """Enumerated in 4026532700, pid 500 exited and was reused by a docker container's process."""
    roots = _naming_tree(tmp_path)
    info = describe_netns(NetnsRef(4026532700, pids=(500,)), roots)
    assert info.container is None and info.pid is None and info.command is None
    assert info.label == "netns:[4026532700]"


def test_docker_names_come_from_config_v2_and_conmon_names_nothing(tmp_path: Path) -> None:
    roots = _naming_tree(tmp_path)
    docker = describe_netns(NetnsRef(4026532600, pids=(500,)), roots)
    assert docker.container == Container("docker", "b33dda97580e721a69fa81742190341f858ea809ec4a9d74a8cfd411b0ee7c26",
                                         "hoge")
    assert docker.pod is None and docker.label == "container hoge"
    host = describe_netns(NetnsRef(4026531840, pids=(600,), own=True), roots)
    assert host.container is None and host.pod is None and host.own
    assert host.label == "netns:[4026531840] pid 600 (conmon)"
    named = describe_netns(NetnsRef(4026532700, name="blue", paths=("/run/netns/blue",)), roots)
    assert named.label == "netns blue" and named.pid is None and named.command is None


def test_selector_forms() -> None:
    assert parse_selector("all") == NetnsSelector("all")
    assert parse_selector(" 4242 ") == NetnsSelector("pid", "4242")
    assert parse_selector("/run/netns/blue") == NetnsSelector("path", "/run/netns/blue")
    assert parse_selector("./blue") == NetnsSelector("path", "./blue")
    assert parse_selector("shop/checkout-7d9f") == NetnsSelector("name", "shop/checkout-7d9f")
    for bad in ("", "  ", "0"):
        with pytest.raises(SelectorError):
            parse_selector(bad)


def test_a_name_selects_by_netns_container_or_pod_name() -> None:
    pod = NetnsInfo(2, container=Container("containerd", "ab" * 32, "checkout"),
                    pod=Pod("u-1", "shop", "checkout-7d9f"))
    found = [(NetnsRef(1, own=True), NetnsInfo(1, own=True)), (NetnsRef(2), pod),
             (NetnsRef(3, name="blue"), NetnsInfo(3, name="blue"))]
    for name in ("shop/checkout-7d9f", "checkout-7d9f", "checkout", "ab" * 6, "u-1"):
        assert [x[0].inode for x in select(found, NetnsSelector("name", name))] == [2]
    assert [x[0].inode for x in select(found, NetnsSelector("name", "blue"))] == [3]
    assert len(select(found, NetnsSelector("all"))) == 3
    with pytest.raises(SelectorError, match=r"known: .*blue"):
        select(found, NetnsSelector("name", "green"))


def test_a_namespace_survives_the_snapshot_json_round_trip() -> None:
    from connwatch.clock import FakeClock
    from connwatch.collect import CollectOptions, collect
    from connwatch.snapshot_json import from_dict, to_dict

    plain = collect(FakeClock(), CollectOptions(owners=False, sockets=False))
    assert "netns" not in to_dict(plain)  # captures of one namespace keep their shape
    info = NetnsInfo(4026532500, name="blue", container=Container("containerd", "ab" * 32, "checkout"),
                     pod=Pod("u-1", "shop", "checkout-7d9f"), pid=42, command="python3")
    data = json.loads(json.dumps(to_dict(dataclasses.replace(plain, netns=info))))
    assert data["netns"]["label"] == "pod shop/checkout-7d9f (container checkout)"
    assert from_dict(data, "capture.json").netns == info


@pytest.mark.parametrize("info", [
    NetnsInfo(inode=4026531840, own=True, pid=1, command="systemd"),
    NetnsInfo(inode=4026532278, name="blue"),
    NetnsInfo(inode=4026532300, container=Container("docker", "ab" * 32, "web"), pod=Pod("uid-1", "shop", "checkout"),
              pid=4242, command="nginx"),
])
def test_netns_dict_is_asdict_plus_the_label(info: NetnsInfo) -> None:
    from connwatch.snapshot_json import netns_dict

    assert netns_dict(info) == {**dataclasses.asdict(info), "label": info.label}


def test_the_run_scope_is_empty_in_the_hosts_namespace_and_names_another(tmp_path: Path) -> None:
    """alerts/store.py's scope: a run in pid 1's namespace keeps the host's alerts; one under `ip netns exec blue`
    gets its own, named by inode, name and cookie; pid 1 unreadable (a non-dumpable init): kthreadd's stands in."""
    run = tmp_path / "run"
    (run / "netns").mkdir(parents=True)
    (run / "netns" / "blue").write_text("")
    blue = os.stat(run / "netns" / "blue").st_ino
    host = _proc_tree(tmp_path / "host", {1: 4026531840, 7: 4026531840}, own_pid=7)
    assert run_scope(host, run, lambda: 3) == "" and init_inode(host) == 4026531840
    inside = _proc_tree(tmp_path / "inside", {1: 4026531840, 7: blue}, own_pid=7)
    assert run_scope(inside, run, lambda: 56795) == f"netns {blue} blue cookie 56795"
    assert run_scope(inside, run, lambda: None) == f"netns {blue} blue"  # a kernel before 5.14
    unnamed = _proc_tree(tmp_path / "unnamed", {1: 4026531840, 7: 4026532999}, own_pid=7)
    assert run_scope(unnamed, run, lambda: 9) == "netns 4026532999 cookie 9"
    no_init = _proc_tree(tmp_path / "no_init", {2: 4026531840, 7: blue}, own_pid=7)
    (no_init / "2" / "comm").write_text("kthreadd\n")
    assert run_scope(no_init, run, lambda: None) == f"netns {blue} blue"
    (no_init / "2" / "comm").write_text("sh\n")  # pid 2 of a container's pid namespace: tells nothing
    assert init_inode(no_init) is None and run_scope(no_init, run, lambda: None) == ""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="SO_NETNS_COOKIE checked where it is 71")
def test_the_netns_cookie_is_the_kernels_or_none() -> None:
    import socket
    import struct

    cookie = netns_cookie()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            want: int | None = struct.unpack("=Q", s.getsockopt(socket.SOL_SOCKET, 71, 8))[0]
        except OSError:
            want = None  # a kernel before 5.14
    assert cookie == want
