"""What the exporter and the dashboard report, read through portbook's public API.

:class:`Source` is the one place that asks the library; the collector and the
server only format what it returns, and tests hand them a ``Source`` of their
own (a slow one, a failing one). :class:`Snapshot` is one reading of every
part, with the parts that failed; :class:`Fresh` makes concurrent readers
share a reading instead of each starting one.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Generic, TypeVar

import portbook
from portbook import (
    EphemeralUsage,
    Lease,
    NameStatus,
    PortbookError,
    Protocol,
    Socket,
    SocketProcess,
    Store,
)

__all__ = ["PARTS", "Fresh", "Snapshot", "Source"]

T = TypeVar("T")

#: The parts of a reading, each read and counted (errors) on its own.
PARTS = ("sockets", "ephemeral", "names", "leases")


class Source:
    """Reads this machine's sockets, ephemeral ports, names and leases.

    ``store`` is the names store's path (``None``: the default store, as for
    ``portbook names``). A store file that does not exist is not created: a
    read-only server has no names then, and says so with empty lists.
    """

    def __init__(self, store: str | None = None) -> None:
        self._store_path = store

    def _store(self) -> Store | None:
        store = Store(self._store_path, timeout=2.0)
        return store if store.path.exists() else None

    def listeners(self) -> list[Socket]:
        """Listening TCP and bound UDP sockets with their owners: what ``ls`` lists."""
        return portbook.list_sockets(listening=True)

    def sockets(self) -> list[Socket]:
        """Every socket with its owners (a scrape counts them all and lists the listeners).

        One reading for both: finding owners reads every process's open files
        whatever is asked, so listing the listeners apart would read them twice.
        """
        return portbook.list_sockets()

    def ephemeral(self, sockets: list[Socket] | None = None) -> EphemeralUsage:
        """Ephemeral ports in use; from ``sockets`` (a reading of :meth:`sockets`) when given."""
        return portbook.ephemeral_usage(sockets=sockets)

    def names(self, listeners: list[Socket] | None = None) -> list[NameStatus]:
        """Every name and whether it is listening: what ``names --json`` lists.

        With ``listeners`` (a reading of :meth:`listeners`), whether a name's
        port is listening, and by whom, comes from that reading instead of a
        query of the socket table (and a walk of every process) per name.
        """
        store = self._store()
        if store is None:
            return []
        check = None if listeners is None else _listening_in(listeners)
        with store:
            return portbook.name_status(store=store, listeners=check)

    def leases(self) -> list[Lease]:
        """The live leases (reading them reclaims dead ones, as every pick does)."""
        store = self._store()
        if store is None:
            return []
        with store:
            return portbook.list_leases(store=store)


def _listening_in(
    listeners: list[Socket],
) -> Callable[[int, Protocol], tuple[bool, tuple[SocketProcess, ...]]]:
    """``name_status``'s listener check answered from one reading of the listeners.

    The same answer as its default check: a TCP LISTEN or bound UDP socket on
    the port, and the processes holding any of them, once each, by pid.
    """
    by_port: dict[tuple[int, str], dict[int, SocketProcess]] = {}
    for sock in listeners:
        holders = by_port.setdefault((sock.local_port, sock.protocol.value), {})
        for proc in sock.processes:
            holders.setdefault(proc.pid, proc)

    def check(port: int, protocol: Protocol) -> tuple[bool, tuple[SocketProcess, ...]]:
        holders = by_port.get((port, protocol.value))
        if holders is None:
            return False, ()
        return True, tuple(sorted(holders.values(), key=lambda p: p.pid))

    return check


class Snapshot:
    """One reading of every part; a part that failed is ``None`` and named in ``errors``."""

    __slots__ = (
        "ephemeral",
        "errors",
        "leases",
        "listeners",
        "names",
        "seconds",
        "serial",
        "state_counts",
    )

    _serials = itertools.count(1)

    def __init__(
        self,
        *,
        listeners: list[Socket] | None,
        state_counts: dict[tuple[str, str], int] | None,
        ephemeral: EphemeralUsage | None,
        names: list[NameStatus] | None,
        leases: list[Lease] | None,
        errors: dict[str, str],
        seconds: float,
    ) -> None:
        self.listeners = listeners
        self.state_counts = state_counts
        self.ephemeral = ephemeral
        self.names = names
        self.leases = leases
        self.errors = errors
        self.seconds = seconds
        #: increases with every reading made in this process
        self.serial = next(Snapshot._serials)

    @classmethod
    def read(cls, source: Source) -> Snapshot:
        """Read every part from ``source``; a part that fails does not stop the others."""
        started = time.perf_counter()
        errors: dict[str, str] = {}

        def part(name: str, read: Callable[[], T]) -> T | None:
            try:
                return read()
            except (PortbookError, OSError) as exc:
                # What the machine refused (a table it cannot read, a locked
                # store): reported in the scrape's error counter, not raised,
                # so one broken part never hides the others.
                errors[name] = str(exc) or type(exc).__name__
                return None

        table = part("sockets", source.sockets)
        listeners: list[Socket] | None = None
        counts: dict[tuple[str, str], int] | None = None
        # The same reading counts the ephemeral ports (a second one would
        # read the kernel's table again); without one, the part reads its own.
        ephemeral = part("ephemeral", lambda: source.ephemeral(table))
        if table is not None:
            listeners = [s for s in table if s.listening]
            counts = dict(Counter((s.protocol.value, s.state.value) for s in table))
            del table  # the listeners are kept; the rest goes before the other parts are read
        return cls(
            listeners=listeners,
            state_counts=counts,
            ephemeral=ephemeral,
            names=part("names", lambda: source.names(listeners)),
            leases=part("leases", source.leases),
            errors=errors,
            seconds=time.perf_counter() - started,
        )


class Fresh(Generic[T]):
    """A value made by ``produce``, shared by concurrent callers and kept ``max_age`` seconds.

    A caller that arrives while the value is being made waits for that one
    instead of making another, so a burst of requests (a page in many tabs,
    two Prometheus servers, a flood from loopback) costs one reading of the
    socket table, not one per request. With ``max_age=0`` every call that
    finds nothing in progress makes a new value: what a Prometheus scrape
    wants. If ``produce`` raises, the callers that waited for it try again
    themselves.
    """

    def __init__(self, produce: Callable[[], T], max_age: float = 0.0) -> None:
        self._produce = produce
        self._max_age = max_age
        self._cond = threading.Condition()
        self._value: T | None = None
        self._made = 0.0
        self._generation = 0  # counts values made; a waiter takes the one it waited for
        self._busy = False
        self.produced = 0  #: how many values were made (tests read it)

    def _idle(self) -> bool:
        return not self._busy

    def get(self) -> T:
        with self._cond:
            while True:
                value = self._value
                if value is not None and time.monotonic() - self._made < self._max_age:
                    return value
                if not self._busy:
                    self._busy = True
                    break
                waited_for = self._generation
                self._cond.wait_for(self._idle)
                if self._generation != waited_for and self._value is not None:
                    return self._value
        try:
            value = self._produce()
        except BaseException:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
            raise
        with self._cond:
            self._value = value
            self._made = time.monotonic()
            self._generation += 1
            self.produced += 1
            self._busy = False
            self._cond.notify_all()
        return value
