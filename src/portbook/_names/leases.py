"""Leases: a port held for a while by a process, or for a number of seconds.

A lease is a row in the store. It is *live* while its holder process is
alive (same pid, same start time: see :mod:`portbook._names.holder`) and its
expiry, if it has one, is in the future. A lease that is no longer live is
not deleted by any daemon: the next transaction that needs the port (a
``pick`` that lands on it, an ``assign --port``) finds it dead and takes it
over, inside the same write transaction, so that nothing can slip between
the check and the take-over.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from portbook._exceptions import NotFoundError, StoreCorruptError
from portbook._names.holder import Holder, holder_alive
from portbook._names.store import Store, default_store
from portbook._ports import Family, Protocol
from portbook._record import public, record, replace

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Lease", "list_leases", "release_lease", "transfer_lease"]


@record
class Lease:
    """A port held in the store for a process or for a time.

    ``pid``/``start_time`` name the holder (``None`` for a lease that only
    expires); ``expires`` is seconds since the epoch (``None``: held while the
    holder lives). ``name`` is set when the lease holds a named port (``run``).
    ``hold_until`` (seconds since the epoch) keeps the lease until then even
    after its holder exits: what ``portbook pick`` gives the program that
    reads the port, which may bind it only a while later.
    """

    id: int
    port: int
    protocols: tuple[Protocol, ...]
    families: tuple[Family, ...]
    pid: int | None
    start_time: int | None
    expires: float | None
    name: str | None = None
    hold_until: float | None = None

    @property
    def protocol(self) -> str:
        """``"tcp"``, ``"udp"`` or ``"tcp+udp"``: the protocols as one word."""
        return "+".join(p.value for p in self.protocols)

    def to_json(self) -> dict[str, Any]:
        """What ``pick --json`` prints: the port, its protocols and families, and the lease."""
        return {
            "port": self.port,
            "protocol": self.protocol,
            "families": [int(f) for f in self.families],
            "lease": {
                "id": self.id,
                "pid": self.pid,
                "expires": _iso(self.expires),
                "hold_until": _iso(self.hold_until),
            },
        }


def _iso(when: float | None) -> str | None:
    """An epoch time as ISO 8601 UTC (``2026-12-02T01:02:03Z``)."""
    if when is None:
        return None
    import datetime

    moment = datetime.datetime.fromtimestamp(when, tz=datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


_COLUMNS = "id, port, protocols, families, pid, start_time, expires, name, hold_until"


def _row_to_lease(row: Sequence[object]) -> Lease:
    """The lease of one row; :class:`StoreCorruptError` for a row no portbook writes."""
    try:
        return _lease(row)
    except (ValueError, TypeError) as exc:
        raise StoreCorruptError(f"the store holds a lease portbook cannot read: {exc}") from None


def _lease(row: Sequence[object]) -> Lease:
    lease_id, port, protocols, families, pid, start, expires, name, hold_until = row
    return Lease(
        id=int(str(lease_id)),
        port=int(str(port)),
        protocols=tuple(Protocol(p) for p in str(protocols).split(",") if p),
        families=tuple(Family(int(f)) for f in str(families).split(",") if f),
        pid=None if pid is None else int(str(pid)),
        start_time=None if start is None else int(str(start)),
        expires=None if expires is None else float(str(expires)),
        name=None if name is None else str(name),
        hold_until=None if hold_until is None else float(str(hold_until)),
    )


def is_live(lease: Lease, now: float) -> bool:
    """True while the lease still holds its port (holder alive, not expired)."""
    if lease.expires is not None and lease.expires <= now:
        return False
    if lease.hold_until is not None and now < lease.hold_until:
        return True  # kept for whoever read the port, whatever the holder does
    if lease.pid is None:
        return True
    return holder_alive(lease.pid, lease.start_time if lease.start_time is not None else 0)


def sweep_expired(conn: sqlite3.Connection, now: float) -> None:
    """Drop leases whose time is up (cheap: indexed on ``expires``)."""
    conn.execute("DELETE FROM leases WHERE expires IS NOT NULL AND expires <= ?", (now,))


def leases_by_port(conn: sqlite3.Connection) -> dict[int, Lease]:
    return {
        int(row[1]): _row_to_lease(row) for row in conn.execute(f"SELECT {_COLUMNS} FROM leases")
    }


def live_lease_on(conn: sqlite3.Connection, port: int, now: float) -> Lease | None:
    """The live lease on ``port``, reclaiming (deleting) a dead one on the way."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM leases WHERE port = ?",
        (port,),
    ).fetchone()
    if row is None:
        return None
    lease = _row_to_lease(row)
    if is_live(lease, now):
        return lease
    delete_lease(conn, lease.id)
    return None


