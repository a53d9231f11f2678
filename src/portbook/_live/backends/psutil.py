"""Systems without netlink or /proc (macOS, the BSDs, Windows): the socket table from psutil.

psutil reports one entry per (process, descriptor) and no inode or socket
uid; entries that describe the same connection are merged into one socket
owned by every process that holds it. ``inode`` is 0 and ``uid`` is -1
(unknown) for every socket from this backend. Two distinct sockets with the
same addresses and state (``SO_REUSEPORT`` listeners) cannot be told apart
here and are shown as one socket with all their owners. psutil itself may
name only one of several processes sharing a socket (on Linux it keeps one
pid per socket inode).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

from portbook._exceptions import SocketTableError
from portbook._live.backends.base import (
    TCP_CLOSE,
    TCP_CLOSE_WAIT,
    TCP_CLOSING,
    TCP_ESTABLISHED,
    TCP_FIN_WAIT1,
    TCP_FIN_WAIT2,
    TCP_LAST_ACK,
    TCP_LISTEN,
    TCP_SYN_RECV,
    TCP_SYN_SENT,
    TCP_TIME_WAIT,
    RawSocket,
    TableQuery,
    make_raw_socket,
)
from portbook._record import public

__all__ = ["PsutilBackend"]

_STATES = {
    "ESTABLISHED": TCP_ESTABLISHED,
    "SYN_SENT": TCP_SYN_SENT,
    "SYN_RECV": TCP_SYN_RECV,
    "FIN_WAIT1": TCP_FIN_WAIT1,
    "FIN_WAIT2": TCP_FIN_WAIT2,
    "TIME_WAIT": TCP_TIME_WAIT,
    "CLOSE": TCP_CLOSE,
    "CLOSE_WAIT": TCP_CLOSE_WAIT,
    "LAST_ACK": TCP_LAST_ACK,
    "LISTEN": TCP_LISTEN,
    "CLOSING": TCP_CLOSING,
}


def _import_psutil() -> Any:
    import psutil

    return psutil


class PsutilBackend:
    """Reads the socket table with ``psutil.net_connections()``."""

    name = "psutil"
    provides_owners = True

    def available(self) -> bool:
        try:
            _import_psutil()
        except ImportError:
            return False
        return True

    def sockets(self, query: TableQuery) -> Iterable[RawSocket]:
        try:
            psutil = _import_psutil()
        except ImportError as exc:
            raise SocketTableError("psutil is not installed: pip install psutil") from exc
        try:
            entries = psutil.net_connections(kind="inet")
        except (psutil.AccessDenied, OSError) as exc:
            raise SocketTableError(f"psutil cannot read the socket table: {exc}") from exc
        return _rows(_merged(entries, query))


def _key(entry: Any, query: TableQuery) -> tuple[Any, ...] | None:
    """``(protocol, family, state, lhost, lport, rhost, rport)`` of an entry ``query`` wants."""
    if entry.type == socket.SOCK_STREAM:
        protocol = "tcp"
    elif entry.type == socket.SOCK_DGRAM:
        protocol = "udp"
    else:
        return None
    family = 6 if entry.family == socket.AF_INET6 else 4
    if protocol not in query.protocols or family not in query.families or not entry.laddr:
        return None  # (an unbound socket has no port to show)
    lhost, lport = entry.laddr[0], entry.laddr[1]
    rhost, rport = (entry.raddr[0], entry.raddr[1]) if entry.raddr else ("", 0)
    if protocol == "udp":
        state = TCP_ESTABLISHED if entry.raddr else TCP_CLOSE
    else:
        state = _STATES.get(entry.status, TCP_CLOSE)
    first, last = query.ports if query.ports is not None else (0, 65535)
    if not query.state_mask & (1 << state) or not first <= lport <= last:
        return None
    return (protocol, family, state, lhost, lport, rhost, rport)


def _merged(entries: Iterable[Any], query: TableQuery) -> dict[tuple[Any, ...], list[int]]:
    """The wanted entries, one per socket, with every pid psutil named for it (in order)."""
    merged: dict[tuple[Any, ...], list[int]] = {}
    for entry in entries:
        key = _key(entry, query)
        if key is None:
            continue
        pids = merged.setdefault(key, [])
        if entry.pid is not None and entry.pid not in pids:
            pids.append(entry.pid)
    return merged


def _rows(merged: dict[tuple[Any, ...], list[int]]) -> list[RawSocket]:
    af = {4: socket.AF_INET, 6: socket.AF_INET6}
    zero = {4: bytes(4), 6: bytes(16)}
    result: list[RawSocket] = []
    for (protocol, family, state, lhost, lport, rhost, rport), pids in merged.items():
        local = _pack(af[family], lhost, zero[family])
        remote = _pack(af[family], rhost, zero[family])
        # fmt: off
        result.append(make_raw_socket((
            protocol, family, state, local, lport, remote, rport, 0, -1, 0, 0, None, 0,
            tuple(sorted(pids)),
        )))
        # fmt: on
    return result


def _pack(af: int, host: str, zero: bytes) -> bytes:
    if not host:
        return zero
    # A scope suffix ("fe80::1%en0") is not part of the address bytes.
    return socket.inet_pton(af, host.split("%", 1)[0])


public(PsutilBackend)
