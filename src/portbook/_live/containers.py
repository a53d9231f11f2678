"""The container and the systemd unit of a process: :class:`ContainerIndex`, one per listing.

A process is in a container when its cgroup path says so
(:mod:`portbook._live.cgroups`) or, where the path does not (rootless
Podman on cgroup v1 gets no cgroup of its own), when one of its ancestors
is the container's monitor: a containerd shim or a conmon
(:mod:`portbook._live.runtimes`). The monitor itself, and the programs that
hold a container's published ports on the host (``docker-proxy``,
``conmon``, ``rootlessport``), are *not* in the container; what they serve
is :meth:`ContainerIndex.monitored_by` and :mod:`portbook._live.published`.

Names, pods and Kubernetes namespaces come from the runtimes' own state
(Docker's ``config.v2.json``, Podman's state database, conmon's arguments,
Kubernetes' ``k8s_...`` names and ``io.kubernetes.*`` labels), read only
where this user may read them: without root, a Docker container is known by
its id alone.

Everything read is cached in the index, so that a listing reads each
process's cgroup and command line and each runtime file at most once; make
a new index for the next listing.
"""

from __future__ import annotations

import os

from portbook._live.cgroups import (
    CgroupPaths,
    Runtime,
    Unit,
    container_from_cgroup,
    read_cgroup,
    unit_from_cgroup,
)
from portbook._live.runtimes import (
    RuntimeContainer,
    conmon_args,
    docker_containers,
    docker_data_root,
    kubernetes_name,
    podman_containers,
    shim_args,
)
from portbook._proc import PROC, parent_pid, process_uid
from portbook._record import public, record

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Container", "ContainerIndex", "podman_db_path"]

_MAX_ANCESTORS = 32
_K8S_POD = "io.kubernetes.pod.name"
_K8S_NAMESPACE = "io.kubernetes.pod.namespace"
_K8S_UID = "io.kubernetes.pod.uid"


@record
class Container:
    """A container, as far as this machine tells.

    ``runtime`` is ``None`` when nothing says which runtime made it (a
    Kubernetes cgroupfs path and no readable runtime state). ``name`` is the
    runtime's name for it; ``pod`` the Kubernetes pod (or Podman pod) name,
    ``pod_uid`` the Kubernetes pod uid, ``namespace`` the Kubernetes
    namespace, each where known. ``uid`` is the user whose own runtime runs
    it (rootless Podman), ``None`` for the system's. ``pid`` is its main
    process as this machine numbers it, when known.
    """

    runtime: Runtime | None
    id: str
    name: str | None
    pod: str | None = None
    pod_uid: str | None = None
    namespace: str | None = None
    uid: int | None = None
    pid: int | None = None

    @property
    def short_id(self) -> str:
        """The first 12 characters of the id, as ``docker ps`` and ``podman ps`` show it."""
        return self.id[:12]

    def to_json(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime.value if self.runtime is not None else None,
            "id": self.id,
            "name": self.name,
            "pod": self.pod,
            "pod_uid": self.pod_uid,
            "namespace": self.namespace,
            "uid": self.uid,
            "pid": self.pid,
        }


def podman_db_path(graph_root: str) -> str:
    """Podman 4's state database under a storage root."""
    return os.path.join(graph_root, "libpod", "bolt_state.db")


ROOTFUL_PODMAN_ROOT = "/var/lib/containers/storage"


