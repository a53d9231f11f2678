"""The names database: one SQLite file, safe for many processes without a daemon.

Why each setting:

* **WAL journal.** Readers never block the writer and the writer never blocks
  readers, and a process killed in the middle of a write leaves the database
  as it was before that transaction (the half-written WAL frames after the
  last commit record are ignored on the next open).
* **``BEGIN IMMEDIATE`` for every write.** A deferred transaction takes the
  write lock only at its first write, so two processes may both read "port
  20000 is free" and then both try to take it; one of them then fails with
  SQLITE_BUSY *without* the busy handler being allowed to wait (a deadlock
  guard). Taking the write lock up front makes check-then-insert atomic and
  lets the busy timeout queue writers fairly.
* **Busy timeout.** Writers wait for each other up to ``timeout`` seconds;
  only a lock held longer than that becomes :class:`StoreLockedError`.
* **``synchronous``.** Names are written with ``FULL`` (the commit is on disk
  before portbook says "done", so not even a power cut loses an
  acknowledged name); leases with ``NORMAL``, which in WAL mode is still
  safe against any process crash and skips an fsync per ``pick``: a lease
  cannot outlive a power cut anyway, since its holder does not.
* **Schema version** in ``PRAGMA user_version`` and our own
  ``application_id``: a file of another program, or of a newer portbook, is
  refused with a clear error instead of being "upgraded" into garbage.
* **File mode 0600** (directory 0700): the store says which services a user
  runs; it is nobody else's business. SQLite creates the ``-wal`` and
  ``-shm`` files with the database file's own mode.
* **``PRAGMA quick_check`` once per connection**, when the store is opened
  (not on every pick: a connection lives as long as its ``Store``). A store
  SQLite finds damaged then, or that fails any later statement with
  SQLITE_CORRUPT or SQLITE_NOTADB, is refused for reads and writes alike
  (:class:`StoreCorruptError`, one line): a write that happens to touch only
  sound pages would otherwise succeed and bury the damage deeper.
  :meth:`Store.integrity_check` still reports on it.

Trust (whose file is it?) is :mod:`portbook._names.trust`'s: the store is
refused unless only its user can change it, as ssh does with its files.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from portbook._exceptions import (
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreReadOnlyError,
    StoreVersionError,
    UsageError,
)
from portbook._names.trust import quoted_path, trusted_target
from portbook._paths import user_data_dir
from portbook._record import public

__all__ = ["SCHEMA_VERSION", "Store", "default_store", "store_path"]

STORE_ENV = "PORTBOOK_STORE"
STORE_FILENAME = "names.sqlite3"
# "port" in ASCII: marks the file as a portbook store (`PRAGMA application_id`).
APPLICATION_ID = 0x706F7274
SCHEMA_VERSION = 3
DEFAULT_TIMEOUT = 10.0
# Polling for the write lock: first wait and longest wait, in seconds.
_POLL_FIRST = 0.0002
_POLL_MAX = 0.002


def _v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE names (
            name     TEXT    NOT NULL PRIMARY KEY,
            port     INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
            protocol TEXT    NOT NULL,
            created  REAL    NOT NULL,
            UNIQUE (port, protocol)
        )
        """
    )
    # One lease per port whatever the protocol: a picked port is the holder's
    # on TCP and UDP alike, which keeps "who has 20123?" a one-row answer.
    conn.execute(
        """
        CREATE TABLE leases (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            port       INTEGER NOT NULL UNIQUE CHECK (port BETWEEN 1 AND 65535),
            protocols  TEXT    NOT NULL,
            families   TEXT    NOT NULL,
            name       TEXT,
            pid        INTEGER,
            start_time INTEGER,
            expires    REAL,
            created    REAL    NOT NULL
        )
        """
    )


def _v2(conn: sqlite3.Connection) -> None:
    # Expired TTL leases are swept on every pick; the index keeps that sweep
    # cheap however many leases are held.
    conn.execute("CREATE INDEX leases_expires ON leases (expires) WHERE expires IS NOT NULL")


