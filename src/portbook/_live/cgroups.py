"""Which systemd unit and which container a process is in, from the text of ``/proc/PID/cgroup``.

Every line of that file is ``HIERARCHY-ID:CONTROLLERS:PATH``. On cgroup v2
there is one line, ``0::PATH``; on v1 one line per hierarchy, among them
``N:name=systemd:PATH`` where systemd tracks its units; a *hybrid* machine
has both. The path names the unit and, for the container runtimes, the
container:

- systemd: the deepest path component ending in a unit suffix (``.service``,
  ``.scope``, ``.slice``, ...) is the unit. Below ``user@UID.service`` the
  units belong to that user's own manager; ``session-N.scope`` is login
  session N of the user whose ``user-UID.slice`` holds it.
- Docker: ``/docker/ID`` (cgroupfs driver, also nested for Docker in Docker)
  or ``docker-ID.scope`` (systemd driver); Podman ``libpod-ID`` (cgroupfs,
  under ``/libpod_parent``) or ``libpod-ID.scope``; containerd's CRI
  ``cri-containerd-ID.scope``; CRI-O ``crio-ID.scope``; nerdctl
  ``nerdctl-ID.scope``.
- Kubernetes adds the pod: ``kubepods-QOS-podUID.slice`` (systemd driver,
  the uid's dashes written as ``_``) or ``/kubepods/QOS/podUID/ID`` (cgroupfs
  driver, which does not say which runtime made the container).

Which line decides: the unit comes from the ``0::`` line when it is not the
root, else from ``name=systemd`` (systemd uses the unified hierarchy for
tracking on hybrid machines, and only ``name=systemd`` on pure v1). The
container is looked for in the unified line, then ``name=systemd``, then every
controller: Docker's cgroupfs driver on a hybrid machine moves a container in
the v1 controllers only (the ``0::`` line still names ``containerd.service``).

A process that reads the file of a process in another *cgroup namespace* sees
paths relative to its own, starting with ``/..``; the components that name
the unit and the container are still there, so they are read all the same.

The functions here work on text (the fixtures are recorded files); only
:func:`read_cgroup`, :func:`cgroup2_mount` and :func:`cgroup_paths_by_id` read
the machine.
"""

from __future__ import annotations

import enum
import os
import re

from portbook._proc import PROC
from portbook._record import public, record

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "CgroupContainer",
    "CgroupPaths",
    "Runtime",
    "Unit",
    "cgroup2_mount",
    "cgroup_paths_by_id",
    "container_from_cgroup",
    "container_from_path",
    "parse_cgroup",
    "read_cgroup",
    "unit_from_cgroup",
    "unit_from_path",
]


class Runtime(enum.StrEnum):
    """The container runtime (or engine) that made a container."""

    DOCKER = "docker"
    CONTAINERD = "containerd"
    PODMAN = "podman"
    CRIO = "cri-o"


@record
class CgroupPaths:
    """The lines of one ``/proc/PID/cgroup`` text.

    ``unified`` is the path of the ``0::`` line (cgroup v2), ``systemd`` that
    of ``name=systemd`` (v1); each is ``None`` when the line is absent.
    ``lines`` holds every line as ``(controllers, path)``, in file order
    (``""`` as the controllers of the ``0::`` line).
    """

    unified: str | None
    systemd: str | None
    lines: tuple[tuple[str, str], ...]


@record
class Unit:
    """The systemd unit a cgroup path names.

    ``kind`` is the unit type (``service``, ``scope``, ``slice``, ``socket``,
    ``mount``, ...). ``manager`` is ``"system"`` or ``"user"``: a user unit
    runs under ``user@UID.service``, and ``uid`` is then that user; for a
    system unit inside ``user-UID.slice`` (a login session, the user manager
    itself) ``uid`` is that user too, else ``None``. ``session`` is the login
    session's id for ``session-ID.scope``. ``slice`` is the slice the unit
    sits in (``None`` for the root slice). ``path`` is the cgroup path read.
    """

    name: str
    kind: str
    manager: str
    uid: int | None
    slice: str | None
    session: str | None
    path: str

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "manager": self.manager,
            "uid": self.uid,
            "slice": self.slice,
            "session": self.session,
            "path": self.path,
        }


