"""Reading the registry database (built by :mod:`portbook._book.build`).

The database is opened read-only with SQLite's ``immutable`` flag: portbook
never changes a registry file in place (``update`` writes a new file and
renames it over the old one), so SQLite may skip locking and change checks,
and a process that still has the old file open keeps reading the old inode
intact.

Which file is used: the user's updated copy in the data directory when it
exists and opens cleanly, else the copy packaged with portbook. A user copy
that cannot be used (not a regular file, unreadable, not a database, a wrong
schema, a ``meta`` table whose counts or dates do not parse) is skipped with a
warning rather than failing every lookup; one found damaged only later, at a
query, is dropped the same way by :class:`portbook._book.book.Book`. Only the
``meta`` table is checked on opening: a scan of every record would cost a
third of a cold ``portbook lookup``. The records themselves were checked by
``update`` before the file was installed (by reading them back through this
reader), and are checked again as each is turned into a record.
"""

from __future__ import annotations

# The C module itself, as the netlink backend uses _socket: the sqlite3
# package imports datetime and registers date adapters, about a fifth of a
# bare interpreter start (BENCHMARKS.md); the registry needs only connect()
# and Error, which are the same objects.
import _sqlite3 as sqlite3
import _thread
import os
import stat

from portbook._exceptions import RegistryError
from portbook._paths import file_uri

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import date

__all__ = [
    "PACKAGED_REGISTRY",
    "SCHEMA_VERSION",
    "USER_REGISTRY_NAME",
    "RegistryDB",
    "open_packaged",
    "open_registry",
    "parse_registry_date",
    "registry_date_fields",
]

SCHEMA_VERSION = 1
# Paths are plain strings here (os.path, not pathlib): this module is loaded by
# every cold `portbook lookup`, and pathlib with urllib.parse and ipaddress
# costs about a quarter of an interpreter start to import.
PACKAGED_REGISTRY = os.path.join(
    os.path.dirname(os.path.realpath(__file__)), "data", "registry.sqlite3"
)
USER_REGISTRY_NAME = "registry.sqlite3"

# meta keys that must hold a count, and the ones that must hold a date (or nothing).
_META_COUNTS = ("records", "assigned", "reserved", "unassigned", "names_only", "max_span")
_META_DATES = ("updated", "newest_record")


def parse_registry_date(text: str) -> date:
    """The date a registry field holds: ``YYYY-MM-DD``, or ``YYYY-MM`` (then the 1st).

    The one rule for registry dates, used by the builder (which refuses
    anything else) and by the reader. Raises ``ValueError`` for any other
    text, and for a day the calendar does not have (``2026-02-30``,
    ``9999-99-99``). ``date.fromisoformat`` alone would also take forms IANA
    never writes (``20260217``, ``2026-W07-1``).
    """
    from datetime import date

    return date(*registry_date_fields(text))


def registry_date_fields(text: str) -> tuple[int, int, int]:
    """(year, month, day) of a registry date, checked as :func:`parse_registry_date` does.

    Without datetime, which a cold ``ls`` does not otherwise import: opening
    any registry checks the dates of its meta table this way.
    """
    if not isinstance(text, str) or not _date_shaped(text):
        raise ValueError(f"not a YYYY-MM-DD date: {text!r}")
    year, month = int(text[:4]), int(text[5:7])
    day = int(text[8:10]) if len(text) == 10 else 1
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    if not (year >= 1 and 1 <= month <= 12 and 1 <= day <= days[month - 1]):
        raise ValueError(f"not a day of the calendar: {text!r}")
    return year, month, day


def _date_shaped(text: str) -> bool:
    """Whether ``text`` is YYYY-MM-DD, or YYYY-MM (a few old IANA dates know only the month).

    ASCII digits only. Tested by hand, not with a regular expression: this
    runs whenever a registry is opened, and ``re`` is otherwise not imported
    by a cold ``ls`` (about 7 million instructions).
    """
    if len(text) not in (7, 10) or text[4] != "-" or (len(text) == 10 and text[7] != "-"):
        return False
    digits = text[:4] + text[5:7] + text[8:]
    return digits.isascii() and digits.isdigit()


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
        try:
            _check_meta(self.meta)
        except ValueError as exc:
            self._conn.close()
            raise RegistryError(f"registry data {path} is unusable: {exc}") from None
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

    def names(self) -> list[str]:
        """Every distinct service name of the registry, in lower case."""
        rows = self._query("SELECT DISTINCT lower(name) FROM service WHERE name IS NOT NULL")
        return [str(r[0]) for r in rows]

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


def _check_meta(meta: dict[str, str]) -> None:
    """Raise ``ValueError`` unless every ``meta`` value the book reads parses."""
    for key in _META_COUNTS:
        value = meta.get(key, "0")
        if not (isinstance(value, str) and value.isascii() and value.isdigit()):
            raise ValueError(f"meta {key} is not a count: {value!r}")
    if int(meta.get("max_span", "0")) > 65535:
        raise ValueError(f"meta max_span is out of range: {meta['max_span']!r}")
    for key in _META_DATES:
        value = meta.get(key, "")
        if value != "":
            try:
                registry_date_fields(value)
            except ValueError:
                raise ValueError(f"meta {key} is not a date: {value!r}") from None
    for key in ("source_name", "source_sha256", "source_format"):
        if not isinstance(meta.get(key, ""), str):
            raise ValueError(f"meta {key} is not text")


def open_registry(
    path: str | os.PathLike[str] | None, data_dir: str | os.PathLike[str] | None
) -> tuple[RegistryDB, str | None]:
    """Open the registry to use, and a warning when a user copy had to be skipped.

    ``path`` given: exactly that file (errors propagate). Otherwise the user's
    copy under ``data_dir`` (default: the user data directory) if present and
    usable, else the packaged copy. A user copy that is not a regular file (a
    directory, a FIFO, which SQLite would block on forever) or cannot be
    opened or checked is skipped with a warning; only a missing one is silent.
    """
    if path is not None:
        return RegistryDB(path, "file"), None
    if data_dir is None:
        from portbook._paths import user_data_dir_name

        data_dir = user_data_dir_name()
    user_copy = os.path.join(data_dir, USER_REGISTRY_NAME)
    warning = None
    try:
        mode = os.stat(user_copy).st_mode
    except FileNotFoundError:
        mode = None
    except (OSError, ValueError) as exc:  # EACCES, ELOOP, ENAMETOOLONG; NUL in the path
        mode = None
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        warning = f"registry data {user_copy} cannot be read ({reason})"
    if mode is not None and not stat.S_ISREG(mode):
        warning = f"registry data {user_copy} is not a regular file"
    elif mode is not None:
        try:
            return RegistryDB(user_copy, "user"), None
        except RegistryError as exc:
            warning = str(exc)
    if warning is not None:
        warning += "; using the packaged registry instead"
    return open_packaged(), warning


def open_packaged() -> RegistryDB:
    """The registry packaged with portbook (``RegistryError`` if it is missing or damaged)."""
    if not os.path.isfile(PACKAGED_REGISTRY):
        raise RegistryError(f"packaged registry data is missing ({PACKAGED_REGISTRY}); reinstall")
    return RegistryDB(PACKAGED_REGISTRY, "packaged")
