"""Sockets a test opens itself, and a socket-table backend that reports just them.

The backend (the designed seam of the live table) reads each socket's facts
through the socket itself (getsockname, getpeername, getsockopt, fstat for the
inode), so decisions can be checked against real delivery both on these
records and on the kernel's own table.
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack

from portbook._live.backends.base import (
    TCP_CLOSE,
    TCP_ESTABLISHED,
    TCP_LISTEN,
    RawSocket,
    TableQuery,
)
from portbook._live.records import Socket

SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)


def inode(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


def raw(sock: socket.socket) -> RawSocket:
    """The raw facts of a socket this process holds, read through the socket itself."""
    tcp = sock.type == socket.SOCK_STREAM
    v6 = sock.family == socket.AF_INET6
    local = sock.getsockname()
    try:
        peer: tuple[str, int] | None = sock.getpeername()[:2]
    except OSError:
        peer = None
    if tcp:
        listening = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        state = TCP_LISTEN if listening else (TCP_ESTABLISHED if peer else TCP_CLOSE)
    else:
        state = TCP_ESTABLISHED if peer else TCP_CLOSE
    v6only = bool(sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)) if v6 else None
    dev = sock.getsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, 16).rstrip(b"\0").decode()
    size = 16 if v6 else 4

    def packed(addr: str | None) -> bytes:
        return ipaddress.ip_address(addr.split("%")[0]).packed if addr else bytes(size)

    return RawSocket(
        "tcp" if tcp else "udp",
        6 if v6 else 4,
        state,
        packed(local[0]),
        local[1],
        packed(peer[0] if peer else None),
        peer[1] if peer else 0,
        inode(sock),
        os.getuid(),
        0,
        0,
        v6only,
        socket.if_nametoindex(dev) if dev else 0,
        (os.getpid(),),
    )


class OwnSockets:
    """A socket-table backend that reports only the sockets a test opened itself."""

    name = "own"
    provides_owners = True  # every socket here is this process's

    def __init__(self, socks: Sockets) -> None:
        self._socks = socks

    def available(self) -> bool:
        return True

    def sockets(self, query: TableQuery) -> Iterable[RawSocket]:
        for r in (raw(s) for s in self._socks.opened if s.fileno() >= 0):
            protocol, family, state, local_port = r.protocol, r.family, r.state, r.local_port
            if protocol not in query.protocols or family not in query.families:
                continue
            if not query.state_mask & (1 << state):
                continue
            if query.ports is not None and not query.ports[0] <= local_port <= query.ports[1]:
                continue
            yield r


class Sockets:
    """Opens sockets for one test and closes every one of them afterwards."""

    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack
        self.opened: list[socket.socket] = []

    def open(
        self,
        family: int,
        kind: int,
        address: str,
        port: int = 0,
        *,
        reuseaddr: bool = False,
        reuseport: bool = False,
        v6only: bool | None = None,
        device: str | None = None,
        listen: bool = True,
    ) -> socket.socket:
        sock = socket.socket(family, kind)
        self._stack.callback(sock.close)
        self.opened.append(sock)
        if reuseaddr:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if v6only is not None:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
        if device is not None:
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, device.encode())
        sock.bind((address, port))
        if listen and kind == socket.SOCK_STREAM:
            sock.listen(16)
        return sock

    def tcp(self, address: str, port: int = 0, **kw: object) -> socket.socket:
        fam = socket.AF_INET6 if ":" in address else socket.AF_INET
        return self.open(fam, socket.SOCK_STREAM, address, port, **kw)  # type: ignore[arg-type]

    def udp(self, address: str, port: int = 0, **kw: object) -> socket.socket:
        fam = socket.AF_INET6 if ":" in address else socket.AF_INET
        return self.open(fam, socket.SOCK_DGRAM, address, port, **kw)  # type: ignore[arg-type]

    def connect(self, address: str, port: int, *, source: str | None = None) -> socket.socket:
        fam = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_STREAM)
        self._stack.callback(sock.close)
        self.opened.append(sock)
        if source is not None:
            sock.bind((source, 0))
        sock.settimeout(2)
        sock.connect((address, port))
        return sock

    def adopt(self, sock: socket.socket) -> socket.socket:
        self._stack.callback(sock.close)
        self.opened.append(sock)
        return sock

    def records(self) -> list[Socket]:
        from portbook._joined import list_sockets

        return list_sockets(backend=OwnSockets(self), owners=False)


def which_accepts(listeners: Sequence[socket.socket], adopt: Sockets) -> socket.socket:
    """The one listener with a connection waiting (accepts it); fails if none or several."""
    ready, _, _ = select.select(list(listeners), [], [], 2.0)
    assert len(ready) == 1, f"{len(ready)} listeners have a pending connection"
    conn, _ = ready[0].accept()
    adopt.adopt(conn)
    return ready[0]


def which_receives(receivers: Sequence[socket.socket], payload: bytes) -> socket.socket | None:
    """The one socket that got ``payload`` (read), or None if no one did within a second."""
    ready, _, _ = select.select(list(receivers), [], [], 1.0)
    got = [s for s in ready if s.recv(2048) == payload]
    assert len(got) <= 1
    return got[0] if got else None


def iter_ports(socks: Sequence[socket.socket]) -> Iterator[int]:
    for s in socks:
        yield s.getsockname()[1]