@record
class CgroupContainer:
    """A container a cgroup path names.

    ``runtime`` is ``None`` when the path does not say (Kubernetes with the
    cgroupfs driver writes ``/kubepods/QOS/podUID/ID`` for every runtime).
    ``pod_uid`` is the Kubernetes pod's uid (with dashes) when the path holds
    one. ``path`` is the cgroup path it was read from.
    """

    runtime: Runtime | None
    id: str
    pod_uid: str | None
    path: str


_UNIT_SUFFIXES = frozenset(
    {"service", "scope", "slice", "socket", "mount", "swap", "target", "device", "automount"}
)
_ID_LENGTH = 64
_HEX64 = r"[0-9a-f]{64}"
# A scope (systemd driver) or a plain directory (cgroupfs driver) per runtime.
# Podman's own conmon and CRI-O's conmon get a scope too: `libpod-conmon-ID`
# and `crio-conmon-ID`, which must not read as the container.
# Patterns as text: re compiles (and caches) each on its first use, and the
# length and prefix tests before each use mean that a host process's path
# (the common case: the live table reads one per holder) compiles none.
_SCOPE = rf"^(docker|libpod|cri-containerd|crio|nerdctl)-({_HEX64})(?:\.scope)?$"
_MISCONFIGURED = rf":(cri-containerd|crio|docker):({_HEX64})$"
_BARE_ID = rf"^{_HEX64}$"
_POD_SLICE = r"^kubepods(?:-[a-z]+)?-pod([0-9a-f_]+)\.slice"
_POD_DIR = r"^pod([0-9a-f-]+)$"
_SCOPE_RUNTIMES = {
    "docker": Runtime.DOCKER,
    "libpod": Runtime.PODMAN,
    "cri-containerd": Runtime.CONTAINERD,
    "crio": Runtime.CRIO,
    "nerdctl": Runtime.CONTAINERD,
}
_USER_SLICE = r"^user-(\d+)\.slice$"
_USER_MANAGER = r"^user@(\d+)\.service$"
_SESSION = r"^session-([^.]+)\.scope$"


def parse_cgroup(text: str) -> CgroupPaths:
    """The lines of a ``/proc/PID/cgroup`` text; lines that do not parse are skipped."""
    unified: str | None = None
    systemd: str | None = None
    lines: list[tuple[str, str]] = []
    for line in text.splitlines():
        hierarchy, sep, rest = line.partition(":")
        controllers, sep2, path = rest.partition(":")
        if not sep or not sep2 or not hierarchy.isdigit():
            continue
        lines.append((controllers, path))
        if hierarchy == "0" and controllers == "":
            unified = path
        elif controllers == "name=systemd":
            systemd = path
    return CgroupPaths(unified, systemd, tuple(lines))


def read_cgroup(pid: int, proc: str = PROC) -> CgroupPaths | None:
    """:func:`parse_cgroup` of process ``pid``; ``None`` when it is gone or unreadable."""
    try:
        with open(f"{proc}/{pid}/cgroup", encoding="utf-8", errors="surrogateescape") as fh:
            return parse_cgroup(fh.read())
    except OSError:
        return None


def unit_from_cgroup(paths: CgroupPaths) -> Unit | None:
    """The systemd unit of a process (see the module doc for which line decides)."""
    for path in (paths.unified, paths.systemd):
        if path is not None and path.strip("/") and path.strip("/") != "..":
            return unit_from_path(path)
    return None


def unit_from_path(path: str) -> Unit | None:
    """The unit a cgroup path names: its deepest component with a unit suffix, or ``None``."""
    manager, uid, current_slice = "system", None, None
    found: Unit | None = None
    for part in path.split("/"):
        _, dot, kind = part.rpartition(".")
        if not dot or kind not in _UNIT_SUFFIXES:
            continue
        if kind == "slice":
            user_slice = re.match(_USER_SLICE, part) if part.startswith("user-") else None
            if user_slice is not None and manager == "system":
                uid = int(user_slice.group(1))
        session = (
            re.match(_SESSION, part)
            if manager == "system" and part.startswith("session-")
            else None
        )
        found = Unit(
            part,
            kind,
            manager,
            uid,
            current_slice,
            session.group(1) if session is not None else None,
            path,
        )
        if kind == "slice":
            current_slice = part
        user_manager = re.match(_USER_MANAGER, part) if part.startswith("user@") else None
        if user_manager is not None and manager == "system":
            # Units below user@UID.service are the user's own manager's.
            manager, uid, current_slice = "user", int(user_manager.group(1)), None
    return found


