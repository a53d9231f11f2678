"""Socket records built from sockets a test opened itself (a seam for the pure route logic).

The records carry the attributes :func:`portbook._route.route_packet` reads, taken
from the kernel through the socket itself (getsockname, getpeername, getsockopt,
fstat for the inode), so the decision logic can be checked against real delivery
without reading the whole socket table.
"""

from __future__ import annotations

import os
import select
import socket
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

from portbook._model import Family, Protocol

SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)


@dataclass(frozen=True, slots=True)
class Rec:
    protocol: Protocol
    family: Family
    state: str
    local_address: str
    local_port: int
    remote_address: str | None
    remote_port: int | None
    v6only: bool | None
    interface: int | None
    inode: int


def inode(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


def record(sock: socket.socket) -> Rec:
    tcp = sock.type == socket.SOCK_STREAM
    fam = Family.INET6 if sock.family == socket.AF_INET6 else Family.INET
    local = sock.getsockname()
    try:
        peer: tuple[str, int] | None = sock.getpeername()[:2]
    except OSError:
        peer = None
    if tcp:
        listening = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        state = "LISTEN" if listening else ("ESTAB" if peer else "CLOSE")
    else:
        state = "ESTAB" if peer else "UNCONN"
    v6only = (
        bool(sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
        if fam == Family.INET6
        else None
    )
    dev = sock.getsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, 16).rstrip(b"\0").decode()
    return Rec(
        protocol=Protocol.TCP if tcp else Protocol.UDP,
        family=fam,
        state=state,
        local_address=local[0],
        local_port=local[1],
        remote_address=peer[0] if peer else None,
        remote_port=peer[1] if peer else None,
        v6only=v6only,
        interface=socket.if_nametoindex(dev) if dev else None,
        inode=inode(sock),
    )


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

    def records(self) -> list[Rec]:
        return [record(s) for s in self.opened if s.fileno() >= 0]


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


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True
