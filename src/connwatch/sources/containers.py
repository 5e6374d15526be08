"""Name what runs in a network namespace: container and pod, from files the runtimes leave readable.

- /proc/<pid>/cgroup -> runtime, container id, pod uid (parsers/cgroup.py);
- Docker: /var/lib/docker/containers/<id>/config.v2.json, key "Name" ("/web");
- Kubernetes (kubelet's log layout): /var/log/pods/<namespace>_<pod>_<uid>/ names the pod,
  /var/log/containers/<pod>_<namespace>_<container>-<id>.log names the container.
Every root is a parameter so tests point them at fixture trees. What cannot be read stays None.
"""

from __future__ import annotations

import os

from connwatch.errors import ParseError
from connwatch.model import Container, NetnsInfo, Pod
from connwatch.record import Record, record
from connwatch.sources.netns import NetnsRef, ns_inode_of_link, read_command
from connwatch.sources.procfs import path_text

# No dataclasses or pathlib, and re only where the kubelet's log directories list entries: `--netns all` (the
# default as root) loads this module before its first read of the kernel (sources/netns.py says what they cost)
TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from pathlib import Path

    from connwatch.parsers.cgroup import CgroupIdentity

PIDS_EXAMINED = 8  # processes per namespace whose cgroup is read (lowest pids first)
SANDBOX_COMMANDS = frozenset({"pause", "/pause"})  # a pod's infrastructure container, not its workload
_CONTAINER_LOG = r"([^_]+)_([^_]+)_(.+)-([0-9a-f]{64})\.log"
_POD_DIR = r"([^_]+)_([^_]+)_([0-9a-f-]{32,36})"


@record
class NamingRoots(Record):
    """Where the naming files live (tests use fixture trees)."""

    proc: str = "/proc"
    docker: str = "/var/lib/docker"
    logs: str = "/var/log"


@record
class KubeNames(Record):
    """Names read once per sample from the kubelet's log directories."""

    pods: dict[str, tuple[str, str]]  # pod uid -> (namespace, name)
    containers: dict[str, str]  # container id -> container name


def read_kube_names(logs_root: str | Path = "/var/log") -> KubeNames:
    """Pod and container names from the kubelet's /var/log/pods and /var/log/containers entries."""
    root = os.fspath(logs_root)
    pods: dict[str, tuple[str, str]] = {}
    containers: dict[str, str] = {}
    pod_dirs, logs = _listdir(os.path.join(root, "pods")), _listdir(os.path.join(root, "containers"))
    if pod_dirs or logs:
        import re  # (see the module's imports)

        for entry in pod_dirs:
            match = re.fullmatch(_POD_DIR, entry)
            if match:
                pods[match.group(3)] = (match.group(1), match.group(2))
        for entry in logs:
            match = re.fullmatch(_CONTAINER_LOG, entry)
            if match:
                containers[match.group(4)] = match.group(3)
    return KubeNames(pods, containers)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def read_docker_name(container_id: str, docker_root: str | Path = "/var/lib/docker") -> str | None:
    """The Docker container name ("web", without Docker's leading slash), or None when unreadable."""
    import json  # (only where Docker containers are named)

    path = os.path.join(docker_root, "containers", container_id, "config.v2.json")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.loads(f.read())
    except (OSError, ValueError):
        return None
    name = config.get("Name") if isinstance(config, dict) else None
    return name.lstrip("/") or None if isinstance(name, str) else None


def read_identity(pid: int, proc_root: str | Path = "/proc") -> CgroupIdentity | None:
    """The cgroup identity of one process; None when it exited or its file is unreadable/malformed."""
    from connwatch.parsers.cgroup import parse_cgroup  # (its regexes load re: only where a process is named)

    path = f"{path_text(proc_root)}/{pid}/cgroup"
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_cgroup(f.read(), path)
    except (OSError, ParseError):
        return None


def _in_namespace(pid: int, inode: int, proc_root: str | Path) -> bool:
    """True when the pid is (still) in that namespace: a pid that exited and was reused since the
    enumeration must not lend its cgroup or name to the namespace it no longer belongs to."""
    try:
        return ns_inode_of_link(os.readlink(f"{os.fspath(proc_root)}/{pid}/ns/net")) == inode
    except OSError:
        return False


def _workload(ref: NetnsRef, roots: NamingRoots) -> CgroupIdentity | None:
    """The identity of the first examined process in a container, skipping a pod's pause process and
    CRI-O's conmon (which live beside the workload); a pod-only identity if that is all there is."""
    fallback = None
    for pid in ref.pids[:PIDS_EXAMINED]:
        found = read_identity(pid, roots.proc)
        if found is not None and not _in_namespace(pid, ref.inode, roots.proc):
            continue
        if found is None or found.empty or found.conmon:
            continue
        if found.container_id is None or read_command(pid, roots.proc) in SANDBOX_COMMANDS:
            fallback = fallback or found
            continue
        return found
    return fallback


def describe_netns(ref: NetnsRef, roots: NamingRoots | None = None, kube: KubeNames | None = None) -> NetnsInfo:
    """NetnsInfo for one namespace: its `ip netns` name, container, pod, representative pid/command."""
    roots = roots or NamingRoots()
    kube = kube if kube is not None else read_kube_names(roots.logs)
    found = _workload(ref, roots)
    container = pod = None
    if found is not None and found.container_id is not None:
        cid = found.container_id
        name = kube.containers.get(cid)
        if name is None and found.runtime == "docker":
            name = read_docker_name(cid, roots.docker)
        container = Container(runtime=found.runtime, id=cid, name=name)
    if found is not None and found.pod_uid is not None:
        ns_name = kube.pods.get(found.pod_uid) or kube.pods.get(found.pod_uid.replace("-", ""))
        pod = Pod(uid=found.pod_uid, namespace=ns_name[0] if ns_name else None,
                  name=ns_name[1] if ns_name else None)
    pid = next((p for p in ref.pids if _in_namespace(p, ref.inode, roots.proc)), None)
    return NetnsInfo(inode=ref.inode, name=ref.name, container=container, pod=pod, pid=pid,
                     command=read_command(pid, roots.proc) if pid is not None else None, own=ref.own)
