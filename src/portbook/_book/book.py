"""The book: what a port number or service name means, from every source at once.

Three sources, each kept apart and marked on every answer:

* ``iana``: the IANA Service Name and Transport Protocol Port Number
  Registry, packaged as an SQLite file (or the user's newer copy, see
  ``update_registry``);
* ``etc-services``: this machine's ``/etc/services``, with aliases;
* ``unofficial``: defaults of widely deployed software that IANA never
  assigned (:mod:`portbook._book.unofficial`).

:class:`Book` is the seam: tests build one over fixture files; the module
functions use one default instance created on first use.
"""

from __future__ import annotations

import _thread
import os

from portbook._book.overlays import OverlayIndex, overlay_rank
from portbook._exceptions import InvalidPortSpecError, RegistryError, UsageError
from portbook._ports import (
    MAX_PORT,
    PortClass,
    Protocol,
    parse_port_spec,
    parse_protocol,
)
from portbook._record import public

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any, TypeVar

    from portbook._book.etc_services import EtcServicesEntry
    from portbook._book.records import RegistryInfo, Service, ServiceSource, ServiceStatus

    _Method = TypeVar("_Method", bound=Callable[..., Any])

__all__ = [
    "Book",
    "RegistryInfo",
    "Service",
    "ServiceSource",
    "ServiceStatus",
    "default_book",
    "is_assigned",
    "lookup",
    "registry_info",
    "search",
    "service_name",
    "service_names",
    "update_registry",
    "verify_registry_file",
]

# The records module (Service, its enums, its dates) is imported where a record
# is made, not with the book: a listing asks only for names (about 0.5 ms of
# a cold `portbook`). Its four public names are still found here.
_FROM_RECORDS = frozenset({"RegistryInfo", "Service", "ServiceSource", "ServiceStatus"})