def delete_lease(conn: sqlite3.Connection, lease_id: int) -> bool:
    """Drop one lease; False when it was gone already."""
    return conn.execute("DELETE FROM leases WHERE id = ?", (lease_id,)).rowcount > 0


def delete_leases_of_name(conn: sqlite3.Connection, name: str) -> None:
    """Drop the ``run`` leases that hold ``name``'s port (the name is being released)."""
    conn.execute("DELETE FROM leases WHERE name = ?", (name,))


def insert_lease(
    conn: sqlite3.Connection,
    *,
    port: int,
    protocols: Sequence[Protocol],
    families: Sequence[Family],
    holder: Holder | None,
    expires: float | None,
    name: str | None = None,
    hold_until: float | None = None,
) -> Lease:
    cur = conn.execute(
        "INSERT INTO leases"
        " (port, protocols, families, name, pid, start_time, expires, hold_until, created)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            port,
            ",".join(p.value for p in protocols),
            ",".join(str(int(f)) for f in families),
            name,
            None if holder is None else holder.pid,
            None if holder is None else holder.start_time,
            expires,
            hold_until,
            time.time(),
        ),
    )
    return Lease(
        id=int(cur.lastrowid or 0),
        port=port,
        protocols=tuple(protocols),
        families=tuple(families),
        pid=None if holder is None else holder.pid,
        start_time=None if holder is None else holder.start_time,
        expires=expires,
        name=name,
        hold_until=hold_until,
    )


def release_lease(lease: Lease | int, *, store: Store | None = None) -> None:
    """Give a leased port back now (a lease also ends when its holder exits).

    Raises :class:`~portbook.NotFoundError` when the lease is already gone.
    """
    lease_id = lease.id if isinstance(lease, Lease) else int(lease)
    with (store or default_store()).write(durable=False) as conn:
        if not delete_lease(conn, lease_id):
            raise NotFoundError(f"no lease {lease_id}: it was released or reclaimed")


def transfer_lease(lease: Lease, holder: Holder, *, store: Store | None = None) -> Lease:
    """Hand a lease to another holder (``portbook run`` gives it to the command it starts).

    Raises :class:`~portbook.NotFoundError` when the lease is gone.
    """
    with (store or default_store()).write(durable=False) as conn:
        cur = conn.execute(
            "UPDATE leases SET pid = ?, start_time = ? WHERE id = ?",
            (holder.pid, holder.start_time, lease.id),
        )
        if cur.rowcount == 0:
            raise NotFoundError(f"no lease {lease.id}: it was released or reclaimed")
    return replace(lease, pid=holder.pid, start_time=holder.start_time)


def list_leases(*, store: Store | None = None) -> list[Lease]:
    """The live leases, by port; dead ones are reclaimed on the way."""
    now = time.time()
    with (store or default_store()).write(durable=False) as conn:
        sweep_expired(conn, now)
        leases = sorted(leases_by_port(conn).values(), key=lambda lease: lease.port)
        dead = [lease.id for lease in leases if not is_live(lease, now)]
        for lease_id in dead:
            delete_lease(conn, lease_id)
    return [lease for lease in leases if lease.id not in dead]


public(Lease)
