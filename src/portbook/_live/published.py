"""Published ports: which container a host port leads into, and where inside it.

The process that holds a published port on the host is never the program
that serves it. Who holds it depends on the runtime and its settings:

- ``docker-proxy`` (Docker's default): one per port and address family, its
  whole mapping on its command line (``-host-ip -host-port -container-ip
  -container-port``). The container is the one with that address.
- ``dockerd`` (``--userland-proxy=false``): the daemon binds the port only to
  reserve it; a DNAT rule carries the traffic. The mapping is in the
  container's ``config.v2.json`` (``NetworkSettings.Ports``).
- ``conmon`` (rootful Podman): Podman opens the socket and hands it to the
  container's conmon, and netavark's DNAT rule carries the traffic. conmon's
  ``-c`` names the container; the mapping is in Podman's state database.
- ``rootlessport`` (rootless Podman): it holds the socket in the host's
  namespace and forwards each connection through its child in the
  container's namespace. Its command line is bare; it keeps the container's
  namespace file open (``.../netns/netns-UUID``), which the user's Podman
  state database records for that container.
- ``slirp4netns`` (rootless, ``port_handler=slirp4netns``): its
  ``--api-socket .../ID.net`` names the container.
- no socket at all, only a DNAT rule (Kubernetes, nerdctl, Docker's rules
  for other hosts): :func:`published_by_rule`.

:func:`published_by` answers for one holder process and one socket; the
caller passes the listing's :class:`~portbook._live.containers.ContainerIndex`,
so runtime files are read once per listing.
"""

from __future__ import annotations

import os
import re

from portbook._live.cgroups import Runtime
from portbook._live.containers import Container, ContainerIndex
from portbook._live.runtimes import (
    PortMapping,
    RuntimeContainer,
    conmon_args,
    docker_data_root,
    docker_proxy_args,
)
from portbook._live.table import HOLDER_PROGRAMS
from portbook._proc import process_uid
from portbook._record import public, record

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portbook._live.nat import DnatRule
    from portbook._live.records import SocketProcess

__all__ = ["HOLDER_PROGRAMS", "Published", "published_by", "published_by_rule"]


_PODMAN_ID = re.compile(r"\bid: ([0-9a-f]{64})\b")
_API_SOCKET = re.compile(r"/([0-9a-f]{64})\.net$")


@record
class Published:
    """A host port that leads into a container.

    ``by`` is what holds or forwards it: one of :data:`HOLDER_PROGRAMS`, or
    ``"dnat"`` for a rule without a socket. ``holder`` is that process's pid
    (``None`` for a rule). ``container`` is ``None`` when it cannot be told
    (the runtime's state unreadable without root). ``target_address`` is the
    container's address the traffic goes to (``None`` where the runtime
    forwards inside the container's own namespace without one);
    ``target_port`` the port inside the container. ``listeners`` are the
    processes listening on that port inside the container's namespace
    (empty where that namespace could not be read). ``rule`` is the DNAT
    rule, for ``by == "dnat"``.
    """

    by: str
    holder: int | None
    protocol: str
    host_port: int
    container: Container | None
    target_address: str | None
    target_port: int | None
    listeners: tuple[SocketProcess, ...] = ()
    rule: DnatRule | None = None

    def to_json(self) -> dict[str, Any]:
        target = None
        if self.target_port is not None:
            target = {
                "address": self.target_address,
                "port": self.target_port,
                "processes": [p.to_json() for p in self.listeners],
            }
        return {
            "by": self.by,
            "holder": self.holder,
            "container": self.container.to_json() if self.container is not None else None,
            "target": target,
            "rule": self.rule.to_json() if self.rule is not None else None,
        }


def published_by(
    index: ContainerIndex,
    pid: int,
    protocol: str,
    host_address: str,
    host_port: int,
) -> Published | None:
    """What host socket ``host_address``:``host_port`` held by ``pid`` publishes, or ``None``.

    ``None`` when ``pid`` is none of the holder programs (or, for dockerd and
    conmon, when their state names no such port).
    """
    argv = index.cmdline(pid)
    if argv is None:
        return None
    program = os.path.basename(argv[0])
    if program == "docker-proxy":
        return _docker_proxy(index, pid, argv)
    if program == "dockerd":
        return _dockerd(
            index, pid, argv, protocol=protocol, host_address=host_address, host_port=host_port
        )
    if program == "conmon":
        return _conmon(
            index, pid, argv, protocol=protocol, host_address=host_address, host_port=host_port
        )
    if program == "rootlessport" or _comm(index, pid) == "rootlessport":
        return _rootlessport(
            index, pid, protocol=protocol, host_address=host_address, host_port=host_port
        )
    if program == "slirp4netns":
        return _slirp4netns(
            index, pid, argv, protocol=protocol, host_address=host_address, host_port=host_port
        )
    return None


