"""The one interface every socket-table backend implements, and the raw facts it returns.

A backend reports what the operating system says, nothing more: numbers,
address bytes, kernel state codes. It never builds public records; that is
done in one place, :func:`portbook._live.build.iter_sockets`, so that every
backend gives identical results for the same sockets.
"""

from __future__ import annotations

from portbook._record import maker, public, record

# Not `from typing import ...`: see portbook._record. At run time
# SocketBackend is a plain class that documents the interface; type checkers
# see the typing.Protocol it is.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any, Protocol
else:
    Protocol = object

__all__ = [
    "TCP_STATES",
    "RawRows",
    "RawSocket",
    "RowBlock",
    "SocketBackend",
    "TableQuery",
    "holder_keys",
    "make_raw_socket",
    "port_pairs",
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


class RowBlock(Protocol):
    """Rows a backend keeps in a compact form of its own, decoded into RawSocket when iterated.

    A row object costs about 200 bytes; the kernel's message for the same
    socket, kept as it came, 72. A listing iterates its rows once to build
    the records, and before that asks only for two columns of them, which a
    block answers without decoding whole rows. Rows of a block never carry
    ``pids``.
    """

    def __len__(self) -> int:
        """How many rows the block holds."""

    def __iter__(self) -> Iterator[RawSocket]:
        """Each row, decoded."""

    def port_pairs(self) -> set[tuple[int, str]]:
        """The (local port, protocol) pairs of the rows."""

    def inodes(self) -> Iterable[int]:
        """The inode of each row (0 for TIME-WAIT and request minisockets)."""


class RawRows:
    """The rows of one table read (one query or several), iterated as RawSocket, in order.

    Each part is a list of rows or a backend's :class:`RowBlock`; the
    questions a listing asks of every row before it builds the records
    (which ports to name, which sockets to find holders for) go to each part
    in the cheapest way it has.
    """

    def __init__(self, parts: Iterable[Iterable[RawSocket]] = ()) -> None:
        self._parts: list[list[RawSocket] | RowBlock] = []
        for part in parts:
            self.add(part)

    def add(self, rows: Iterable[RawSocket]) -> None:
        """Append ``rows``: another RawRows's parts, a block, or any rows (copied to a list).

        A backend of the caller's may return plain tuples in field order:
        they become RawSocket here.
        """
        if isinstance(rows, RawRows):
            self._parts.extend(rows._parts)
        elif hasattr(rows, "port_pairs"):
            self._parts.append(rows)  # type: ignore[arg-type]
        else:
            plain: Iterable[Any] = rows
            self._parts.append([r if type(r) is RawSocket else RawSocket(*r) for r in plain])

    def __len__(self) -> int:
        return sum(map(len, self._parts))

    def __iter__(self) -> Iterator[RawSocket]:
        for part in self._parts:
            yield from part

    def port_pairs(self) -> set[tuple[int, str]]:
        """The (local port, protocol) pairs of every row."""
        pairs: set[tuple[int, str]] = set()
        for part in self._parts:
            if isinstance(part, list):
                pairs.update((r.local_port, r.protocol) for r in part)
            else:
                pairs |= part.port_pairs()
        return pairs

    def holder_keys(self) -> Iterator[tuple[int, tuple[int, ...] | None]]:
        """(inode, pids) of every row: what finding its holders starts from."""
        for part in self._parts:
            if isinstance(part, list):
                for r in part:
                    yield r.inode, r.pids
            else:
                for inode in part.inodes():
                    yield inode, None


def port_pairs(rows: Iterable[RawSocket]) -> set[tuple[int, str]]:
    """The (local port, protocol) pairs of ``rows``, from their columns where they are RawRows."""
    if isinstance(rows, RawRows):
        return rows.port_pairs()
    return {(r.local_port, r.protocol) for r in rows}


def holder_keys(rows: Iterable[RawSocket]) -> Iterable[tuple[int, tuple[int, ...] | None]]:
    """(inode, pids) of each of ``rows``, from their columns where they are RawRows."""
    if isinstance(rows, RawRows):
        return rows.holder_keys()
    return ((r.inode, r.pids) for r in rows)


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
