"""The live table's public records: :class:`Socket`, its holders and its state.

Nothing but :func:`portbook._live.build.iter_sockets` makes a ``Socket``, so
every backend gives the same records for the same sockets.
"""

from __future__ import annotations

import enum

from portbook._addresses import address_text
from portbook._ports import Family, PortClass, Protocol
from portbook._record import public, record

# Not `from typing import TYPE_CHECKING`: see portbook._record. `portbook who`
# and `portbook ls` import this module; typing, dataclasses (with inspect) and
# ipaddress at import were a third of their fixed cost.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipaddress import IPv4Address, IPv6Address
    from typing import Any

    from portbook._live.cgroups import Unit
    from portbook._live.containers import Container
    from portbook._live.netns import Netns
    from portbook._live.published import Published

__all__ = [
    "NOTE_NOT_FOUND",
    "NOTE_NOT_VISIBLE",
    "NOTE_NO_PROCESS",
    "Exposure",
    "Socket",
    "SocketProcess",
    "SocketState",
    "SocketTable",
]


class SocketState(enum.StrEnum):
    """A socket's state, by the names ``ss`` shows.

    UDP has no states of its own: an unconnected (bound) UDP socket is
    ``UNCONN`` and a connected one ``ESTAB``, as in ``ss``.
    """

    ESTAB = "ESTAB"
    SYN_SENT = "SYN-SENT"
    SYN_RECV = "SYN-RECV"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    TIME_WAIT = "TIME-WAIT"
    CLOSE = "CLOSE"
    CLOSE_WAIT = "CLOSE-WAIT"
    LAST_ACK = "LAST-ACK"
    LISTEN = "LISTEN"
    CLOSING = "CLOSING"
    NEW_SYN_RECV = "NEW-SYN-RECV"
    UNCONN = "UNCONN"


class Exposure(enum.StrEnum):
    """Who can reach a socket's local address."""

    LOOPBACK = "loopback"  # 127.0.0.0/8 or ::1: this machine only
    ALL = "all"  # 0.0.0.0 or ::: every interface
    SPECIFIC = "specific"  # one address of one interface


@record
class SocketProcess:
    """A process holding a socket. ``None`` fields could not be read.

    ``container`` is the container the process runs in (``None`` for a
    process of the host, or where that cannot be read); ``unit`` the systemd
    unit it runs in, on a machine systemd manages.
    """

    pid: int
    name: str | None
    cmdline: tuple[str, ...] | None
    user: str | None
    container: Container | None = None
    unit: Unit | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "name": self.name,
            "user": self.user,
            "cmdline": list(self.cmdline) if self.cmdline is not None else None,
            "container": self.container.to_json() if self.container is not None else None,
            "unit": self.unit.to_json() if self.unit is not None else None,
        }


@record
class Socket:
    """One TCP or UDP socket of this machine, with its owners and what its port means.

    ``remote_address``/``remote_port`` are ``None`` when not connected.
    ``processes`` is empty when no owner could be seen; ``owner_note`` then
    says why. ``v6only`` is known only for IPv6 sockets read over netlink.
    ``interface`` is the index of the device the socket is bound to, if any.
    ``uid`` is the socket's own owner (what ``ss -e`` shows) and ``user`` its
    name; each holder in ``processes`` has its own ``user``. ``name`` is your
    name for the port (from the store); ``service`` the book's, and
    ``service_source`` which source gave it (``etc-services``, ``unofficial``
    or ``iana``: see :meth:`portbook.Book.display_names`).

    ``netns`` is the network namespace the socket was read in, ``None`` when
    the table was read without ``netns`` (the caller's own namespace).
    ``container`` is the container behind the socket: its first holder's
    container, else the one a published port leads into, else the one whose
    namespace holds it. ``unit`` is its first holder's systemd unit.
    ``published`` is set for a host port that a container runtime's helper
    holds for a container (``docker-proxy``, ``dockerd``, ``conmon``,
    ``rootlessport``, ``slirp4netns``): where it leads.
    """

    protocol: Protocol
    family: Family
    state: SocketState
    local_address: IPv4Address | IPv6Address
    local_port: int
    remote_address: IPv4Address | IPv6Address | None
    remote_port: int | None
    inode: int
    uid: int
    recv_queue: int
    send_queue: int
    v6only: bool | None
    interface: int | None
    processes: tuple[SocketProcess, ...]
    owner_note: str | None
    service: str | None
    port_class: PortClass
    ephemeral: bool
    exposure: Exposure
    user: str | None = None
    name: str | None = None
    service_source: str | None = None
    netns: Netns | None = None
    container: Container | None = None
    unit: Unit | None = None
    published: Published | None = None

    @property
    def listening(self) -> bool:
        """TCP LISTEN, or an unconnected bound UDP socket."""
        return self.state is SocketState.LISTEN or self.state is SocketState.UNCONN

    def to_json(self) -> dict[str, Any]:
        """The README's JSON contract for one socket."""
        return {
            "protocol": self.protocol.value,
            "family": self.family.value,
            "state": self.state.value,
            "local_address": address_text(self.local_address),
            "local_port": self.local_port,
            "remote_address": None
            if self.remote_address is None
            else address_text(self.remote_address),
            "remote_port": self.remote_port,
            "inode": self.inode,
            "uid": self.uid,
            "user": self.user,
            "processes": [p.to_json() for p in self.processes],
            "owner_note": self.owner_note,
            "service": self.service,
            "service_source": self.service_source,
            "name": self.name,
            "exposure": self.exposure.value,
            "port_class": self.port_class.common_name,
            "ephemeral": self.ephemeral,
            "recv_queue": self.recv_queue,
            "send_queue": self.send_queue,
            "v6only": self.v6only,
            "interface": self.interface,
            "netns": self.netns.to_json() if self.netns is not None else None,
            "container": self.container.to_json() if self.container is not None else None,
            "unit": self.unit.to_json() if self.unit is not None else None,
            "published": self.published.to_json() if self.published is not None else None,
        }


NOTE_NO_PROCESS = "held by the kernel, not by a process"
NOTE_NOT_VISIBLE = "not visible without root"
NOTE_NOT_FOUND = "no owning process found (gone, or outside this process namespace)"


@record
class SocketTable:
    """One reading of the live table: its sockets, the namespaces read, and what was not read.

    ``namespaces`` are the network namespaces the sockets come from (empty
    when the table was read without ``netns``: the caller's own). ``notes``
    says, one sentence each, what could not be read and why (a namespace
    this user may not enter, a container's inside). ``elsewhere`` lists,
    for a table read without ``netns``, the other namespaces that hold
    listening sockets the same filters would select, with how many
    (``None``: it could not be read without root).
    """

    sockets: tuple[Socket, ...]
    namespaces: tuple[Netns, ...] = ()
    notes: tuple[str, ...] = ()
    elsewhere: tuple[tuple[Netns, int | None], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "sockets": [s.to_json() for s in self.sockets],
            "namespaces": [n.to_json() for n in self.namespaces],
            "notes": list(self.notes),
            "elsewhere": [{"netns": n.to_json(), "sockets": c} for n, c in self.elsewhere],
        }


public(Exposure, Socket, SocketProcess, SocketState, SocketTable)
