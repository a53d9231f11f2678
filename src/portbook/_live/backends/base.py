"""The one interface every socket-table backend implements, and the raw facts it returns.

A backend reports what the operating system says, nothing more: numbers,
address bytes, kernel state codes. It never builds public records; that is
done in one place, :func:`portbook._live.records.build_sockets`, so that every
backend gives identical results for the same sockets.
"""

from __future__ import annotations

from portbook._record import maker, public, record

# Not `from typing import ...`: see portbook._record. At run time
# SocketBackend is a plain class that documents the interface; type checkers
# see the typing.Protocol it is.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Protocol
else:
    Protocol = object

__all__ = [
    "TCP_STATES",
    "RawSocket",
    "SocketBackend",
    "TableQuery",
    "make_raw_socket",
]

# The kernel's TCP state numbers (include/net/tcp_states.h), used by netlink,
# /proc/net/* and, once translated, by the psutil backend. UDP reuses two of
# them: TCP_ESTABLISHED for a connected socket and TCP_CLOSE for an
# unconnected one.
TCP_ESTABLISHED = 1
TCP_SYN_SENT = 2
TCP_SYN_RECV = 3
TCP_FIN_WAIT1 = 4
TCP_FIN_WAIT2 = 5
TCP_TIME_WAIT = 6
TCP_CLOSE = 7
TCP_CLOSE_WAIT = 8
TCP_LAST_ACK = 9
TCP_LISTEN = 10
TCP_CLOSING = 11
TCP_NEW_SYN_RECV = 12
# Linux 6.9+: asking for this state (it is never reported as such) makes the
# dump include TCP sockets that are bound but neither listening nor
# connected, which are reported as TCP_CLOSE (`ss -B` asks the same). Older
# kernels ignore the bit: such sockets then stay out of every table, as they
# always have in /proc/net/tcp.
TCP_BOUND_INACTIVE = 13

TCP_STATES = range(TCP_ESTABLISHED, TCP_NEW_SYN_RECV + 1)
ALL_STATES_MASK = sum(1 << s for s in TCP_STATES) | 1 << TCP_BOUND_INACTIVE


@record(order=True)
class RawSocket:
    """One socket as the operating system reports it: numbers and bytes, nothing looked up.

    Backends build these with :data:`make_raw_socket` (one C call each: tens
    of thousands are made per listing); ``RawSocket(...)`` works too.
    """

    protocol: str  #: "tcp" or "udp"
    family: int  #: 4 or 6
    state: int  #: kernel TCP state number (UDP: TCP_ESTABLISHED or TCP_CLOSE)
    local_address: bytes  #: packed, 4 (IPv4) or 16 (IPv6) bytes
    local_port: int
    remote_address: bytes  #: packed; all zero when not connected
    remote_port: int  #: 0 when not connected
    inode: int  #: 0 for TIME-WAIT and request minisockets
    uid: int  #: the socket's owner uid, -1 when unknown
    recv_queue: int
    send_queue: int
    v6only: bool | None  #: None when unknown
    interface: int  #: bound device index, 0 for none
    #: None when owners are to be found in /proc, else the owning pids the backend knows
    pids: tuple[int, ...] | None


make_raw_socket = maker(RawSocket)


@record
class TableQuery:
    """What to ask the operating system for; a backend returns exactly the matching sockets.

    ``state_mask`` is a bit mask of kernel state numbers (``1 << state``);
    ``ports`` an inclusive ``(first, last)`` range of local ports or ``None``.
    The netlink backend hands both to the kernel; others filter themselves.
    """

    protocols: frozenset[str] = frozenset({"tcp", "udp"})
    families: frozenset[int] = frozenset({4, 6})
    state_mask: int = ALL_STATES_MASK
    ports: tuple[int, int] | None = None


class SocketBackend(Protocol):
    """Reads the socket table of this machine."""

    #: short name shown to users ("netlink", "procfs", "psutil")
    name: str
    #: True when the raw sockets carry their owning pids (no /proc walk needed)
    provides_owners: bool

    def available(self) -> bool:
        """True when this backend can work on this machine, checked cheaply."""

    def sockets(self, query: TableQuery) -> Iterable[RawSocket]:
        """The sockets matching ``query``; raises ``SocketTableError`` when unreadable."""


public(RawSocket, SocketBackend, TableQuery)
