"""The live table's public records, and the one normaliser that builds them from raw facts.

Every backend returns :class:`~portbook._backends.base.RawSocket` tuples;
:func:`build_sockets` turns them, with the owners found in ``/proc`` and the
book's annotations, into :class:`Socket` records. Nothing else creates a
``Socket``, so every backend gives the same records for the same sockets.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from ._backends.base import TCP_CLOSE, TCP_NEW_SYN_RECV, TCP_SYN_RECV, RawSocket
from ._model import Family, PortClass, Protocol, port_class
from ._owners import OwnerScan, ProcessInfo
from ._system import LocalRanges

__all__ = [
    "Exposure",
    "Socket",
    "SocketProcess",
    "SocketState",
    "build_sockets",
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


# Kernel state number -> state, for TCP; UDP differs only for TCP_CLOSE.
_TCP_STATE_BY_CODE: dict[int, SocketState] = dict(
    zip(range(1, 13), list(SocketState)[:12], strict=True)
)
_UDP_STATE_BY_CODE = {**_TCP_STATE_BY_CODE, TCP_CLOSE: SocketState.UNCONN}


def state_mask(states: Iterable[SocketState], protocol: Protocol) -> int:
    """The kernel state bit mask that selects ``states`` for ``protocol``."""
    table = _UDP_STATE_BY_CODE if protocol is Protocol.UDP else _TCP_STATE_BY_CODE
    wanted = set(states)
    mask = 0
    for code, state in table.items():
        if state in wanted:
            mask |= 1 << code
    if protocol is Protocol.TCP and mask & (1 << TCP_SYN_RECV):
        # Half-open connections are request minisockets, kept by the kernel in
        # state NEW_SYN_RECV but reported as SYN_RECV; ask for both.
        mask |= 1 << TCP_NEW_SYN_RECV
    return mask


class Exposure(enum.StrEnum):
    """Who can reach a socket's local address."""

    LOOPBACK = "loopback"  # 127.0.0.0/8 or ::1: this machine only
    ALL = "all"  # 0.0.0.0 or ::: every interface
    SPECIFIC = "specific"  # one address of one interface


@dataclass(frozen=True, slots=True)
class SocketProcess:
    """A process holding a socket. ``None`` fields could not be read."""

    pid: int
    name: str | None
    cmdline: tuple[str, ...] | None
    user: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "name": self.name,
            "user": self.user,
            "cmdline": list(self.cmdline) if self.cmdline is not None else None,
        }