def __getattr__(name: str) -> Any:
    if name in _FROM_RECORDS:
        from portbook._book import records

        return getattr(records, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_MAX_SEARCH_LEN = 100


_ALL_PROTOCOLS = tuple(p.value for p in Protocol)
_PROTOCOL_SET = frozenset(_ALL_PROTOCOLS)
# Distinct ports asked of service_name/is_assigned before the whole table is loaded.
_PRELOAD_AFTER = 256  # (port, protocol) pairs
# service_names(): ports per registry query (well below SQLite's oldest limit of
# 999 parameters), and from how many distinct unknown pairs on the whole name
# table is loaded instead (the two cost about the same there).
_BULK_CHUNK = 500
_BULK_UNTIL = 20_000
# display_names(): up to how many pairs the registry's answers are remembered.
_MEMO_UNTIL = 1_000
# Queries of the overlays answered by a scan before they are indexed.
INDEX_AFTER = 16

_DYNAMIC_FIRST = PortClass.DYNAMIC.first


def _falls_back(method: _Method) -> _Method:
    """Run a registry-reading method; if the user's copy fails it, again over the packaged data.

    A user copy can be damaged or edited after it was installed, and a lookup
    must not fail for that: :meth:`Book._recover` drops it (with the
    warning :class:`RegistryInfo` shows) and the method runs once more.
    Failures of the packaged data or of an explicit ``registry_path`` are raised.
    """

    def run(self: Book, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except RegistryError as exc:
            self._recover(exc)
        return method(self, *args, **kwargs)

    run.__name__ = method.__name__
    run.__qualname__ = method.__qualname__
    run.__doc__ = method.__doc__
    return run  # type: ignore[return-value]


class Book:
    """The book over one registry file, one services file and the unofficial list.

    ``registry_path``: a registry database to use as is (default: the user's
    updated copy under ``data_dir`` if usable, else the packaged one).
    ``services_path``: a services file (default: this system's ``/etc/services``;
    pass ``False`` for none). ``data_dir``: where ``update_registry`` installs
    data (default :func:`portbook._paths.user_data_dir`). Everything is read on
    first use; an instance is safe to share between threads.
    """

    def __init__(
        self,
        registry_path: str | os.PathLike[str] | None = None,
        services_path: str | os.PathLike[str] | bool | None = None,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        unofficial: bool = True,
    ) -> None:
        # Paths are kept as strings: pathlib is not imported on a cold lookup.
        self._registry_path = os.fspath(registry_path) if registry_path is not None else None
        self._services_arg = services_path
        self._data_dir = os.fspath(data_dir) if data_dir is not None else None
        self._use_unofficial = unofficial
        self._lock = _thread.RLock()
        self._db: Any = None  # _registry.RegistryDB, imported lazily (sqlite3)
        self._warning: str | None = None
        self._fell_back = False  # the user's copy failed a query: the packaged data is in use
        self._etc_entries: list[EtcServicesEntry] | None = None
        self._etc: list[Service] | None = None
        self._etc_path: str | None = None
        self._unofficial: list[Service] | None = None
        self._overlay_index: OverlayIndex | None = None
        self._names: dict[tuple[int, str], str] | None = None
        self._assigned: frozenset[tuple[int, str]] | None = None
        self._facts: dict[tuple[int, str], tuple[bool, str | None]] = {}
        self._built: dict[int, Service] = {}
        self._retired: list[Any] = []

    # -- sources, loaded on first use -------------------------------------------

    def _registry(self) -> Any:
        db = self._db
        if db is None:
            with self._lock:
                if self._db is None:
                    try:
                        from portbook._book.registry import open_registry
                    except ImportError as exc:  # Python built without _sqlite3
                        raise RegistryError(
                            f"the registry needs Python's sqlite3 module, which is missing ({exc})"
                        ) from exc
                    self._db, self._warning = open_registry(self._registry_path, self._data_dir)
                db = self._db
        return db

    def _recover(self, exc: RegistryError) -> None:
        """After ``exc`` from a query: switch from the user's copy to the packaged data, or raise.

        Returns when the caller should run its query again (now, or already by
        another thread, over the packaged data); raises ``exc`` (with the
        file named) when the data that failed is not the user's copy.
        """
        with self._lock:
            db = self._db
            if self._fell_back:
                return
            if db is None or db.origin != "user":
                from portbook._book.records import MalformedRecordError

                if isinstance(exc, MalformedRecordError) and db is not None:
                    raise RegistryError(f"registry data {db.path} is unusable: {exc}") from None
                raise exc
            from portbook._book.registry import open_packaged

            reason = str(exc) if db.path in str(exc) else f"registry data {db.path}: {exc}"
            self._reset()
            self._db = open_packaged()
            self._warning = f"{reason}; using the packaged registry instead"
            self._fell_back = True

    def _etc_raw(self) -> list[EtcServicesEntry]:
        entries = self._etc_entries
        if entries is None:
            with self._lock:
                if self._etc_entries is None:
                    self._etc_entries = self._load_etc_services()
                entries = self._etc_entries
        return entries

    def _load_etc_services(self) -> list[EtcServicesEntry]:
        from portbook._book.etc_services import default_services_path, read_etc_services

        arg = self._services_arg
        if arg is False:
            return []
        path = default_services_path() if arg is None or arg is True else os.fspath(arg)
        self._etc_path = path
        if path is None:
            return []
        # "ddp" and other non-IP protocols have no place among IP port numbers.
        return [e for e in read_etc_services(path) if e.protocol in _PROTOCOL_SET]

    def _etc_services(self) -> list[Service]:
        if self._etc is None:
            from portbook._book.records import etc_service

            self._etc = [etc_service(e) for e in self._etc_raw()]
        return self._etc

    def _unofficial_raw(self) -> tuple[tuple[int, int, str, str, str, str], ...]:
        if not self._use_unofficial:
            return ()
        from portbook._book.unofficial import UNOFFICIAL_PORTS

        return UNOFFICIAL_PORTS

    def _unofficial_entries(self) -> list[Service]:
        if self._unofficial is None:
            from portbook._book.records import unofficial_service

            self._unofficial = [unofficial_service(u) for u in self._unofficial_raw()]
        return self._unofficial

    # -- fast per-socket answers for the live table and the port picker ------

    def _name_table(self) -> dict[tuple[int, str], str]:
        names = self._names
        if names is None:
            with self._lock:
                if self._names is None:
                    self._build_name_tables()
                names = self._names
        assert names is not None
        return names

    @_falls_back
    def _build_name_tables(self) -> None:
        # The registry's assignments come pre-expanded per port and protocol
        # (built with the database); the overlays fill the gaps. Afterwards
        # each socket costs one dict probe.
        rows = self._registry().port_names()
        assigned = frozenset((port, proto) for port, proto, _ in rows)
        names = {(port, proto): name for port, proto, name in rows if name is not None}
        for key, name in self._overlays().first_names().items():
            names.setdefault(key, name)
        self._assigned = assigned
        self._names = names

    def _port_facts(self, port: int, protocol: Protocol | str) -> tuple[bool, str | None]:
        """(IANA-assigned?, best name) of one port and protocol.

        Until ``_PRELOAD_AFTER`` different ports were asked, each is one indexed
        query, remembered: ``portbook ls`` with fifty sockets stays cheap. Past
        that, the whole table is loaded once (a few milliseconds), so a table of
        50,000 sockets on thousands of ephemeral ports costs a dict probe each.
        """
        names, assigned = self._names, self._assigned
        if names is not None and assigned is not None:
            key = (port, protocol)
            if type(port) is not int or not 0 <= port <= MAX_PORT or protocol not in _PROTOCOL_SET:
                _check_port(port)
                key = (port, _proto_key(protocol))
            return key in assigned, names.get(key)
        cache = self._facts
        facts = cache.get((port, protocol))
        if facts is not None:
            return facts
        _check_port(port)
        key = (port, _proto_key(protocol))
        facts = cache.get(key)
        if facts is None:
            row = self._port_name_row(port, key[1])
            name = row[0] if row is not None else None
            if name is None:
                name = self._overlays().first_name(port, key[1])
            facts = (row is not None, name)
            cache[key] = facts
            if len(cache) > _PRELOAD_AFTER:
                self._name_table()
        return facts

    @_falls_back
    def _port_name_row(self, port: int, protocol: str) -> tuple[str | None] | None:
        row: tuple[str | None] | None = self._registry().port_name(port, protocol)
        return row

    def service_name(self, port: int, protocol: Protocol | str) -> str | None:
        """The best single name for ``port``/``protocol``, or ``None``.

        IANA's assigned name first (the registry's first entry for that port),
        then ``/etc/services``, then the unofficial list. Answers are remembered,
        so it suits annotating every socket of a large table.
        """
        names = self._names
        if names is not None:
            name = names.get((port, protocol))
            if name is not None:
                return name
            if type(port) is int and 0 <= port <= MAX_PORT and protocol in _PROTOCOL_SET:
                return None  # the common miss (an ephemeral port) stays one dict probe
        return self._port_facts(port, protocol)[1]

    def is_assigned(self, port: int, protocol: Protocol | str) -> bool:
        """True when IANA has an assigned (not Reserved, not Unassigned) entry for it."""
        return self._port_facts(port, protocol)[0]

    def service_names(
        self, pairs: Iterable[tuple[int, Protocol | str]]
    ) -> dict[tuple[int, str], str | None]:
        """:meth:`service_name` of many (port, protocol) pairs at once.

        The answer maps each distinct pair, as ``(port, protocol value)``, to
        exactly what ``service_name`` gives it (a :class:`Protocol` member
        finds its entry too: it hashes and compares as its value). Meant for
        annotating a whole socket table: the registry is asked with one
        indexed query per ``_BULK_CHUNK`` ports, far cheaper than loading its
        whole name table (about 15 ms) for the few thousand distinct ports
        even a large table has; answers are remembered as ``service_name``'s.
        """
        wanted = _pairs(pairs)
        if self._names is None and len(wanted) > _BULK_UNTIL:
            self._name_table()  # nearly every port asked: the whole table is cheaper
        names = self._names
        if names is not None:
            return {key: names.get(key) for key in wanted}
        cache = self._facts
        if cache:
            answer = {key: facts[1] for key in wanted if (facts := cache.get(key)) is not None}
            missing = [key for key in wanted if key not in answer]
        else:
            answer, missing = {}, list(wanted)
        if not missing:
            return answer
        rows = self._bulk_port_names(sorted({port for port, _ in missing}))
        rows_get = rows.get
        found: dict[tuple[int, str], str | None] = {
            key: name for key in missing if (name := rows_get(key)) is not None
        }
        unnamed = [key for key in missing if key not in found]
        if len(unnamed) > INDEX_AFTER:
            # Many ports without an IANA name (ephemeral ports): one pass over
            # the overlays answers them all, first entry first as in first_name.
            overlay_get = self._overlays().first_names({port for port, _ in unnamed}).get
            found.update({key: overlay_get(key) for key in unnamed})
        else:
            overlays = self._overlays()
            found.update({key: overlays.first_name(*key) for key in unnamed})
        cache.update({key: (key in rows, name) for key, name in found.items()})
        answer.update(found)
        return answer

    def display_names(
        self, pairs: Iterable[tuple[int, Protocol | str]]
    ) -> dict[tuple[int, str], tuple[str, str]]:
        """What a live view calls each (port, protocol), and the source that says so.

        The order differs from :meth:`service_name`'s, which answers "what is
        this port assigned to": a socket table answers "what is probably
        running there". So ``/etc/services`` comes first (this system's own
        curated names, what ``getservbyport`` and ``ss`` show), then the
        unofficial list (what widely used software listens on), and IANA's
        registry last: its names for ports that software reuses mislead
        (8000 is ``irdmi`` to IANA, a development server on most machines).
        Each answer is ``(name, source)`` with source ``"etc-services"``,
        ``"unofficial"`` or ``"iana"``; a pair nothing names is left out of
        the answer. A socket table's ports are mostly nameless ephemeral ports
        (at 50,000 sockets, 62 of 11,878 pairs have a name): for many pairs the
        registry is asked without :meth:`service_names`'s memo of every
        answer, which would hold megabytes for a one-off question.
        """
        wanted = _pairs(pairs)
        overlay = self._overlays().first_entries({port for port, _ in wanted})
        answer = {key: overlay[key] for key in overlay.keys() & wanted}
        missing = [key for key in wanted if key not in answer]
        if not missing:
            return answer
        iana = (
            self.service_names(missing)
            if len(missing) <= _MEMO_UNTIL
            else self._names or self._bulk_port_names(sorted({port for port, _ in missing}))
        )
        iana_get = iana.get
        for key in missing:
            name = iana_get(key)
            if name is not None:
                answer[key] = (name, "iana")
        return answer

    @_falls_back
    def _bulk_port_names(self, ports: list[int]) -> dict[tuple[int, str], str | None]:
        """IANA's (port, protocol) -> name for ``ports``, one query per ``_BULK_CHUNK``."""
        rows: dict[tuple[int, str], str | None] = {}
        db = self._registry()
        for start in range(0, len(ports), _BULK_CHUNK):
            chunk = tuple(ports[start : start + _BULK_CHUNK])
            marks = ",".join("?" * len(chunk))
            for port, proto, name in db._query(
                f"SELECT port, protocol, name FROM port_name WHERE port IN ({marks})", chunk
            ):
                rows[port, proto] = name
        return rows

    # -- lookup and search ---------------------------------------------------------

    def lookup(self, query: str | int, protocol: Protocol | str | None = None) -> list[Service]:
        """Every entry for a port, range or name, IANA first, then /etc/services, then unofficial.

        ``query``: an int port, or anything :func:`portbook.parse_port_spec`
        accepts (``443``, ``tcp/443``, ``6000-6010``, ``https``,
        ``127.0.0.1:5432``; an address part is ignored). A port inside a range
        entry finds the range (6000 finds x11 6000-6063), a port in an
        Unassigned or Reserved block finds the block. Entries not tied to a
        protocol match any ``protocol``. Returns ``[]`` when nothing is known.

        Raises :class:`portbook.InvalidPortSpecError` (a ``UsageError``) for a
        query or protocol that does not parse, or a protocol given twice
        differently; :class:`portbook.RegistryError` when no registry data is usable.
        """
        if type(query) is int and protocol is None and 0 <= query <= MAX_PORT:
            return self._by_ports(query, query, None)  # the common call, kept short
        proto = parse_protocol(protocol) if isinstance(protocol, str) else protocol
        if proto is not None and not isinstance(proto, Protocol):
            raise InvalidPortSpecError(repr(protocol), "protocol must be tcp, udp, sctp or dccp")
        if isinstance(query, bool) or not isinstance(query, (int, str)):
            raise InvalidPortSpecError(repr(query), "expected a port number, range or name")
        if isinstance(query, int):
            _check_port(query)
            return self._by_ports(query, query, proto)
        spec = parse_port_spec(query)
        if spec.protocol is not None:
            if proto is not None and proto is not spec.protocol:
                raise InvalidPortSpecError(
                    query, f"protocol {spec.protocol} conflicts with {proto}"
                )
            proto = spec.protocol
        if spec.ports is not None:
            return self._by_ports(spec.ports.first, spec.ports.last, proto)
        assert spec.name is not None
        return self._by_name(spec.name, proto)

    def _overlays(self) -> OverlayIndex:
        index = self._overlay_index
        if index is None:
            with self._lock:
                if self._overlay_index is None:
                    self._overlay_index = OverlayIndex(self._etc_raw(), self._unofficial_raw())
                index = self._overlay_index
        return index

    def _services(self, rows: list[Any]) -> list[Service]:
        # Records are frozen, so one per registry row is shared by every answer
        # that includes it: the big Unassigned blocks answer for thousands of
        # ports and are built once. Bounded by the registry's size.
        from portbook._book.records import registry_service

        built = self._built
        out = []
        for row in rows:
            service = built.get(row[0])
            if service is None:
                service = built[row[0]] = registry_service(row)
            out.append(service)
        return out

    def _at_port(self, port: int) -> list[Service]:
        # The in-process hot path (about 6 us, a third of it SQLite's): one
        # comprehension over the rows, records built only for rows not seen yet.
        db = self._registry()
        rows = db.ids_at_port(port)
        built = self._built
        try:
            return [built[i] for (i,) in rows]
        except KeyError:
            from portbook._book.records import registry_service

            missing = [i for (i,) in rows if i not in built]
            for row in db.rows_by_id(missing):
                built[row[0]] = registry_service(row)
            return [built[i] for (i,) in rows]

    @_falls_back
    def _by_ports(self, first: int, last: int, proto: Protocol | None) -> list[Service]:
        if first == last:
            found = self._at_port(first)
        else:
            found = self._services(self._registry().by_ports(first, last))
        if last >= _DYNAMIC_FIRST:
            from portbook._book.records import DYNAMIC_BLOCK

            found.append(DYNAMIC_BLOCK)
        overlay = self._overlay_index or self._overlays()
        hits = overlay.by_ports(first, last)
        if hits:
            found.extend(hits)
        return found if proto is None else _filter_protocol(found, proto)

    @_falls_back
    def _by_name(self, name: str, proto: Protocol | None) -> list[Service]:
        found = self._services(self._registry().by_name(name))
        found.extend(self._overlays().by_name(name))
        return _filter_protocol(found, proto)

    @_falls_back
    def search(self, text: str, limit: int = 20) -> list[Service]:
        """Entries whose name, alias, software or description holds ``text``, best first.

        Ranking: exact name (or alias), name prefix, name substring, whole
        description, a description word starting with ``text``, description
        substring; among equals IANA assignments come before blocks and
        overlays. When that finds fewer than ``limit``, names that ``text``
        nearly spells follow (``memcached`` finds IANA's ``memcache``).
        Raises :class:`portbook.UsageError` for empty, overlong or
        non-UTF-8 text or a ``limit`` outside 1 to 10,000.
        """
        needle = _search_text(text)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise UsageError(f"search limit must be a whole number from 1 to 10000, not {limit!r}")
        ranked: list[tuple[int, int, int, Service]] = []
        for i, (rank, row) in enumerate(self._registry().search(needle, limit)):
            ranked.append((rank, 0, i, self._services([row])[0]))
        low = needle.lower()
        for order, source in enumerate((self._etc_services(), self._unofficial_entries()), 1):
            for i, s in enumerate(source):
                rank = overlay_rank(s, low)
                if rank is not None:
                    ranked.append((rank, order, i, s))
        ranked.sort(key=lambda item: item[:3])
        found = [item[3] for item in ranked[:limit]]
        if len(found) < limit:
            found.extend(s for s in self._near(low) if s not in found)
        return found[:limit]

    def _near(self, low: str) -> list[Service]:
        """Entries of the names ``low`` nearly spells (a letter more, less or swapped)."""
        import difflib  # only when the plain search came up short

        names = set(self._registry().names())
        names.update(
            (s.name or "").lower() for s in self._etc_services() + self._unofficial_entries()
        )
        close = difflib.get_close_matches(low, sorted(names - {low, ""}), n=3, cutoff=0.8)
        return [s for name in close for s in self._by_name(name, None)]

    # -- registry data -------------------------------------------------------------

    @property
    def warning(self) -> str | None:
        """Why this book left the user's updated registry for the packaged one
        (a copy that cannot be read or failed a query); ``None`` while the copy
        is in use, when there is none, or before the registry was first read."""
        return self._warning

    @_falls_back
    def registry_info(self) -> RegistryInfo:
        """Which registry data is in use, its source, date and counts, and the overlays."""
        from portbook._book.records import RegistryInfo, parse_date

        db = self._registry()
        meta: dict[str, str] = db.meta
        etc = self._etc_raw()
        updated = meta.get("updated") or None
        return RegistryInfo(
            path=db.path,
            origin=db.origin,
            source_name=meta.get("source_name", "?"),
            source_sha256=meta.get("source_sha256", ""),
            source_format=meta.get("source_format", "?"),
            updated=parse_date(updated),
            records=int(meta.get("records", "0")),
            assigned=int(meta.get("assigned", "0")),
            reserved=int(meta.get("reserved", "0")),
            unassigned=int(meta.get("unassigned", "0")),
            names_only=int(meta.get("names_only", "0")),
            newest_record=parse_date(meta.get("newest_record") or None),
            etc_services_path=self._etc_path,
            etc_services_entries=len(etc),
            unofficial_entries=len(self._unofficial_raw()),
            warning=self._warning,
        )

    def update_registry(self, source: str | os.PathLike[str]) -> RegistryInfo:
        """Install a newer IANA registry (XML or CSV, a path or an http(s) URL).

        The file is validated (format, header, record count, ports, dates),
        written to a temporary database in the data directory and renamed over
        the user's copy atomically; this book then uses it (unless it was made
        over an explicit ``registry_path``, which it keeps). On any failure
        :class:`portbook.RegistryUpdateError` is raised and the data in use
        stays as it was.
        """
        from pathlib import Path

        from portbook._book.update import install_registry
        from portbook._paths import user_data_dir_name

        with self._lock:
            current = self._registry()
            dest_dir = Path(self._data_dir if self._data_dir is not None else user_data_dir_name())
            install_registry(source, dest_dir, current_records=int(current.meta["records"]))
            if self._registry_path is None:
                self._reset()
        return self.registry_info()

    def _reset(self) -> None:
        # The old connection is not closed here: another thread may be in the
        # middle of a query on it. close() closes it with the current one.
        if self._db is not None:
            self._retired.append(self._db)
        self._db = None
        self._fell_back = False
        self._names = None
        self._assigned = None
        self._facts = {}
        self._built = {}

    def close(self) -> None:
        """Close the registry database (reopened on next use)."""
        with self._lock:
            self._reset()
            for db in self._retired:
                db.close()
            self._retired.clear()


def _filter_protocol(found: list[Service], proto: Protocol | None) -> list[Service]:
    if proto is None:
        return found
    return [s for s in found if s.protocol is None or s.protocol is proto]


def _proto_key(protocol: Protocol | str) -> str:
    if isinstance(protocol, Protocol):
        return protocol.value
    if not isinstance(protocol, str):
        raise InvalidPortSpecError(repr(protocol), "protocol must be a string")
    return parse_protocol(protocol).value


def _search_text(text: object) -> str:
    """The search text, checked: not empty, not too long, printable, valid Unicode."""
    if not isinstance(text, str) or not text.strip():
        raise UsageError("search text is empty")
    needle = " ".join(text.split())
    if len(needle) > _MAX_SEARCH_LEN:
        raise UsageError(f"search text is too long ({len(needle)} characters)")
    if any(ord(c) < 32 or 0xD800 <= ord(c) <= 0xDFFF for c in needle):
        # A lone surrogate is how a byte that is not UTF-8 reaches Python from argv.
        raise UsageError("search text contains control characters or bytes that are not UTF-8")
    return needle


def _pairs(pairs: Iterable[tuple[int, Protocol | str]]) -> set[tuple[int, str]]:
    """Distinct (port, protocol value) pairs, checked (a set of such pairs is not copied)."""
    if type(pairs) is set and all(map(_plain_pair, pairs)):
        return pairs
    wanted: set[tuple[int, str]] = set()
    add = wanted.add
    for pair in pairs:
        if _plain_pair(pair):  # the common case: the pair itself
            add(pair)
        else:
            port, protocol = pair
            _check_port(port)
            add((port, _proto_key(protocol)))
    return wanted


def _plain_pair(pair: tuple[int, Protocol | str]) -> bool:
    """Whether ``pair`` is an int port and a protocol value, as :func:`_pairs` keeps them."""
    port, protocol = pair
    return (
        type(port) is int
        and 0 <= port <= MAX_PORT
        and type(protocol) is str
        and protocol in _PROTOCOL_SET
    )


def _check_port(port: int) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= MAX_PORT:
        raise InvalidPortSpecError(str(port), f"port must be an integer 0-{MAX_PORT}")


def verify_registry_file(path: str | os.PathLike[str]) -> RegistryInfo:
    """Read the registry database at ``path`` as the book reads one; its :class:`RegistryInfo`.

    Every record is built, the name table and ``meta`` are read: what
    ``update`` runs on a new database before renaming it into place, so
    that nothing this reader would fail on is ever installed. Raises
    :class:`portbook.RegistryError` naming what failed.
    """
    from portbook._book.records import MalformedRecordError, registry_service

    book = Book(registry_path=path, services_path=False, unofficial=False)
    try:
        info = book.registry_info()
        db = book._registry()
        rows = db.all_rows()
        for row in rows:
            registry_service(row)
        for port, protocol, name in db.port_names():
            if (
                type(port) is not int
                or protocol not in _PROTOCOL_SET
                or type(name)
                not in (
                    str,
                    type(None),
                )
            ):
                raise RegistryError(f"name table row {(port, protocol, name)!r} is malformed")
        if len(rows) != info.records:
            raise RegistryError(f"{len(rows)} records where meta says {info.records}")
        return info
    except MalformedRecordError as exc:
        raise RegistryError(str(exc)) from None
    finally:
        book.close()


# -- the default book and module-level functions ------------------------------------

_default: Book | None = None
_default_lock = _thread.allocate_lock()


def default_book() -> Book:
    """The process-wide :class:`Book` over the default data, created on first use."""
    global _default
    book = _default
    if book is None:
        with _default_lock:
            if _default is None:
                _default = Book()
            book = _default
    return book


def lookup(query: str | int, protocol: Protocol | str | None = None) -> list[Service]:
    """:meth:`Book.lookup` on the default book."""
    return default_book().lookup(query, protocol)


def search(text: str, limit: int = 20) -> list[Service]:
    """:meth:`Book.search` on the default book."""
    return default_book().search(text, limit)


def registry_info() -> RegistryInfo:
    """:meth:`Book.registry_info` on the default book."""
    return default_book().registry_info()


def registry_warning() -> str | None:
    """:attr:`Book.warning` of the default book: what a command that read the
    book says once, on stderr."""
    return default_book().warning


def update_registry(source: str | os.PathLike[str]) -> RegistryInfo:
    """:meth:`Book.update_registry` on the default book."""
    return default_book().update_registry(source)


def service_name(port: int, protocol: Protocol | str) -> str | None:
    """:meth:`Book.service_name` on the default book."""
    return default_book().service_name(port, protocol)


def is_assigned(port: int, protocol: Protocol | str) -> bool:
    """:meth:`Book.is_assigned` on the default book."""
    return default_book().is_assigned(port, protocol)


def service_names(
    pairs: Iterable[tuple[int, Protocol | str]],
) -> dict[tuple[int, str], str | None]:
    """:meth:`Book.service_names` on the default book."""
    return default_book().service_names(pairs)


public(Book)
