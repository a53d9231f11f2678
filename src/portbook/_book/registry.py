"""Reading the registry database (built by :mod:`portbook._book.build`).

The database is opened read-only with SQLite's ``immutable`` flag: portbook
never changes a registry file in place (``update`` writes a new file and
renames it over the old one), so SQLite may skip locking and change checks,
and a process that still has the old file open keeps reading the old inode
intact.

Which file is used: the user's updated copy in the data directory when it
exists and opens cleanly, else the copy packaged with portbook. A broken
user copy is skipped with a warning rather than failing every lookup.
"""

from __future__ import annotations

# The C module itself, as the netlink backend uses _socket: the sqlite3
# package imports datetime and registers date adapters, about a fifth of a
# bare interpreter start (BENCHMARKS.md); the registry needs only connect()
# and Error, which are the same objects.
import _sqlite3 as sqlite3
import _thread
import os

from portbook._exceptions import RegistryError

__all__ = [
    "PACKAGED_REGISTRY",
    "SCHEMA_VERSION",
    "USER_REGISTRY_NAME",
    "RegistryDB",
    "open_registry",
]

SCHEMA_VERSION = 1
# Paths are plain strings here (os.path, not pathlib): this module is loaded by
# every cold `portbook lookup`, and pathlib with urllib.parse and ipaddress
# costs about a quarter of an interpreter start to import.
PACKAGED_REGISTRY = os.path.join(
    os.path.dirname(os.path.realpath(__file__)), "data", "registry.sqlite3"
)
USER_REGISTRY_NAME = "registry.sqlite3"

# Column order of every row handed to portbook._book.book (it builds the records).
ROW_COLUMNS = (
    "id, name, port, port_end, protocol, description, status, assignee, contact, "
    "registered, modified, reference, service_code, unauthorized_use, notes"
)

Row = tuple[
    int,
    str | None,
    int | None,
    int | None,
    str | None,
    str,
    str,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
]