def _v3(conn: sqlite3.Connection) -> None:
    # A lease may be held for a minimum time whatever its holder does: a
    # `portbook pick` printed its port to a program that may not bind it yet.
    conn.execute("ALTER TABLE leases ADD COLUMN hold_until REAL")


# _MIGRATIONS[v] upgrades a store of schema version v to v + 1.
_MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1, _v2, _v3)
assert len(_MIGRATIONS) == SCHEMA_VERSION


def store_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The store file: ``path``, else ``$PORTBOOK_STORE``, else in the user data directory.

    Raises :class:`UsageError` for a path that can name no file: an empty
    ``path`` (``--store ''``), a NUL character, ``~user`` of an unknown user.
    An empty ``$PORTBOOK_STORE`` counts as unset, as empty variables do.
    """
    if path is not None:
        return _expanded(os.fspath(path), "the store path")
    env = os.environ.get(STORE_ENV)
    if env:
        return _expanded(env, f"${STORE_ENV}")
    return user_data_dir() / STORE_FILENAME


def _expanded(text: str, what: str) -> Path:
    if not isinstance(text, str) or not text:
        raise UsageError(f"{what} is empty: give the store's file name")
    if "\0" in text:
        raise UsageError(f"{what} contains a NUL character")
    try:
        return Path(text).expanduser()
    except RuntimeError:  # "~nouser/x": no such user, or no home to expand "~" to
        user = text.split("/", 1)[0]
        raise UsageError(f"{what} {quoted_path(text)}: cannot expand {quoted_path(user)}") from None


class Store:
    """One portbook names database, opened on first use.

    The store is the seam of every names and lease operation: pass
    ``Store(tmp_path / "s.sqlite3")`` to use another file. One ``Store``
    may be shared by threads (its transactions are serialised by a lock) but
    not across ``fork``: a child process opens its own.

    Errors: :class:`StoreLockedError`, :class:`StoreReadOnlyError`,
    :class:`StoreCorruptError`, :class:`StoreVersionError`, or
    :class:`StoreError` for anything else the file system or SQLite refuses.
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.path = store_path(path)
        self.timeout = timeout
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._synchronous = ""
        self._lock = threading.RLock()
        # What SQLite opens: self.path resolved and checked (see "Trust" above).
        self._target = ""
        # Why SQLite found the store damaged (quick_check, or an error), once it did.
        self._damage: str | None = None

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # -- transactions ---------------------------------------------------

    @contextlib.contextmanager
    def write(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the write lock from its first statement.

        ``durable=False`` commits without an fsync (safe against crashes of
        any process, not against power loss); leases use it.
        """
        with self._lock, self._translated():
            conn = self._connection()
            self._refuse_if_damaged()
            wanted = "FULL" if durable else "NORMAL"
            if self._synchronous != wanted:
                conn.execute(f"PRAGMA synchronous={wanted}")
                self._synchronous = wanted
            self._begin_immediate(conn)
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def _begin_immediate(self, conn: sqlite3.Connection) -> None:
        # SQLite's own busy handler backs off in steps that grow to 100 ms,
        # so with many writers queued a short transaction may wait far longer
        # than the lock is held. Waiting for the write lock here instead, in
        # short jittered polls, keeps the wait close to the time the lock is
        # actually held; statements inside the transaction keep the full
        # busy timeout for the rare waits they meet (a WAL checkpoint).
        conn.execute("PRAGMA busy_timeout=0")
        deadline = time.monotonic() + self.timeout
        delay = _POLL_FIRST
        try:
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if _primary(exc) not in (_SQLITE_BUSY, _SQLITE_LOCKED):
                        raise
                    if time.monotonic() >= deadline:
                        raise
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, _POLL_MAX)
        finally:
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot for all its statements.

        A store whose file does not exist reads as an empty store and is not
        created: only a write makes the file, so that reading commands
        (``names``, ``check``) leave nothing behind on a machine that has no
        names yet.
        """
        with self._lock, self._translated():
            if self._conn is None and _missing(self.path):
                empty = _empty_store()
                try:
                    yield empty
                finally:
                    empty.close()
                return
            conn = self._reader()
            self._refuse_if_damaged()
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.rollback()

    def integrity_check(self) -> list[str]:
        """SQLite's own ``PRAGMA integrity_check``: ``["ok"]`` for a sound file.

        Answers for a damaged store too (the problems SQLite lists), where
        reads and writes are refused.
        """
        with self._lock, self._translated():
            rows = self._connection().execute("PRAGMA integrity_check").fetchall()
        return [str(r[0]) for r in rows]

    def _refuse_if_damaged(self) -> None:
        if self._damage is not None:
            raise StoreCorruptError(
                f"the store {self.path} is damaged ({self._damage}); nothing was changed",
                path=str(self.path),
            )

    # -- opening ----------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid != os.getpid():
            # A forked child must not use its parent's connection: their
            # locks and WAL index would mix. Nor may it close it (that could
            # checkpoint the parent's WAL under its feet): it is left alone.
            self._conn = None
        if self._conn is None:
            self._conn = self._open()
            self._pid = os.getpid()
            self._synchronous = ""
        return self._conn

    def _reader(self) -> sqlite3.Connection:
        try:
            return self._connection()
        except sqlite3.OperationalError:
            if not self.path.is_file() or _writable(self.path):
                raise
        # A WAL database cannot be opened read-only the usual way when its
        # -shm file cannot be created (a read-only mount, a directory that is
        # not ours). Then nobody can be writing it either, and SQLite's
        # "immutable" open reads it without any lock or -shm.
        from urllib.parse import quote

        conn = sqlite3.connect(
            f"file:{quote(self._target or str(self.path))}?mode=ro&immutable=1",
            uri=True,
            timeout=self.timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            app_id, version, has_tables = _header(conn)
            self._check_header(app_id, version, has_tables)
            if app_id == 0:
                conn.close()
                raise StoreReadOnlyError(
                    f"the store {self.path} is read-only and was never written", path=str(self.path)
                )
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._pid = os.getpid()
        return conn

    def _open(self) -> sqlite3.Connection:
        self._target = trusted_target(self.path)
        conn = sqlite3.connect(
            self._target, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        try:
            self._use_wal(conn)
            self._migrate(conn)
            self._quick_check(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _quick_check(self, conn: sqlite3.Connection) -> None:
        # Cheap for a store (a few pages; about a millisecond for thousands of
        # names) and run once per connection, not per transaction.
        rows = conn.execute("PRAGMA quick_check(1)").fetchall()
        if [tuple(r) for r in rows] != [("ok",)]:
            self._damage = f"SQLite's quick_check: {str(rows[0][0]).splitlines()[0]}"

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        # The first statement reads the header: a file that is not a database
        # fails here with SQLITE_NOTADB. Switching a new file to WAL needs the
        # file to itself, and when other processes are opening the same new
        # store SQLite answers SQLITE_BUSY at once, without calling its busy
        # handler (waiting there could deadlock two converters). So wait here,
        # up to the same timeout, as the busy handler would have.
        deadline = time.monotonic() + self.timeout
        delay = 0.001
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as exc:
                busy = getattr(exc, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED")
                if not busy or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
            else:
                return

    def _migrate(self, conn: sqlite3.Connection) -> None:
        # The header fields and the tables are read in one snapshot: read
        # apart, another process's schema creation could land in between
        # and make a fresh portbook store look like another program's.
        conn.execute("BEGIN")
        try:
            header = _header(conn)
        finally:
            conn.rollback()
        if header == (APPLICATION_ID, SCHEMA_VERSION, True):
            return
        self._check_header(*header)
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the lock.
            app_id, version, has_tables = _header(conn)
            self._check_header(app_id, version, has_tables)
            if app_id == APPLICATION_ID and version == SCHEMA_VERSION:
                conn.rollback()
                return
            for step in _MIGRATIONS[version:]:
                step(conn)
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            conn.rollback()
            raise
        conn.commit()

    def _check_header(self, app_id: int, version: int, has_tables: bool) -> None:
        where = str(self.path)
        if app_id not in (0, APPLICATION_ID) or (app_id == 0 and has_tables):
            raise StoreCorruptError(
                f"{where} is an SQLite database of another program, not a portbook store",
                path=where,
            )
        if version > SCHEMA_VERSION:
            raise StoreVersionError(
                f"the store {where} has schema version {version}, newer than this portbook "
                f"understands ({SCHEMA_VERSION}); upgrade portbook to use it",
                path=where,
            )

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            error = _translate(exc, self.path)
            if isinstance(error, StoreCorruptError) and self._damage is None:
                # Found at a statement: every later read and write is refused too.
                self._damage = f"SQLite: {exc}"
            raise error from exc
        except PermissionError as exc:
            raise StoreReadOnlyError(
                f"the store {self.path} cannot be written: {exc.strerror}", path=str(self.path)
            ) from exc


def _missing(path: Path) -> bool:
    """Whether no store is at ``path`` yet, in a place it may be made (else the trust error).

    A store that cannot be seen, or that another user could swap, is not
    "missing": the error says why (:func:`trusted_target`). A path that
    exists is left to the open, which checks it once.
    """
    try:
        os.lstat(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    else:
        return False
    try:
        trusted_target(path, create=False)
    except FileNotFoundError:
        return True
    return False


def _empty_store() -> sqlite3.Connection:
    """An empty store in memory, in a read transaction: what a store not yet created holds."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for step in _MIGRATIONS:
        step(conn)
    conn.execute("BEGIN")
    return conn


def _header(conn: sqlite3.Connection) -> tuple[int, int, bool]:
    """(application_id, user_version, whether any table exists)."""
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    return app_id, version, bool(tables)


# Primary SQLite result codes (the low byte of an extended code).
_SQLITE_PERM = 3
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26


def _primary(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def _translate(exc: sqlite3.Error, path: Path) -> StoreError:
    where = str(path)
    primary = _primary(exc)
    text = str(exc)
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED) or "locked" in text:
        return StoreLockedError(
            f"the store {where} stayed locked by another process past the busy timeout",
            path=where,
        )
    if primary in (_SQLITE_READONLY, _SQLITE_PERM) or "readonly" in text:
        return StoreReadOnlyError(f"the store {where} is read-only ({text})", path=where)
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or (
        isinstance(exc, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text)
    ):
        return StoreCorruptError(
            f"the store {where} is damaged or not a portbook store ({text})", path=where
        )
    if primary == _SQLITE_CANTOPEN:
        if not _writable(path):
            return StoreReadOnlyError(
                f"the store {where} is read-only (its file or directory cannot be written)",
                path=where,
            )
        return StoreError(f"cannot open the store {where} ({text})", path=where)
    if primary == _SQLITE_FULL:
        return StoreError(f"the store {where} cannot grow: the disk is full", path=where)
    if primary == _SQLITE_IOERR and not _writable(path):
        return StoreReadOnlyError(f"the store {where} is read-only ({text})", path=where)
    return StoreError(f"the store {where} failed: {text}", path=where)


def _writable(path: Path) -> bool:
    try:
        return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)
    except OSError as exc:  # pragma: no cover - os.access does not raise on Linux
        return exc.errno != errno.EROFS


_defaults: dict[tuple[int, Path], Store] = {}
_defaults_lock = threading.Lock()


def default_store() -> Store:
    """The store named by ``$PORTBOOK_STORE`` or the user data directory, opened once per process.

    Keyed by pid: a forked child must not use its parent's SQLite
    connection (their locks would mix), so it gets a fresh ``Store``.
    """
    key = (os.getpid(), store_path())
    with _defaults_lock:
        store = _defaults.get(key)
        if store is None:
            store = _defaults[key] = Store(key[1])
        return store


public(Store)