def _comm(index: ContainerIndex, pid: int) -> str | None:
    try:
        with open(f"{index.proc}/{pid}/comm", "rb") as fh:
            return fh.read().strip().decode("utf-8", "replace")
    except OSError:
        return None


def _docker_proxy(index: ContainerIndex, pid: int, argv: tuple[str, ...]) -> Published | None:
    mapping = docker_proxy_args(argv)
    if mapping is None:
        return None
    container = None
    for root in _roots_of_parent(index, pid):
        for known in index.docker_state(root).values():
            if known.running and mapping.container_ip in known.addresses:
                container = index.from_runtime(known)
                break
        if container is not None:
            break
    return Published(
        "docker-proxy",
        pid,
        mapping.protocol,
        mapping.host_port,
        container,
        mapping.container_ip,
        mapping.container_port,
    )


def _roots_of_parent(index: ContainerIndex, pid: int) -> list[str]:
    """The data root of the dockerd that started ``pid``, else every running dockerd's."""
    from portbook._proc import parent_pid

    parent = parent_pid(pid, index.proc)
    argv = index.cmdline(parent) if parent is not None else None
    if argv is not None and os.path.basename(argv[0]) == "dockerd":
        return [docker_data_root(argv, _home(index, parent))]
    return index.docker_roots()


def _home(index: ContainerIndex, pid: int | None) -> str | None:
    uid = process_uid(pid, index.proc) if pid is not None else None
    if uid in (None, 0):
        return None
    import pwd

    try:
        return pwd.getpwuid(uid).pw_dir
    except KeyError:
        return None


def _dockerd(
    index: ContainerIndex,
    pid: int,
    argv: tuple[str, ...],
    *,
    protocol: str,
    host_address: str,
    host_port: int,
) -> Published | None:
    root = docker_data_root(argv, _home(index, pid))
    for known in index.docker_state(root).values():
        if not known.running:
            continue
        mapping = _mapping(known.ports, protocol, host_address, host_port)
        if mapping is not None:
            return Published(
                "dockerd",
                pid,
                protocol,
                host_port,
                index.from_runtime(known),
                _first_v4(known.addresses),
                mapping.container_port,
            )
    return None


def _conmon(
    index: ContainerIndex,
    pid: int,
    argv: tuple[str, ...],
    *,
    protocol: str,
    host_address: str,
    host_port: int,
) -> Published | None:
    args = conmon_args(argv)
    if args is None:
        return None
    uid = process_uid(pid, index.proc)
    known = index.podman_state(args.graph_root, uid).get(args.id)
    container = index.monitored_by(pid)
    if known is None:
        # Without the state database (another user's, or unreadable) the
        # container is still known from conmon's arguments; where it leads
        # is then left to the DNAT rules (published_by_rule).
        return Published("conmon", pid, protocol, host_port, container, None, None)
    return _leading(
        "conmon", pid, known, container, protocol=protocol, host=(host_address, host_port)
    )


def _rootlessport(
    index: ContainerIndex, pid: int, *, protocol: str, host_address: str, host_port: int
) -> Published | None:
    netns_path = _open_netns_file(index.proc, pid)
    uid = process_uid(pid, index.proc)
    found = _podman_by(index, uid, lambda c: netns_path is not None and c.netns == netns_path)
    if found is None:
        # The state is unreadable: the container is still the one whose
        # network namespace rootlessport's main thread sits in.
        container = _container_in_namespace_of(index, pid)
        return Published("rootlessport", pid, protocol, host_port, container, None, None)
    known, container = found
    return _leading(
        "rootlessport", pid, known, container, protocol=protocol, host=(host_address, host_port)
    )


def _slirp4netns(
    index: ContainerIndex,
    pid: int,
    argv: tuple[str, ...],
    *,
    protocol: str,
    host_address: str,
    host_port: int,
) -> Published | None:
    ident = next((m.group(1) for a in argv if (m := _API_SOCKET.search(a)) is not None), None)
    if ident is None:
        return None
    uid = process_uid(pid, index.proc)
    found = _podman_by(index, uid, lambda c: c.id == ident)
    if found is None:
        return Published("slirp4netns", pid, protocol, host_port, None, None, None)
    known, container = found
    # slirp4netns forwards to the container's own loopback: no address to give.
    return _leading(
        "slirp4netns",
        pid,
        known,
        container,
        protocol=protocol,
        host=(host_address, host_port),
        address=False,
    )


