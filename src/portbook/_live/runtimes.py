"""What the container runtimes say: their helper processes' arguments and their state files.

Read-only, and never through a runtime's own command or API: portbook must
not start, wake or change a runtime to ask it something. Three sources:

- **Helper command lines.** Docker and containerd run each container under a
  shim, ``containerd-shim-runc-v2 -namespace moby -id ID ...`` (containerd's
  namespace ``moby`` is Docker's, ``k8s.io`` the CRI plugin's, where one shim
  serves a whole pod and ``-id`` names the pod's sandbox). Podman and CRI-O
  run each under ``conmon -c ID -n NAME ...``; Podman's conmon also carries
  the ``podman`` command it runs on exit, with the storage root
  (``--exit-command-arg --root --exit-command-arg PATH``). ``docker-proxy``
  has its whole mapping on its command line. Kubernetes names containers
  ``k8s_CONTAINER_POD_NAMESPACE_UID_ATTEMPT`` through dockershim and CRI-O.
- **Docker's files**: ``DATA-ROOT/containers/ID/config.v2.json`` (name with a
  leading ``/``, ``State.Pid``, ``Config.Labels``, ``NetworkSettings.Ports``
  with the host port as a string, ``NetworkSettings.Networks.*.IPAddress``;
  there is no top-level address on disk). The data root is
  ``/var/lib/docker`` unless ``dockerd --data-root`` says otherwise. The
  files are root's only (directory 0710, config 0600).
- **Podman's state database**, ``GRAPH-ROOT/libpod/bolt_state.db`` (Podman
  4; bucket ``ctr``, one bucket per container id with ``config``, ``state``
  and ``netns``): the name, the port mappings (``newPortMappings``; Podman 3
  wrote ``portMappings``), the pid, the addresses (``networkStatus``) and
  the network namespace path. Podman's OCI ``config.json`` has neither name
  nor ports. A rootless user's root is ``~/.local/share/containers/storage``.
  Podman 5's SQLite database is not read yet.
"""

from __future__ import annotations

import os

from portbook._live.cgroups import Runtime
from portbook._record import record, replace

# Not `from typing import TYPE_CHECKING`: see portbook._record. json and the
# bolt reader are imported where a state file is read: the live table imports
# this module to tell a helper's command line, on every listing with
# containers about, and most of those read no state file at all.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from portbook._live.boltdb import BoltFile

__all__ = [
    "ConmonArgs",
    "DockerProxyArgs",
    "PortMapping",
    "RuntimeContainer",
    "ShimArgs",
    "conmon_args",
    "docker_containers",
    "docker_data_root",
    "docker_proxy_args",
    "kubernetes_name",
    "podman_containers",
    "shim_args",
]


@record
class ShimArgs:
    """A containerd shim: the runtime it serves (by containerd namespace), the id, the namespace."""

    runtime: Runtime
    id: str
    namespace: str | None


@record
class ConmonArgs:
    """A conmon: the container it monitors and, for Podman, where Podman keeps its state."""

    runtime: Runtime | None
    id: str
    name: str | None
    graph_root: str | None
    run_root: str | None


@record
class DockerProxyArgs:
    """``docker-proxy``'s mapping: host side and container side."""

    protocol: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int


@record
class PortMapping:
    """One published port of a container: ``host_ip`` is ``None`` for every address."""

    protocol: str
    host_ip: str | None
    host_port: int
    container_port: int


@record
class RuntimeContainer:
    """A container as its runtime's state files describe it.

    ``addresses`` are its IP addresses on its networks; ``netns`` the path
    of its network namespace as the runtime recorded it; ``labels`` its
    labels as ``(key, value)`` pairs.
    """

    runtime: Runtime
    id: str
    name: str | None
    pid: int | None
    running: bool
    ports: tuple[PortMapping, ...]
    addresses: tuple[str, ...]
    netns: str | None
    labels: tuple[tuple[str, str], ...]
    pod: str | None = None  #: Podman: the name (else id) of the pod it belongs to


def _flags(argv: tuple[str, ...] | list[str], names: frozenset[str]) -> dict[str, list[str]]:
    """The values of ``names`` in ``argv``, as Go's flag package and GLib's option parser take them.

    ``-name VALUE``, ``--name VALUE``, ``-name=VALUE`` and ``--name=VALUE``.
    """
    found: dict[str, list[str]] = {}
    i = 1
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-"):
            continue
        key, eq, value = arg.lstrip("-").partition("=")
        if key not in names:
            continue
        if not eq:
            if i >= len(argv):
                break
            value = argv[i]
            i += 1
        found.setdefault(key, []).append(value)
    return found


def _program(argv: tuple[str, ...] | list[str]) -> str:
    return os.path.basename(argv[0]) if argv else ""


_SHIM_FLAGS = frozenset({"namespace", "id", "workdir"})