class ContainerIndex:
    """Containers and units of processes, every file read at most once (one index per listing)."""

    def __init__(self, proc: str = PROC) -> None:
        self.proc = proc
        self._cgroups: dict[int, CgroupPaths | None] = {}
        self._cmdlines: dict[int, tuple[str, ...] | None] = {}
        self._monitors: dict[int, Container | None] = {}
        self._members: dict[int, Container | None] = {}
        self._docker: dict[str, dict[str, RuntimeContainer]] = {}
        self._podman: dict[str, dict[str, RuntimeContainer]] = {}
        self._dockerd_roots: list[str] | None = None

    # -- process facts ---------------------------------------------------------------------

    def cgroup(self, pid: int) -> CgroupPaths | None:
        if pid not in self._cgroups:
            self._cgroups[pid] = read_cgroup(pid, self.proc)
        return self._cgroups[pid]

    def cmdline(self, pid: int) -> tuple[str, ...] | None:
        """The process's arguments, ``None`` when gone or empty (a kernel thread)."""
        if pid not in self._cmdlines:
            try:
                with open(f"{self.proc}/{pid}/cmdline", "rb") as fh:
                    raw = fh.read()
            except OSError:
                raw = b""
            parts = raw.split(b"\0")
            if parts and parts[-1] == b"":
                parts.pop()
            self._cmdlines[pid] = (
                tuple(p.decode("utf-8", "surrogateescape") for p in parts) if parts else None
            )
        return self._cmdlines[pid]

    def unit_of(self, pid: int) -> Unit | None:
        """The systemd unit ``pid`` runs in, from its cgroup; ``None`` outside any."""
        paths = self.cgroup(pid)
        return unit_from_cgroup(paths) if paths is not None else None

    # -- containers --------------------------------------------------------------------------

    def container_of(self, pid: int) -> Container | None:
        """The container ``pid`` runs in, or ``None`` for a process of the host."""
        if pid not in self._members:
            self._members[pid] = self._find_member(pid)
        return self._members[pid]

    def monitored_by(self, pid: int) -> Container | None:
        """The container ``pid`` itself monitors, when it is a containerd shim or a conmon."""
        argv = self.cmdline(pid)
        if argv is None:
            return None
        conmon = conmon_args(argv)
        if conmon is not None:
            runtime = conmon.runtime
            uid = process_uid(pid, self.proc)
            state = self.podman_state(conmon.graph_root, uid) if runtime is Runtime.PODMAN else {}
            known = state.get(conmon.id)
            if known is not None:
                found = self._from_runtime(known)
            else:
                found = Container(runtime, conmon.id, conmon.name)
            found = _with_kubernetes_name(found)
            return _rootless(found, uid)
        shim = shim_args(argv)
        if shim is not None:
            if shim.runtime is Runtime.DOCKER:
                known = self.docker_container(shim.id)
                if known is not None:
                    return self._from_runtime(known)
            return Container(shim.runtime, shim.id, None)
        return None

    def _find_member(self, pid: int) -> Container | None:
        paths = self.cgroup(pid)
        from_cgroup = container_from_cgroup(paths) if paths is not None else None
        parent = parent_pid(pid, self.proc)
        monitor = self._monitor_above(parent) if parent is not None else None
        if from_cgroup is None:
            return monitor
        found = Container(from_cgroup.runtime, from_cgroup.id, None, pod_uid=from_cgroup.pod_uid)
        if found.runtime in (Runtime.DOCKER, None):
            known = self.docker_container(found.id)
            if known is not None:
                return _merge(self._from_runtime(known), found)
        if monitor is not None and monitor.id == found.id:
            return _merge(monitor, found)
        if found.runtime is None and monitor is not None:
            # A Kubernetes cgroupfs path: the shim or conmon above it names the
            # runtime (its id is the pod's sandbox, not this container).
            found = Container(monitor.runtime, found.id, None, pod_uid=found.pod_uid)
        return found

    def _monitor_above(self, pid: int) -> Container | None:
        """The container monitored by ``pid`` or its nearest ancestor that is a monitor."""
        chain: list[int] = []
        found: Container | None = None
        current: int | None = pid
        while current is not None and current > 1 and len(chain) < _MAX_ANCESTORS:
            if current in self._monitors:
                found = self._monitors[current]
                break
            chain.append(current)
            found = self.monitored_by(current)
            if found is not None:
                break
            current = parent_pid(current, self.proc)
        for seen in chain:
            self._monitors[seen] = found
        return found

    def _from_runtime(self, known: RuntimeContainer) -> Container:
        labels = dict(known.labels)
        found = Container(
            known.runtime,
            known.id,
            known.name,
            pod=labels.get(_K8S_POD) or known.pod,
            pod_uid=labels.get(_K8S_UID),
            namespace=labels.get(_K8S_NAMESPACE),
            pid=known.pid if known.running else None,
        )
        return _with_kubernetes_name(found)

    # -- runtime state, cached -------------------------------------------------------------

    def docker_roots(self) -> list[str]:
        """The data roots of the running Docker daemons (``/var/lib/docker`` when none is seen)."""
        if self._dockerd_roots is None:
            roots: list[str] = []
            for pid in _pids(self.proc):
                argv = self.cmdline(pid)
                if argv is None or os.path.basename(argv[0]) != "dockerd":
                    continue
                uid = process_uid(pid, self.proc)
                home = _home_of(uid) if uid not in (None, 0) else None
                root = docker_data_root(argv, home)
                if root not in roots:
                    roots.append(root)
            self._dockerd_roots = roots or ["/var/lib/docker"]
        return self._dockerd_roots

    def docker_state(self, data_root: str) -> dict[str, RuntimeContainer]:
        if data_root not in self._docker:
            self._docker[data_root] = docker_containers(data_root)
        return self._docker[data_root]

    def docker_container(self, ident: str) -> RuntimeContainer | None:
        for root in self.docker_roots():
            known = self.docker_state(root).get(ident)
            if known is not None:
                return known
        return None

    def podman_state(
        self, graph_root: str | None, uid: int | None = None
    ) -> dict[str, RuntimeContainer]:
        """Podman's containers under ``graph_root`` (default: root's, or ``uid``'s rootless one)."""
        if graph_root is None:
            home = _home_of(uid) if uid not in (None, 0) else None
            graph_root = (
                os.path.join(home, ".local", "share", "containers", "storage")
                if home is not None
                else ROOTFUL_PODMAN_ROOT
            )
        path = podman_db_path(graph_root)
        if path not in self._podman:
            self._podman[path] = podman_containers(path)
        return self._podman[path]

    def podman_roots(self) -> list[tuple[str, int | None]]:
        """The storage roots of every running conmon of Podman, with the conmon's uid."""
        roots: list[tuple[str, int | None]] = []
        for pid in _pids(self.proc):
            argv = self.cmdline(pid)
            if argv is None or os.path.basename(argv[0]) != "conmon":
                continue
            conmon = conmon_args(argv)
            if conmon is None or conmon.runtime is not Runtime.PODMAN:
                continue
            uid = process_uid(pid, self.proc)
            root = conmon.graph_root
            if root is None:
                home = _home_of(uid) if uid not in (None, 0) else None
                root = (
                    os.path.join(home, ".local", "share", "containers", "storage")
                    if home
                    else ROOTFUL_PODMAN_ROOT
                )
            if (root, uid) not in roots:
                roots.append((root, uid))
        return roots

    def netns_files(self, idents: set[str]) -> set[str]:
        """The network namespace files of containers ``idents``, from the state read so far.

        Only what this index has already read (nothing more is read); Docker
        records ``/var/run/docker/netns/X``, written here as ``/run/...``.
        """
        found: set[str] = set()
        for state in (*self._docker.values(), *self._podman.values()):
            for ident in idents & state.keys():
                path = state[ident].netns
                if path:
                    found.add(path.replace("/var/run/", "/run/", 1))
        return found

    def from_runtime(self, known: RuntimeContainer, uid: int | None = None) -> Container:
        """The :class:`Container` for a runtime's record (``uid``: a rootless runtime's user)."""
        return _rootless(self._from_runtime(known), uid)