@dataclass(frozen=True, slots=True)
class Socket:
    """One TCP or UDP socket of this machine, with its owners and what its port means.

    ``remote_address``/``remote_port`` are ``None`` when not connected.
    ``processes`` is empty when no owner could be seen; ``owner_note`` then
    says why. ``v6only`` is known only for IPv6 sockets read over netlink.
    ``interface`` is the index of the device the socket is bound to, if any.
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
            "local_address": str(self.local_address),
            "local_port": self.local_port,
            "remote_address": None if self.remote_address is None else str(self.remote_address),
            "remote_port": self.remote_port,
            "inode": self.inode,
            "uid": self.uid,
            "processes": [p.to_json() for p in self.processes],
            "owner_note": self.owner_note,
            "service": self.service,
            "exposure": self.exposure.value,
            "port_class": self.port_class.common_name,
            "ephemeral": self.ephemeral,
            "recv_queue": self.recv_queue,
            "send_queue": self.send_queue,
            "v6only": self.v6only,
            "interface": self.interface,
        }


NOTE_NO_PROCESS = "held by the kernel, not by a process"
NOTE_NOT_VISIBLE = "not visible without root"
NOTE_NOT_FOUND = "no owning process found (gone, or outside this process namespace)"

_ADDRESS_TYPES: dict[int, Callable[[bytes], IPv4Address | IPv6Address]] = {
    4: ipaddress.IPv4Address,
    6: ipaddress.IPv6Address,
}
_UNSPECIFIED = {bytes(4), bytes(16)}


def _exposure(address: IPv4Address | IPv6Address) -> Exposure:
    if address.is_unspecified:
        return Exposure.ALL
    if address.is_loopback:
        return Exposure.LOOPBACK
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return _exposure(address.ipv4_mapped)
    return Exposure.SPECIFIC


def build_sockets(
    raws: Iterable[RawSocket],
    *,
    scan: OwnerScan | None,
    processes: Mapping[int, ProcessInfo],
    ranges: LocalRanges,
    service: Callable[[int, Protocol], str | None],
) -> list[Socket]:
    """The one place public :class:`Socket` records are made.

    ``scan`` is the owner walk (``None`` when owners were not asked for);
    ``processes`` the details of every owning pid. Values repeated across
    thousands of sockets (addresses, per-port annotations, owner tuples) are
    computed once and shared.
    """
    addresses: dict[bytes, tuple[IPv4Address | IPv6Address, Exposure]] = {}
    per_port: dict[tuple[int, str], tuple[str | None, PortClass, bool]] = {}
    owner_tuples: dict[tuple[int, ...], tuple[SocketProcess, ...]] = {(): ()}
    records: dict[int, SocketProcess] = {
        pid: SocketProcess(info.pid, info.name, info.cmdline, info.user)
        for pid, info in processes.items()
    }
    owners = scan.owners if scan is not None else {}
    hidden = scan is not None and scan.hidden > 0
    protocols = {"tcp": Protocol.TCP, "udp": Protocol.UDP}
    families = {4: Family.INET, 6: Family.INET6}
    out: list[Socket] = []
    append = out.append
    for raw in raws:
        (
            proto_name,
            fam,
            code,
            laddr,
            lport,
            raddr,
            rport,
            inode,
            uid,
            rq,
            sq,
            v6only,
            ifindex,
            raw_pids,
        ) = raw
        protocol = protocols[proto_name]
        local = addresses.get(laddr)
        if local is None:
            address = _ADDRESS_TYPES[fam](laddr)
            local = addresses[laddr] = (address, _exposure(address))
        key = (lport, proto_name)
        annotation = per_port.get(key)
        if annotation is None:
            annotation = per_port[key] = (
                service(lport, protocol),
                port_class(lport),
                ranges.is_ephemeral(lport),
            )
        if rport == 0 and raddr in _UNSPECIFIED:
            remote_address: IPv4Address | IPv6Address | None = None
            remote_port: int | None = None
        else:
            remote = addresses.get(raddr)
            if remote is None:
                address = _ADDRESS_TYPES[fam](raddr)
                remote = addresses[raddr] = (address, _exposure(address))
            remote_address, remote_port = remote[0], rport
        note: str | None = None
        if scan is None and raw_pids is None:
            procs: tuple[SocketProcess, ...] = ()
        else:
            pids = tuple(raw_pids) if raw_pids is not None else tuple(owners.get(inode, ()))
            procs_found = owner_tuples.get(pids)
            if procs_found is None:
                procs_found = owner_tuples[pids] = tuple(
                    records.get(pid) or SocketProcess(pid, None, None, None) for pid in pids
                )
            procs = procs_found
            if not procs:
                if raw_pids is None and inode == 0:
                    note = NOTE_NO_PROCESS
                elif hidden or raw_pids is not None:
                    note = NOTE_NOT_VISIBLE
                else:
                    note = NOTE_NOT_FOUND
        state_table = _UDP_STATE_BY_CODE if proto_name == "udp" else _TCP_STATE_BY_CODE
        append(
            Socket(
                protocol,
                families[fam],
                state_table.get(code, SocketState.CLOSE),
                local[0],
                lport,
                remote_address,
                remote_port,
                inode,
                uid,
                rq,
                sq,
                v6only,
                ifindex or None,
                procs,
                note,
                annotation[0],
                annotation[1],
                annotation[2],
                local[1],
            )
        )
    return out
