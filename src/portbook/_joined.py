"""The three names joined: the live table with what the book calls each port.

The book, the live table and your names know nothing of each other; this
module is where they meet. :func:`list_sockets` reads the live table and
hands it the book's names for its ports; the tools around ports (``kill``,
``route``, ``wait``, ``ephemeral``) read the table through it.
"""

from __future__ import annotations

from portbook._live.table import read_sockets, socket_filter

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping
    from typing import Any

    from portbook._live.backends.base import SocketBackend
    from portbook._live.records import Socket, SocketState
    from portbook._live.watch import SocketChanges
    from portbook._ports import Family, PortRange, Protocol

__all__ = ["list_sockets", "sockets_on_port", "watch_sockets"]


def _book_names(pairs: set[tuple[int, str]]) -> Mapping[tuple[int, str], str | None]:
    """What the book calls each (port, protocol): one bulk question for a whole table."""
    from portbook._book.book import default_book

    return default_book().service_names(pairs)


def list_sockets(
    *,
    protocols: Iterable[Protocol | str] | None = None,
    families: Iterable[Family | int] | None = None,
    states: Iterable[SocketState | str] | None = None,
    listening: bool = False,
    port: int | PortRange | None = None,
    pid: int | None = None,
    user: str | int | None = None,
    program: str | None = None,
    owners: bool = True,
    backend: SocketBackend | None = None,
) -> list[Socket]:
    """Sockets of this machine, filtered; every filter given must hold.

    ``listening=True`` keeps TCP ``LISTEN`` and unconnected bound UDP
    (``UNCONN``) sockets. ``port`` is a local port or a :class:`PortRange`.
    ``pid``, ``user`` (name or uid of a holding process, or the socket's uid)
    and ``program`` (process name or command basename) select by holder.
    Every holder of every socket listed is found, whatever the filters:
    every process's descriptors are read. ``owners=False`` skips that walk
    (``processes`` stays empty). Without root, holders of other users'
    sockets cannot be seen: such sockets are still listed, with
    ``owner_note`` saying so.
    """
    chosen = socket_filter(
        protocols=protocols,
        families=families,
        states=states,
        listening=listening,
        port=port,
        pid=pid,
        user=user,
        program=program,
        owners=owners,
    )
    return read_sockets(chosen, backend=backend, names=_book_names)


def sockets_on_port(
    port: int,
    protocol: Protocol | str | None = None,
    *,
    owners: bool = True,
    backend: SocketBackend | None = None,
) -> list[Socket]:
    """Every socket whose local port is exactly ``port`` (any state), with its holders."""
    return list_sockets(
        protocols=None if protocol is None else [protocol],
        port=port,
        owners=owners,
        backend=backend,
    )


def watch_sockets(
    *, interval: float = 1.0, count: int | None = None, **filters: Any
) -> Iterator[SocketChanges]:
    """Refresh :func:`list_sockets` (same filters) every ``interval`` seconds.

    Yields a :class:`SocketChanges` at once and then after each interval,
    ``count`` times in all (forever when ``None``). Raises
    :class:`UsageError` for an interval that is not a positive number or a
    count below 1, and whatever :func:`list_sockets` raises.
    """
    from portbook._live.watch import watch

    socket_filter(**{k: v for k, v in filters.items() if k != "backend"})  # fail now, not later
    return watch(lambda: list_sockets(**filters), interval=interval, count=count)
