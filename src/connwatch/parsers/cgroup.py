"""Parser for /proc/<pid>/cgroup: which container runtime, container id and pod a process belongs to.

Pure functions over text: no I/O here (see connwatch.sources.containers for the readers).

Sample input (cgroup v2; hybrid hosts add one line per v1 hierarchy, "4:memory:/...")::

    0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0125ec2f_b64a_4868_8f5b_94b56cbab864.slice/cri-containerd-ee4b20e90ac7f42a10bd004d05646b13d8ab5e2c5e7cbc01abf8006bac016459.scope

Kernel source: kernel/cgroup/cgroup.c proc_cgroup_show(), which prints one
"hierarchy-ID:controller-list:cgroup-path" line per hierarchy ("0::path" for cgroup v2).
The path names come from the runtimes, not the kernel:
- systemd driver: docker `docker-<id>.scope`, containerd `cri-containerd-<id>.scope`, CRI-O
  `crio-<id>.scope` (its monitor `crio-conmon-<id>.scope`), podman `libpod-<id>.scope`, the pod
  `kubepods[-<qos>]-pod<uid with _ for ->.slice`;
- a runtime whose driver differs from the kubelet's leaves the literal "<slice>:<prefix>:<id>";
- cgroupfs driver: `/docker/<id>`, `/kubepods/<qos>/pod<uid>/<id>`, `crio-<id>`.
"""

from __future__ import annotations

import re

from connwatch.errors import ParseError
from connwatch.parsers.netstat_snmp import shown
from connwatch.record import Record, record

_HEX_ID = r"[0-9a-f]{64}"
_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32}"
_RUNTIMES = {"docker": "docker", "cri-containerd": "containerd", "crio": "cri-o", "libpod": "podman"}
_SCOPE = re.compile(rf"(docker|cri-containerd|crio|crio-conmon|libpod|libpod-conmon)-({_HEX_ID})(?:\.scope)?")
_LITERAL = re.compile(rf".*:(docker|cri-containerd|crio|libpod):({_HEX_ID})")
_POD = re.compile(rf"(?:.*-)?pod({_UID})(?:\.slice)?")
_BARE_ID = re.compile(_HEX_ID)
_LINE = re.compile(r"([0-9]+):([^:]*):(.*)")


@record
class CgroupIdentity(Record):  # (a record, not a dataclass: see sources/netns.py's imports)
    """What a process's cgroup path says about it. None = the path does not say."""

    runtime: str | None = None  # "docker", "containerd", "cri-o", "podman"; None when only an id is known
    container_id: str | None = None  # 64 hex digits
    pod_uid: str | None = None  # with dashes (the Kubernetes form)
    conmon: bool = False  # CRI-O/podman's monitor process of container_id, which runs outside the container

    @property
    def empty(self) -> bool:
        return self.container_id is None and self.pod_uid is None


def _pod_uid(component: str) -> str | None:
    match = _POD.fullmatch(component)
    return match.group(1).replace("_", "-") if match else None


def identify_path(path: str) -> CgroupIdentity:
    """Runtime, container id and pod uid named by one cgroup path ("/kubepods.slice/...")."""
    runtime = cid = pod = None
    conmon = False
    in_kubepods = in_docker = False
    for component in path.split("/"):
        literal = _LITERAL.fullmatch(component)
        if literal:  # "kubepods-besteffort-pod<uid>.slice:cri-containerd:<id>"
            runtime, cid = _RUNTIMES[literal.group(1)], literal.group(2)
            component = component.split(":", 1)[0]
        if "kubepods" in component:
            in_kubepods = True
        if in_kubepods and pod is None:
            pod = _pod_uid(component)
        scope = _SCOPE.fullmatch(component)
        if scope:
            prefix, cid = scope.group(1), scope.group(2)
            conmon = prefix.endswith("-conmon")
            runtime = _RUNTIMES[prefix.removesuffix("-conmon")]
        elif _BARE_ID.fullmatch(component) and (in_docker or pod is not None):
            cid, runtime = component, ("docker" if in_docker else runtime)
        in_docker = component == "docker"
    return CgroupIdentity(runtime, cid, pod, conmon)


def parse_cgroup(text: str, source: str) -> CgroupIdentity:
    """The container/pod identity of one /proc/<pid>/cgroup file.

    Every line is "hierarchy-ID:controllers:path". The cgroup v2 line ("0::") is preferred; on a
    hybrid host whose v2 line says nothing (the runtime uses v1), the first v1 line that names a
    container or pod is used. A process in no container gives an empty identity, not an error.
    Raises ParseError (with the line number) for a line without the two colons.
    """
    best = CgroupIdentity()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise ParseError(source, f"expected 'hierarchy:controllers:path', got {shown(line)}", number)
        found = identify_path(match.group(3))
        if match.group(1) == "0" and not found.empty:
            return found
        if best.empty and not found.empty:
            best = found
    return best
