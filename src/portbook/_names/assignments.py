"""The names table of the store: which name keeps which (port, protocol).

The only module that reads or writes the ``names`` table (the ``leases``
table is :mod:`portbook._names.leases`'s): every function takes a connection
inside a transaction of :class:`portbook.Store`.
"""

from __future__ import annotations

import time

from portbook._exceptions import StoreCorruptError
from portbook._ports import MAX_PORT, Protocol
from portbook._record import public, record

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Sequence
    from typing import Any

__all__ = [
    "Assignment",
    "all_names",
    "delete_name",
    "find_name",
    "insert_name",
    "name_on_port",
    "names_on_file",
]


@record
class Assignment:
    """A name and the port it keeps until released."""

    name: str
    port: int
    protocol: Protocol

    def to_json(self) -> dict[str, Any]:
        """``{"name", "port", "protocol"}``: what ``assign/get/release --json`` print."""
        return {"name": self.name, "port": self.port, "protocol": self.protocol.value}


def _assignment(row: Sequence[Any]) -> Assignment:
    """The assignment of one row; :class:`StoreCorruptError` for a row no portbook writes."""
    try:
        name, port, protocol = str(row[0]), int(row[1]), Protocol(str(row[2]))
    except (ValueError, TypeError, IndexError) as exc:
        raise _unreadable(str(exc)) from None
    if not name or not 1 <= port <= MAX_PORT or protocol not in (Protocol.TCP, Protocol.UDP):
        raise _unreadable(repr(tuple(row))[:80])
    return Assignment(name, port, protocol)


def _unreadable(what: str) -> StoreCorruptError:
    return StoreCorruptError(f"the store holds a name portbook cannot read: {what}")


def find_name(conn: sqlite3.Connection, name: str) -> Assignment | None:
    """The assignment of ``name``, if it has one."""
    row = conn.execute("SELECT name, port, protocol FROM names WHERE name = ?", (name,)).fetchone()
    return None if row is None else _assignment(row)


def name_on_port(
    conn: sqlite3.Connection, port: int, protocol: Protocol | None = None
) -> Assignment | None:
    """The name that keeps ``port`` (for ``protocol``, or for any protocol), if one does."""
    if protocol is None:
        row = conn.execute(
            "SELECT name, port, protocol FROM names WHERE port = ? LIMIT 1", (port,)
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT name, port, protocol FROM names WHERE port = ? AND protocol = ?",
            (port, protocol.value),
        ).fetchone()
    return None if row is None else _assignment(row)


def all_names(conn: sqlite3.Connection) -> list[Assignment]:
    """Every assignment, sorted by name."""
    rows = conn.execute("SELECT name, port, protocol FROM names ORDER BY name").fetchall()
    return [_assignment(r) for r in rows]


def names_on_file(path: str) -> list[Assignment]:
    """Every assignment of the store at ``path``, read without opening it as a :class:`Store`.

    For the live table, which shows your names on every listing: the
    store's trust rules (:mod:`portbook._names.trust`), nothing created, a
    read-only connection and one query, without the store's write machinery
    (and its imports) on the path of ``portbook ls``. Raises ``OSError``,
    ``sqlite3.Error`` or :class:`StoreError` when the file cannot be read.
    """
    import _sqlite3 as sqlite3  # the sqlite3 package would import datetime (see registry.py)

    from portbook._names.trust import trusted_target
    from portbook._paths import file_uri

    target = trusted_target(path, create=False)
    conn = sqlite3.connect(f"{file_uri(target)}?mode=ro", uri=True)
    try:
        return all_names(conn)
    finally:
        conn.close()


def insert_name(conn: sqlite3.Connection, assignment: Assignment) -> None:
    """Record ``assignment`` (the caller has checked that nothing conflicts)."""
    conn.execute(
        "INSERT INTO names (name, port, protocol, created) VALUES (?, ?, ?, ?)",
        (assignment.name, assignment.port, assignment.protocol.value, time.time()),
    )


def delete_name(conn: sqlite3.Connection, name: str) -> None:
    """Forget ``name``."""
    conn.execute("DELETE FROM names WHERE name = ?", (name,))


public(Assignment)