def shim_args(argv: tuple[str, ...] | list[str]) -> ShimArgs | None:
    """The container a ``containerd-shim*`` command line serves; ``None`` for another program."""
    if not _program(argv).startswith("containerd-shim"):
        return None
    flags = _flags(argv, _SHIM_FLAGS)
    namespace = flags.get("namespace", [None])[-1]
    ident = flags.get("id", [None])[-1]
    if ident is None and "workdir" in flags:
        # The v1 shim has no -id: its work directory ends in the id.
        ident = os.path.basename(flags["workdir"][-1].rstrip("/")) or None
    if not ident:
        return None
    runtime = Runtime.DOCKER if namespace == "moby" else Runtime.CONTAINERD
    return ShimArgs(runtime, ident, namespace)


_CONMON_FLAGS = frozenset(
    {"c", "cid", "n", "name", "exit-command", "exit-command-arg", "exit-dir", "socket-dir-path"}
)


def conmon_args(argv: tuple[str, ...] | list[str]) -> ConmonArgs | None:
    """The container a ``conmon`` command line monitors, or ``None`` for any other program."""
    if _program(argv) != "conmon":
        return None
    flags = _flags(argv, _CONMON_FLAGS)
    idents = flags.get("c") or flags.get("cid")
    if not idents or not idents[-1]:
        return None
    ident = idents[-1]
    names = flags.get("n") or flags.get("name")
    name = names[-1] if names else None
    exit_args = flags.get("exit-command-arg", [])
    runtime: Runtime | None = None
    if any(os.path.basename(c) == "podman" for c in flags.get("exit-command", [])):
        runtime = Runtime.PODMAN
    elif any("crio" in d for d in flags.get("exit-dir", []) + flags.get("socket-dir-path", [])):
        runtime = Runtime.CRIO
    return ConmonArgs(
        runtime, ident, name, _after(exit_args, "--root"), _after(exit_args, "--runroot")
    )


def _after(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args[:-1]):
        if arg == flag:
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1 :]
    return None


_PROXY_FLAGS = frozenset({"proto", "host-ip", "host-port", "container-ip", "container-port"})


def docker_proxy_args(argv: tuple[str, ...] | list[str]) -> DockerProxyArgs | None:
    """``docker-proxy``'s mapping from its command line, or ``None`` for any other program."""
    if _program(argv) != "docker-proxy":
        return None
    flags = _flags(argv, _PROXY_FLAGS)
    try:
        return DockerProxyArgs(
            flags.get("proto", ["tcp"])[-1],
            flags["host-ip"][-1],
            int(flags["host-port"][-1]),
            flags["container-ip"][-1],
            int(flags["container-port"][-1]),
        )
    except (KeyError, ValueError):
        return None


def kubernetes_name(name: str) -> tuple[str, str, str] | None:
    """``(container, pod, namespace)`` from a ``k8s_CONTAINER_POD_NAMESPACE_UID_ATTEMPT`` name."""
    parts = name.lstrip("/").split("_")
    if len(parts) != 6 or parts[0] != "k8s":
        return None
    return parts[1], parts[2], parts[3]


_DATA_ROOT_FLAGS = frozenset({"data-root", "g", "graph"})


def docker_data_root(argv: tuple[str, ...] | list[str], home: str | None = None) -> str:
    """Where a ``dockerd`` with this command line keeps its state.

    ``--data-root`` (``-g`` before Docker 17.05), else ``/var/lib/docker``;
    for rootless Docker (``home`` given: the daemon's user's home) the
    default is ``~/.local/share/docker``.
    """
    flags = _flags(argv, _DATA_ROOT_FLAGS)
    for key in ("data-root", "graph", "g"):
        if key in flags:
            return flags[key][-1]
    if home is not None:
        return os.path.join(home, ".local", "share", "docker")
    return "/var/lib/docker"


def docker_containers(data_root: str) -> dict[str, RuntimeContainer]:
    """Every container in a Docker data root, by id; ``{}`` when it cannot be read."""
    directory = os.path.join(data_root, "containers")
    try:
        names = os.listdir(directory)
    except OSError:
        return {}
    found: dict[str, RuntimeContainer] = {}
    for ident in names:
        container = docker_container(data_root, ident)
        if container is not None:
            found[ident] = container
    return found


def docker_container(data_root: str, ident: str) -> RuntimeContainer | None:
    """One container's ``config.v2.json``, or ``None`` when absent or unreadable."""
    import json

    try:
        with open(os.path.join(data_root, "containers", ident, "config.v2.json"), "rb") as fh:
            config = json.loads(fh.read())
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    return _docker_record(ident, config)