def container_from_cgroup(paths: CgroupPaths) -> CgroupContainer | None:
    """The container a process is in, from any of its cgroup lines (see the module doc)."""
    seen: set[str] = set()
    ordered = [paths.unified, paths.systemd, *(path for _, path in paths.lines)]
    for path in ordered:
        if path is None or path in seen or not path.strip("/"):
            continue
        seen.add(path)
        found = container_from_path(path)
        if found is not None:
            return found
    return None


def container_from_path(path: str) -> CgroupContainer | None:
    """The innermost container a cgroup path names, with its Kubernetes pod uid if any."""
    parts = [p for p in path.split("/") if p and p != ".."]
    pod_uid: str | None = None
    found: CgroupContainer | None = None
    for i, part in enumerate(parts):
        pod = None
        if part.startswith("kubepods"):
            pod = re.match(_POD_SLICE, part)
        elif part.startswith("pod"):
            pod = re.match(_POD_DIR, part)
        if pod is not None:
            pod_uid = pod.group(1).replace("_", "-")
        runtime_id = _container_component(part, parts[i - 1] if i else None)
        if runtime_id is not None:
            runtime, cid = runtime_id
            found = CgroupContainer(runtime, cid, pod_uid, path)
    return found


def _container_component(part: str, parent: str | None) -> tuple[Runtime | None, str] | None:
    if len(part) < _ID_LENGTH:
        return None  # every form below holds a whole 64-digit id
    scope = re.match(_SCOPE, part)
    if scope is not None:
        return _SCOPE_RUNTIMES[scope.group(1)], scope.group(2)
    broken = re.search(_MISCONFIGURED, part)
    if broken is not None:
        # containerd with SystemdCgroup set but a cgroupfs kubelet writes the
        # systemd triple "slice:prefix:id" as a literal directory name.
        return _SCOPE_RUNTIMES.get(broken.group(1)), broken.group(2)
    if re.match(_BARE_ID, part):
        if parent == "docker":
            return Runtime.DOCKER, part
        # /kubepods/.../podUID/ID or containerd's /NAMESPACE/ID: the path
        # alone does not say which runtime.
        return None, part
    return None


def cgroup2_mount(proc: str = PROC) -> str | None:
    """Where this process sees the cgroup v2 hierarchy mounted, or ``None`` without one.

    ``/sys/fs/cgroup`` on a pure v2 machine, ``/sys/fs/cgroup/unified`` on a
    hybrid one; read from ``/proc/self/mountinfo``.
    """
    try:
        with open(f"{proc}/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                if right.startswith("cgroup2 "):
                    return _unescape_mount(left.split()[4])
    except OSError:
        return None
    return None


def _unescape_mount(text: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def cgroup_paths_by_id(ids: Iterable[int], mount: str | None = None) -> dict[int, str]:
    """The cgroup v2 paths (as ``/proc/PID/cgroup`` writes them) of cgroup ids.

    A cgroup's id, as sock_diag reports it (``INET_DIAG_CGROUP_ID``), is the
    inode number of its directory in the cgroup v2 hierarchy. The hierarchy
    is walked until every id is found (a few hundred directories on a busy
    systemd machine, well under a millisecond each thousand); ids not found
    (the cgroup is gone, or mounted elsewhere) are left out.
    """
    wanted = set(ids)
    if mount is None:
        mount = cgroup2_mount()
    found: dict[int, str] = {}
    if mount is None or not wanted:
        return found
    stack = [(mount, "/")]
    try:
        root_ino = os.stat(mount).st_ino
    except OSError:
        return found
    if root_ino in wanted:
        found[root_ino] = "/"
        wanted.discard(root_ino)
    while stack and wanted:
        directory, shown = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                inode = entry.inode()
            except OSError:
                continue
            child = f"{shown.rstrip('/')}/{entry.name}"
            if inode in wanted:
                found[inode] = child
                wanted.discard(inode)
            stack.append((entry.path, child))
    return found


public(Runtime, Unit)
