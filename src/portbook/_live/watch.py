"""Watching the live table: refresh it and say what opened and closed since the last look."""

from __future__ import annotations

from portbook._exceptions import UsageError
from portbook._live.records import Socket
from portbook._record import public, record

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["SocketChanges", "watch"]


@record
class SocketChanges:
    """One refresh of :func:`portbook.watch_sockets`: the table now, and what changed.

    On the first refresh (``first``) ``opened`` holds every socket and
    ``closed`` is empty: that is what was already there, not what opened.
    """

    sockets: tuple[Socket, ...]
    opened: tuple[Socket, ...]
    closed: tuple[Socket, ...]
    first: bool


def identity(s: Socket) -> tuple[object, ...]:
    """What makes "the same socket" across refreshes: its addresses, state and inode.

    A state change (LISTEN to CLOSE, say) counts as closed and opened.
    """
    return (
        s.protocol,
        s.family,
        s.state,
        s.local_address,
        s.local_port,
        s.remote_address,
        s.remote_port,
        s.inode,
    )


def watch(
    read: Callable[[], list[Socket]], *, interval: float, count: int | None
) -> Iterator[SocketChanges]:
    """Call ``read()`` now and every ``interval`` seconds, ``count`` times (``None``: forever).

    Raises :class:`UsageError` for an interval that is not a positive
    finite number or a count below 1.
    """
    import math
    import time

    if not (interval > 0 and math.isfinite(interval)):  # NaN fails both
        raise UsageError(f"the watch interval must be a number of seconds above 0, not {interval}")
    if count is not None and count < 1:
        raise UsageError(f"the watch count must be at least 1, not {count}")
    previous: dict[tuple[object, ...], Socket] = {}
    refreshes = 0
    while True:
        current = {identity(s): s for s in read()}
        refreshes += 1
        yield SocketChanges(
            sockets=tuple(current.values()),
            opened=tuple(s for k, s in current.items() if k not in previous),
            closed=tuple(s for k, s in previous.items() if k not in current),
            first=refreshes == 1,
        )
        previous = current
        if count is not None and refreshes >= count:
            return
        time.sleep(interval)


public(SocketChanges)