def _docker_record(ident: str, config: dict[str, object]) -> RuntimeContainer:
    state = _dict(config.get("State"))
    settings = _dict(config.get("NetworkSettings"))
    labels = _dict(_dict(config.get("Config")).get("Labels"))
    ports: list[PortMapping] = []
    for key, bindings in _dict(settings.get("Ports")).items():
        port_text, _, protocol = str(key).partition("/")
        for binding in bindings if isinstance(bindings, list) else []:
            host_port = _int(_dict(binding).get("HostPort"))
            if host_port is None or not port_text.isdigit():
                continue
            host_ip = _dict(binding).get("HostIp")
            ports.append(
                PortMapping(
                    protocol or "tcp",
                    str(host_ip) if host_ip else None,
                    host_port,
                    int(port_text),
                )
            )
    addresses = []
    for network in _dict(settings.get("Networks")).values():
        for key in ("IPAddress", "GlobalIPv6Address"):
            address = _dict(network).get(key)
            if address:
                addresses.append(str(address))
    name = config.get("Name")
    pid = _int(state.get("Pid"))
    sandbox = settings.get("SandboxKey")
    return RuntimeContainer(
        Runtime.DOCKER,
        str(config.get("ID") or ident),
        str(name).lstrip("/") if name else None,
        pid if pid else None,
        bool(state.get("Running")),
        tuple(ports),
        tuple(addresses),
        str(sandbox) if sandbox else None,
        tuple((str(k), str(v)) for k, v in labels.items()),
    )


def podman_containers(db_path: str) -> dict[str, RuntimeContainer]:
    """Every container in a Podman state database, by id; ``{}`` when it cannot be read."""
    if not os.path.exists(db_path):
        return {}
    from portbook._live.boltdb import BoltError, BoltFile

    try:
        db = BoltFile.open(db_path)
        bucket = db.bucket(b"ctr")
        if bucket is None:
            return {}
        found: dict[str, RuntimeContainer] = {}
        pods = _podman_pod_names(db)
        for key, ctr in bucket.buckets():
            record = _podman_record(
                key.decode("utf-8", "replace"),
                ctr.get(b"config"),
                ctr.get(b"state"),
                ctr.get(b"netns"),
            )
            if record is not None:
                if record.pod is not None:
                    record = replace(record, pod=pods.get(record.pod, record.pod))
                found[record.id] = record
    except (OSError, BoltError, ValueError):
        return {}
    return found


def _podman_pod_names(db: BoltFile) -> dict[str, str]:
    import json

    names: dict[str, str] = {}
    pods = db.bucket(b"pod")
    for key, pod in pods.buckets() if pods is not None else ():
        config = pod.get(b"config")
        name = _dict(json.loads(config)).get("name") if config else None
        if name:
            names[key.decode("utf-8", "replace")] = str(name)
    return names


def _podman_record(
    ident: str, config_bytes: bytes | None, state_bytes: bytes | None, netns: bytes | None
) -> RuntimeContainer | None:
    if config_bytes is None:
        return None
    import json

    config = _dict(json.loads(config_bytes))
    state = _dict(json.loads(state_bytes)) if state_bytes else {}
    ports = [_podman_mapping(_dict(m)) for m in _list(config.get("newPortMappings"))]
    # Podman 3 kept CNI-style mappings, one per port.
    ports += [_cni_mapping(_dict(m)) for m in _list(config.get("portMappings"))]
    expanded = tuple(p for group in ports for p in group)
    addresses: list[str] = []
    for network in _dict(state.get("networkStatus")).values():
        for interface in _dict(_dict(network).get("interfaces")).values():
            for subnet in _list(_dict(interface).get("subnets")):
                ipnet = _dict(subnet).get("ipnet")
                if ipnet:
                    addresses.append(str(ipnet).partition("/")[0])
    pid = _int(state.get("pid"))
    labels = _dict(config.get("labels"))
    return RuntimeContainer(
        Runtime.PODMAN,
        str(config.get("id") or ident),
        str(config["name"]) if config.get("name") else None,
        pid if pid else None,
        state.get("state") == _PODMAN_RUNNING,
        expanded,
        tuple(addresses),
        netns.decode("utf-8", "surrogateescape") if netns else None,
        tuple((str(k), str(v)) for k, v in labels.items()),
        str(config["pod"]) if config.get("pod") else None,
    )


# libpod's ContainerStateRunning (define.ContainerStatus: unknown, configured,
# created, running, ...).
_PODMAN_RUNNING = 3


def _podman_mapping(mapping: dict[str, object]) -> list[PortMapping]:
    host_port = _int(mapping.get("host_port"))
    container_port = _int(mapping.get("container_port"))
    if host_port is None or container_port is None:
        return []
    count = _int(mapping.get("range")) or 1
    host_ip = mapping.get("host_ip")
    result = []
    for protocol in str(mapping.get("protocol") or "tcp").split(","):
        for offset in range(count):
            result.append(
                PortMapping(
                    protocol,
                    str(host_ip) if host_ip else None,
                    host_port + offset,
                    container_port + offset,
                )
            )
    return result


def _cni_mapping(mapping: dict[str, object]) -> list[PortMapping]:
    host_port = _int(mapping.get("hostPort"))
    container_port = _int(mapping.get("containerPort"))
    if host_port is None or container_port is None:
        return []
    host_ip = mapping.get("hostIP")
    return [
        PortMapping(
            str(mapping.get("protocol") or "tcp"),
            str(host_ip) if host_ip else None,
            host_port,
            container_port,
        )
    ]


def _dict(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
