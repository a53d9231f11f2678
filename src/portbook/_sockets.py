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
from dataclasses import dataclass, fields
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
    "sockets_json",
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


def _socket_maker() -> Callable[..., Socket]:
    """A constructor for :class:`Socket` that skips the dataclass ``__init__``.

    A frozen dataclass sets each field through ``object.__setattr__``, which
    costs about twice as much as calling the slot descriptors directly; for
    50,000 sockets that is a visible part of the whole run. The result is
    the same object (tests compare it with ``Socket(...)``).
    """
    (
        s0,
        s1,
        s2,
        s3,
        s4,
        s5,
        s6,
        s7,
        s8,
        s9,
        s10,
        s11,
        s12,
        s13,
        s14,
        s15,
        s16,
        s17,
        s18,
    ) = (getattr(Socket, f.name).__set__ for f in fields(Socket))
    new = object.__new__

    def make(  # noqa: PLR0917 - one positional per field, in field order
        a0: Any,
        a1: Any,
        a2: Any,
        a3: Any,
        a4: Any,
        a5: Any,
        a6: Any,
        a7: Any,
        a8: Any,
        a9: Any,
        a10: Any,
        a11: Any,
        a12: Any,
        a13: Any,
        a14: Any,
        a15: Any,
        a16: Any,
        a17: Any,
        a18: Any,
    ) -> Socket:
        o: Socket = new(Socket)
        s0(o, a0)
        s1(o, a1)
        s2(o, a2)
        s3(o, a3)
        s4(o, a4)
        s5(o, a5)
        s6(o, a6)
        s7(o, a7)
        s8(o, a8)
        s9(o, a9)
        s10(o, a10)
        s11(o, a11)
        s12(o, a12)
        s13(o, a13)
        s14(o, a14)
        s15(o, a15)
        s16(o, a16)
        s17(o, a17)
        s18(o, a18)
        return o

    return make


_make_socket = _socket_maker()


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
    owners_get = owners.get
    hidden = scan is not None and scan.hidden > 0
    protocols = {"tcp": Protocol.TCP, "udp": Protocol.UDP}
    families = {4: Family.INET, 6: Family.INET6}
    state_tables = {"tcp": _TCP_STATE_BY_CODE, "udp": _UDP_STATE_BY_CODE}
    make = _make_socket
    out: list[Socket] = []
    append = out.append
    no_pids: tuple[int, ...] = ()
    for (
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
    ) in raws:
        protocol = protocols[proto_name]
        local = addresses.get(laddr)
        if local is None:
            address = _ADDRESS_TYPES[fam](laddr)
            local = addresses[laddr] = (address, _exposure(address))
        annotation = per_port.get((lport, proto_name))
        if annotation is None:
            annotation = per_port[(lport, proto_name)] = (
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
            if raw_pids is not None:
                pids = raw_pids
            else:
                found = owners_get(inode)
                pids = tuple(found) if found else no_pids
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
        append(
            make(
                protocol,
                families[fam],
                state_tables[proto_name].get(code, SocketState.CLOSE),
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


def sockets_json(sockets: Iterable[Socket], *, indent: int | None = None) -> str:
    """The JSON array of ``sockets`` (each as :meth:`Socket.to_json`), as text.

    Equal to ``json.dumps([s.to_json() for s in sockets], indent=indent,
    ensure_ascii=False)``, but several times faster for large tables: the
    pieces shared between sockets (addresses, owner lists, notes) are encoded
    once, and each socket is one string format.
    """
    import json

    if indent is not None:
        return json.dumps([s.to_json() for s in sockets], indent=indent, ensure_ascii=False)
    dumps = json.dumps
    strings: dict[object, str] = {None: "null", True: "true", False: "false"}
    owner_lists: dict[int, str] = {}
    keep: list[object] = []  # holds owner tuples alive while their id() is a cache key

    def text(value: object) -> str:
        encoded = strings.get(value)
        if encoded is None:
            if isinstance(value, enum.Enum):
                encoded = dumps(value.value, ensure_ascii=False)
            elif isinstance(value, (IPv4Address, IPv6Address)):
                encoded = '"' + str(value) + '"'
            else:
                encoded = dumps(value, ensure_ascii=False)
            strings[value] = encoded
        return encoded

    parts: list[str] = []
    append = parts.append
    for s in sockets:
        procs = s.processes
        owners = owner_lists.get(id(procs))
        if owners is None:
            keep.append(procs)
            owners = owner_lists[id(procs)] = dumps(
                [p.to_json() for p in procs], ensure_ascii=False
            )
        remote_port = s.remote_port
        append(
            f'{{"protocol": {text(s.protocol)}, "family": {s.family.value}, '
            f'"state": {text(s.state)}, "local_address": {text(s.local_address)}, '
            f'"local_port": {s.local_port}, "remote_address": {text(s.remote_address)}, '
            f'"remote_port": {"null" if remote_port is None else remote_port}, '
            f'"inode": {s.inode}, "uid": {s.uid}, "processes": {owners}, '
            f'"owner_note": {text(s.owner_note)}, "service": {text(s.service)}, '
            f'"exposure": {text(s.exposure)}, "port_class": {text(s.port_class.common_name)}, '
            f'"ephemeral": {text(s.ephemeral)}, "recv_queue": {s.recv_queue}, '
            f'"send_queue": {s.send_queue}, "v6only": {text(s.v6only)}, '
            f'"interface": {"null" if s.interface is None else s.interface}}}'
        )
    return "[" + ", ".join(parts) + "]"
