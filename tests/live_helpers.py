"""Helpers for the live-table tests: real loopback sockets, holder processes, and ss as oracle."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pytest

from portbook import Socket, ipv6_available

LOOPBACK: dict[int, str] = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}


needs_ipv6 = pytest.mark.skipif(not ipv6_available(), reason="no IPv6 on loopback")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
needs_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux")
needs_ss = pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")


class SocketSet:
    """Sockets a test opens; all closed at the end."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []

    def keep(self, sock: socket.socket) -> socket.socket:
        self.sockets.append(sock)
        return sock

    def tcp_listener(self, family: int = socket.AF_INET, host: str | None = None) -> socket.socket:
        s = self.keep(socket.socket(family, socket.SOCK_STREAM))
        s.bind((host if host is not None else LOOPBACK[family], 0))
        s.listen(8)
        return s

    def tcp_pair(self, listener: socket.socket) -> tuple[socket.socket, socket.socket]:
        client = self.keep(socket.socket(listener.family, socket.SOCK_STREAM))
        client.connect(listener.getsockname()[:2])
        server, _ = listener.accept()
        self.keep(server)
        return client, server

    def udp_bound(self, family: int = socket.AF_INET) -> socket.socket:
        s = self.keep(socket.socket(family, socket.SOCK_DGRAM))
        s.bind((LOOPBACK[family], 0))
        return s

    def udp_connected(self, peer: socket.socket) -> socket.socket:
        s = self.udp_bound(peer.family)
        s.connect(peer.getsockname()[:2])
        return s

    def close(self) -> None:
        for s in self.sockets:
            s.close()
        self.sockets.clear()


@contextlib.contextmanager
def open_sockets() -> Iterator[SocketSet]:
    sockets = SocketSet()
    try:
        yield sockets
    finally:
        sockets.close()


def port_of(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port


@dataclass
class Holder:
    """A child process holding a listener it made (and, if asked, a forked twin)."""

    process: subprocess.Popen[str]
    port: int
    pids: tuple[int, ...]

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


_HOLDER = textwrap.dedent(
    """
    import os, socket, sys
    family = socket.AF_INET6 if sys.argv[1] == "6" else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    s.listen(4)
    pids = [os.getpid()]
    child = 0
    if sys.argv[2] == "shared":
        r, w = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(w)
            os.read(r, 1)  # hold the inherited socket until the parent says stop
            os._exit(0)
        os.close(r)
        pids.append(child)
    print(s.getsockname()[1], *pids, flush=True)
    sys.stdin.read()
    if child:
        os.write(w, b"x")
        os.waitpid(child, 0)
    """
)


def start_holder(family: int = 4, shared: bool = False) -> Holder:
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(family), "shared" if shared else "single"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    fields = process.stdout.readline().split()
    return Holder(process, int(fields[0]), tuple(int(f) for f in fields[1:]))


# ---- ss as oracle -----------------------------------------------------------------

_USERS = re.compile(r"pid=(\d+)")


def _endpoint(text: str) -> tuple[str, int | None]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if "%" in host:
        host = host.split("%", 1)[0]
    if port == "*":
        return host, None
    return host, int(port)


Row = tuple[str, str, int, str | None, int | None, str, frozenset[int]]


def ss_rows(ports: Iterable[int], *extra: str) -> set[Row]:
    """(protocol, local, lport, remote, rport, state, pids) from ``ss -tuanpH``, for ``ports``."""
    wanted = set(ports)
    out = subprocess.run(
        ["ss", "-tuanpH", *extra], capture_output=True, text=True, check=True
    ).stdout
    rows: set[Row] = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 6:
            continue
        proto, state = fields[0], fields[1]
        local, lport = _endpoint(fields[4])
        remote, rport = _endpoint(fields[5])
        if lport not in wanted and rport not in wanted:
            continue
        if rport is None or rport == 0:
            remote_text: str | None = None
            rport = None
        else:
            remote_text = remote
        pids = frozenset(int(p) for p in _USERS.findall(" ".join(fields[6:])))
        rows.add((proto, local, lport or 0, remote_text, rport, state, pids))
    return rows


def portbook_rows(sockets: Iterable[Socket], ports: Iterable[int]) -> set[Row]:
    """The same rows from portbook's records, for ``ports``."""
    wanted = set(ports)
    return {
        (
            s.protocol.value,
            str(s.local_address),
            s.local_port,
            None if s.remote_address is None else str(s.remote_address),
            s.remote_port,
            s.state.value,
            frozenset(p.pid for p in s.processes),
        )
        for s in sockets
        if s.local_port in wanted or s.remote_port in wanted
    }