def _podman_by(
    index: ContainerIndex, uid: int | None, match: Any
) -> tuple[RuntimeContainer, Container] | None:
    """The first container of ``uid``'s Podman that matches: its default storage root
    first, then every other root its conmons name (which takes a look at every
    process's command line, so only when the default has none)."""
    for known in index.podman_state(None, uid).values():
        if match(known):
            return known, index.from_runtime(known, uid)
    for root, owner in index.podman_roots():
        if owner != uid:
            continue
        for known in index.podman_state(root, uid).values():
            if match(known):
                return known, index.from_runtime(known, uid)
    return None


def _open_netns_file(proc: str, pid: int) -> str | None:
    """The network namespace file ``pid`` keeps open (``.../netns/netns-UUID``), if any."""
    try:
        names = os.listdir(f"{proc}/{pid}/fd")
    except OSError:
        return None
    for name in names:
        try:
            target = os.readlink(f"{proc}/{pid}/fd/{name}")
        except OSError:
            continue
        if "/netns/" in target and not target.startswith(("socket:", "pipe:")):
            return target
    return None


def _container_in_namespace_of(index: ContainerIndex, pid: int) -> Container | None:
    try:
        inode = os.stat(f"{index.proc}/{pid}/ns/net").st_ino
    except OSError:
        return None
    from portbook._live.walk import all_pids

    for other in all_pids(index.proc):
        if other == pid:
            continue
        try:
            if os.stat(f"{index.proc}/{other}/ns/net").st_ino != inode:
                continue
        except OSError:
            continue
        found = index.container_of(other)
        if found is not None:
            return found
    return None


def _leading(
    by: str,
    pid: int,
    known: RuntimeContainer,
    container: Container | None,
    *,
    protocol: str,
    host: tuple[str, int],
    address: bool = True,
) -> Published:
    """What ``by`` (pid ``pid``) publishes for ``container``: the runtime's mapping of
    the host address and port, where its state records one."""
    host_address, host_port = host
    mapping = _mapping(known.ports, protocol, host_address, host_port)
    if mapping is None:
        return Published(by, pid, protocol, host_port, container, None, None)
    target = _first_v4(known.addresses) if address else None
    return Published(by, pid, protocol, host_port, container, target, mapping.container_port)


def _mapping(
    ports: tuple[PortMapping, ...], protocol: str, host_address: str, host_port: int
) -> PortMapping | None:
    best: PortMapping | None = None
    for mapping in ports:
        if mapping.protocol != protocol or mapping.host_port != host_port:
            continue
        if mapping.host_ip == host_address:
            return mapping
        if mapping.host_ip in (None, "", "0.0.0.0", "::"):
            best = mapping
    return best


def _first_v4(addresses: tuple[str, ...]) -> str | None:
    return next((a for a in addresses if ":" not in a), addresses[0] if addresses else None)


def published_by_rule(index: ContainerIndex, rule: DnatRule, host_port: int) -> Published:
    """What a DNAT rule forwarding ``host_port`` leads into: the container with its target address.

    The container is the one whose id the rule's comment names (netavark),
    else the Docker or Podman container with the target address.
    """
    target_port = rule.target_port_for(host_port)
    container: Container | None = None
    named = _PODMAN_ID.search(rule.comment or "")
    if named is not None:
        known = index.podman_state(None).get(named.group(1))
        container = (
            index.from_runtime(known)
            if known is not None
            else Container(Runtime.PODMAN, named.group(1), None)
        )
    if container is None:
        container = _by_address(index, rule.target_address)
    return Published(
        "dnat",
        None,
        rule.protocol,
        host_port,
        container,
        rule.target_address,
        target_port,
        rule=rule,
    )


def _by_address(index: ContainerIndex, address: str) -> Container | None:
    for root in index.docker_roots():
        for known in index.docker_state(root).values():
            if known.running and address in known.addresses:
                return index.from_runtime(known)
    roots: list[tuple[str | None, int | None]] = [*index.podman_roots(), (None, None)]
    for graph_root, uid in roots:
        for known in index.podman_state(graph_root, uid).values():
            if known.running and address in known.addresses:
                return index.from_runtime(known, uid)
    return None


public(Published)