class RegistryDB:
    """One open registry database. Queries are serialised by a lock, so one
    instance may be shared by threads."""

    def __init__(self, path: str | os.PathLike[str], origin: str) -> None:
        self.path = os.fspath(path)
        self.origin = origin  # "packaged", "user" or "file" (given explicitly)
        uri = f"{file_uri(self.path)}?mode=ro&immutable=1"
        self._lock = _thread.allocate_lock()
        try:
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self.meta: dict[str, str] = dict(self._conn.execute("SELECT key, value FROM meta"))
            self._conn.execute("SELECT id FROM service LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise RegistryError(f"registry data {path} is unusable: {exc}") from exc
        version = self.meta.get("schema_version", "")
        if version != str(SCHEMA_VERSION):
            self._conn.close()
            raise RegistryError(
                f"registry data {path} has schema version {version or '?'}, "
                f"this portbook reads version {SCHEMA_VERSION}"
            )
        # Longest range in the file: bounds the scan that finds ranges holding a port.
        self.max_span = int(self.meta.get("max_span", "65535"))

    def close(self) -> None:
        self._conn.close()

    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[Row]:
        try:
            with self._lock:
                return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise RegistryError(f"registry data {self.path} could not be read: {exc}") from exc

    def by_ports(self, first: int, last: int) -> list[Row]:
        """Records whose port or range overlaps ``first..last``, in port then file order."""
        return self._query(
            f"SELECT {ROW_COLUMNS} FROM service "
            "WHERE port BETWEEN ?1 AND ?2 AND port <= ?3 AND port_end >= ?4 ORDER BY port, id",
            (first - self.max_span, last, last, first),
        )

    def ids_at_port(self, port: int) -> list[tuple[int]]:
        """Ids of the records holding ``port`` (ranges included), in file order.

        Asked separately from the rows so that a process doing many lookups
        reuses the records it already built (the Unassigned blocks answer for
        thousands of ports): this query is about half the cost of the join.
        """
        return self._query(  # type: ignore[return-value]
            "SELECT id FROM port_index WHERE port = ? ORDER BY id", (port,)
        )

    def rows_by_id(self, ids: list[int]) -> list[Row]:
        marks = ", ".join("?" * len(ids))
        return self._query(
            f"SELECT {ROW_COLUMNS} FROM service WHERE id IN ({marks}) ORDER BY id", tuple(ids)
        )

    def by_name(self, name: str) -> list[Row]:
        return self._query(
            f"SELECT {ROW_COLUMNS} FROM service WHERE name = ? COLLATE NOCASE ORDER BY id",
            (name,),
        )

    def search(self, text: str, limit: int) -> list[tuple[int, Row]]:
        """(rank, row) of records whose name or description holds ``text``; lower rank is better.

        0 exact name, 1 name prefix, 2 name substring, 3 whole description,
        4 a word of the description starts with it, 5 description substring. Unassigned and
        Reserved blocks sort after assignments of the same rank.
        """
        like = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._query(
            f"SELECT rank, {ROW_COLUMNS} FROM ("
            f"SELECT CASE"
            " WHEN name = ?1 COLLATE NOCASE THEN 0"
            " WHEN name LIKE ?2 || '%' ESCAPE '\\' THEN 1"
            " WHEN name LIKE '%' || ?2 || '%' ESCAPE '\\' THEN 2"
            " WHEN description = ?1 COLLATE NOCASE THEN 3"
            " WHEN ' ' || description LIKE '% ' || ?2 || '%' ESCAPE '\\' THEN 4"
            " WHEN description LIKE '%' || ?2 || '%' ESCAPE '\\' THEN 5"
            f" END AS rank, * FROM service) WHERE rank IS NOT NULL"
            " ORDER BY rank, status != 'assigned', port IS NULL, port, id LIMIT ?3",
            (text, like, limit),
        )
        return [(int(r[0]), r[1:]) for r in rows]  # type: ignore[misc]

    def port_name(self, port: int, protocol: str) -> tuple[str | None] | None:
        """(name,) when IANA assigned ``port``/``protocol`` (name may be None), else None."""
        rows = self._query(
            "SELECT name FROM port_name WHERE port = ? AND protocol = ?", (port, protocol)
        )
        return rows[0][:1] if rows else None  # type: ignore[return-value]

    def port_names(self) -> list[tuple[int, str, str | None]]:
        """(port, protocol, first name or None) of every port and protocol IANA assigned."""
        return self._query("SELECT port, protocol, name FROM port_name")  # type: ignore[return-value]

    def all_rows(self) -> list[Row]:
        return self._query(f"SELECT {ROW_COLUMNS} FROM service ORDER BY id")


# Bytes that stand for themselves in a file: URI path (RFC 3986 unreserved and "/").
_URI_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/")


def file_uri(path: str) -> str:
    """``file:`` URI of ``path`` (made absolute, symbolic links resolved) for SQLite.

    What ``Path.resolve().as_uri()`` gives, without importing pathlib and
    urllib: every byte of the file system encoding outside the unreserved set
    is percent-encoded, so that "?", "#" and "%" in a directory name cannot be
    taken for URI syntax.
    """
    full = os.path.realpath(path)
    if os.sep == "\\":  # Windows: file:///C:/dir/file
        full = "/" + full.replace("\\", "/")
    quoted = "".join(chr(b) if b in _URI_SAFE else f"%{b:02X}" for b in os.fsencode(full))
    return f"file://{quoted}"


def open_registry(
    path: str | os.PathLike[str] | None, data_dir: str | os.PathLike[str] | None
) -> tuple[RegistryDB, str | None]:
    """Open the registry to use, and a warning when a user copy had to be skipped.

    ``path`` given: exactly that file (errors propagate). Otherwise the user's
    copy under ``data_dir`` (default: the user data directory) if present and
    usable, else the packaged copy.
    """
    if path is not None:
        return RegistryDB(path, "file"), None
    if data_dir is None:
        from portbook._paths import user_data_dir_name

        data_dir = user_data_dir_name()
    user_copy = os.path.join(data_dir, USER_REGISTRY_NAME)
    warning = None
    if os.path.isfile(user_copy):
        try:
            return RegistryDB(user_copy, "user"), None
        except RegistryError as exc:
            warning = f"{exc}; using the packaged registry instead"
    if not os.path.isfile(PACKAGED_REGISTRY):
        raise RegistryError(f"packaged registry data is missing ({PACKAGED_REGISTRY}); reinstall")
    return RegistryDB(PACKAGED_REGISTRY, "packaged"), warning