def _merge(known: Container, from_cgroup: Container) -> Container:
    """``known`` (from runtime state), completed with what the cgroup path told."""
    return Container(
        known.runtime or from_cgroup.runtime,
        known.id,
        known.name,
        known.pod,
        known.pod_uid or from_cgroup.pod_uid,
        known.namespace,
        known.uid,
        known.pid,
    )


def _with_kubernetes_name(found: Container) -> Container:
    if found.name is None or found.pod is not None:
        return found
    parts = kubernetes_name(found.name)
    if parts is None:
        return found
    container, pod, namespace = parts
    return Container(
        found.runtime,
        found.id,
        container,
        pod,
        found.pod_uid,
        found.namespace or namespace,
        found.uid,
        found.pid,
    )


def _rootless(found: Container, uid: int | None) -> Container:
    if uid in (None, 0) or found.uid is not None:
        return found
    return Container(
        found.runtime,
        found.id,
        found.name,
        found.pod,
        found.pod_uid,
        found.namespace,
        uid,
        found.pid,
    )


_homes: dict[int, str | None] = {}


def _home_of(uid: int | None) -> str | None:
    if uid is None:
        return None
    if uid not in _homes:
        import pwd

        try:
            _homes[uid] = pwd.getpwuid(uid).pw_dir
        except KeyError:
            _homes[uid] = None
    return _homes[uid]


def _pids(proc: str) -> list[int]:
    from portbook._live.walk import all_pids

    return all_pids(proc)


public(Container)
