"""Your names: a stable port for each of your own services.

A name maps to one (port, protocol) and keeps it until released. New names
get a port by the picker's rules (:mod:`portbook._names.picker`); ``--port``
asks for one and is refused, with the reason, when another name, a live
lease or a running program holds it. Every change is one ``BEGIN
IMMEDIATE`` transaction committed with a full fsync, so concurrent
``assign`` calls from many processes never hand out one port twice and an
acknowledged name survives a crash of anything.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from portbook._exceptions import (
    InvalidNameError,
    NotFoundError,
    PortUnavailableError,
    SocketTableError,
    UsageError,
)
from portbook._machine import ipv6_available
from portbook._names.holder import Holder, this_process
from portbook._names.leases import Lease, insert_lease, live_lease_on
from portbook._names.picker import PickPolicy, choose_port
from portbook._names.store import Store, default_store
from portbook._ports import Family, PortRange, Protocol, parse_port, parse_protocol
from portbook._record import public, record

if TYPE_CHECKING:
    # The live table is loaded only when a command asks who holds a port.
    from portbook._live.records import Socket, SocketProcess

    # Who holds (or listens on) a port: (whether anyone does, which processes).
    ListenerCheck = Callable[[int, Protocol], tuple[bool, tuple[SocketProcess, ...]]]

__all__ = [
    "Assignment",
    "NameStatus",
    "assign",
    "export_names",
    "get",
    "import_names",
    "lease_name",
    "list_names",
    "name_status",
    "release",
    "validate_name",
]

NAME_MAX = 63
_NAME_PUNCT = frozenset("-_./")
EXPORT_FORMAT = "portbook-names"
EXPORT_VERSION = 1


@record
class Assignment:
    """A name and the port it keeps until released."""

    name: str
    port: int
    protocol: Protocol

    def to_json(self) -> dict[str, Any]:
        """``{"name", "port", "protocol"}``: what ``assign/get/release --json`` print."""
        return {"name": self.name, "port": self.port, "protocol": self.protocol.value}


@record
class NameStatus:
    """A name, and whether a program is listening on its port right now (and which).

    ``processes`` may be empty while ``listening`` is true: the socket is
    there but its owner is not visible (another user's process without root).
    ``held_by`` is the live ``run`` lease on the name, if any.
    """

    assignment: Assignment
    listening: bool
    processes: tuple[SocketProcess, ...]
    held_by: Lease | None = None

    def to_json(self) -> dict[str, Any]:
        """One entry of ``names --json``: the assignment, ``listening`` and ``processes``."""
        return {
            **self.assignment.to_json(),
            "listening": self.listening,
            "processes": [p.to_json() for p in self.processes],
        }


def validate_name(name: str) -> str:
    """Return ``name`` if it is acceptable, else raise :class:`InvalidNameError`.

    A name is 1-63 ASCII characters: letters, digits and ``- _ . /``,
    starting with a letter (so that ``portbook env`` can turn it into a
    shell variable, ``NAME_PORT``). port-for's ``example.com/apache`` style
    fits.
    """
    if not isinstance(name, str):
        raise InvalidNameError(repr(name), "a name is a string")
    if not name:
        raise InvalidNameError(name, "empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidNameError(name, "contains control characters")
    if len(name) > NAME_MAX:
        raise InvalidNameError(name, f"longer than {NAME_MAX} characters ({len(name)})")
    if not name.isascii() or not all(c.isalnum() or c in _NAME_PUNCT for c in name):
        raise InvalidNameError(name, "use only ASCII letters, digits, '-', '_', '.' and '/'")
    if not name[0].isalpha():
        raise InvalidNameError(name, "must start with a letter")
    return name


def _protocol(protocol: Protocol | str) -> Protocol:
    proto = protocol if isinstance(protocol, Protocol) else parse_protocol(protocol)
    if proto not in (Protocol.TCP, Protocol.UDP):
        raise UsageError(f"names are for TCP and UDP ports, not {proto.value.upper()}")
    return proto


def _families() -> tuple[Family, ...]:
    return (Family.INET, Family.INET6) if ipv6_available() else (Family.INET,)


def _row(row: Sequence[Any]) -> Assignment:
    return Assignment(str(row[0]), int(row[1]), Protocol(str(row[2])))


def _lookup(conn: sqlite3.Connection, name: str) -> Assignment | None:
    row = conn.execute("SELECT name, port, protocol FROM names WHERE name = ?", (name,)).fetchone()
    return None if row is None else _row(row)


def _not_found(name: str) -> NotFoundError:
    return NotFoundError(f"no port is assigned to the name {name!r}")


def assign(
    name: str,
    *,
    port: int | None = None,
    protocol: Protocol | str | None = None,
    port_range: PortRange | None = None,
    near: int | None = None,
    allow_assigned: bool = False,
    store: Store | None = None,
    policy: PickPolicy | None = None,
    listeners: ListenerCheck | None = None,
) -> Assignment:
    """The port of ``name``, choosing one first if the name is new.

    The same (port, protocol) is returned on every call until
    :func:`release`. A new name gets a port by the picker's rules
    (``port_range``, ``near``, ``allow_assigned`` as for
    :func:`pick_port`), or ``port`` if given. ``protocol`` defaults to TCP.

    Raises :class:`InvalidNameError` for a bad name;
    :class:`PortUnavailableError` when ``port`` is held by another name, a
    live lease or a running program, or when ``name`` already has another
    port or protocol; :class:`RangeExhaustedError` when no port is left;
    :class:`StoreError` subclasses when the store cannot be written.
    """
    validate_name(name)
    proto = _protocol(protocol) if protocol is not None else None
    if port is not None:
        port = parse_port(str(port))
        if port == 0:
            raise UsageError("port 0 means 'any port' to the kernel; it cannot be a name's")
    rules = policy or PickPolicy.default()
    chosen = store or default_store()
    # A name that exists already is answered from a read: no write lock, and
    # it works on a read-only store. Names change only by release, so what
    # the read sees is re-checked by the write below only for new names.
    with chosen.read() as conn:
        known = _lookup(conn, name)
    if (
        known is not None
        and (port is None or port == known.port)
        and (proto is None or proto is known.protocol)
    ):
        return known
    with chosen.write(durable=True) as conn:
        existing = _lookup(conn, name)
        if existing is not None:
            if (port is not None and port != existing.port) or (
                proto is not None and proto is not existing.protocol
            ):
                raise PortUnavailableError(
                    f"{name!r} already has {existing.protocol}/{existing.port}; "
                    "release it first to change it",
                    port=existing.port,
                    protocol=existing.protocol.value,
                    holder=name,
                )
            return existing
        proto = proto or Protocol.TCP
        if port is None:
            port = choose_port(
                conn,
                protocols=(proto,),
                families=_families(),
                port_range=port_range,
                near=near,
                allow_assigned=allow_assigned,
                policy=rules,
            )
        else:
            _check_port_free_for_name(
                conn, port=port, proto=proto, rules=rules, listeners=listeners
            )
        conn.execute(
            "INSERT INTO names (name, port, protocol, created) VALUES (?, ?, ?, ?)",
            (name, port, proto.value, time.time()),
        )
        return Assignment(name, port, proto)


def _check_port_free_for_name(
    conn: sqlite3.Connection,
    *,
    port: int,
    proto: Protocol,
    rules: PickPolicy,
    listeners: ListenerCheck | None,
) -> None:
    row = conn.execute(
        "SELECT name FROM names WHERE port = ? AND protocol = ?", (port, proto.value)
    ).fetchone()
    if row is not None:
        raise PortUnavailableError(
            f"{proto}/{port} is already the port of the name {row[0]!r}",
            port=port,
            protocol=proto.value,
            holder=str(row[0]),
        )
    lease = live_lease_on(conn, port, time.time())
    if lease is not None:
        who = f"pid {lease.pid}" if lease.pid is not None else "a timed lease"
        raise PortUnavailableError(
            f"port {port} is leased to {who} right now",
            port=port,
            protocol=proto.value,
            holder=who,
        )
    if rules.is_free(port, (proto,), _families()):
        return
    # Not bindable right now. Only a live program makes that a refusal: the
    # TIME-WAIT leftovers of an earlier run go away by themselves (and a
    # server that sets SO_REUSEADDR binds over them anyway).
    held, procs = (listeners or port_holders)(port, proto)
    if not held:
        return
    who = ", ".join(f"pid {p.pid} ({p.name or '?'})" for p in procs) or (
        "a program portbook cannot see (another user's: run as root to see which)"
    )
    raise PortUnavailableError(
        f"{proto}/{port} is in use by {who}",
        port=port,
        protocol=proto.value,
        holder=who,
    )


def get(name: str, *, store: Store | None = None) -> Assignment:
    """The port of ``name``; :class:`NotFoundError` when it has none."""
    validate_name(name)
    with (store or default_store()).read() as conn:
        found = _lookup(conn, name)
    if found is None:
        raise _not_found(name)
    return found


def release(name: str, *, store: Store | None = None) -> Assignment:
    """Forget ``name`` and give its port back; returns what it had.

    Raises :class:`NotFoundError` when the name has no port.
    """
    validate_name(name)
    with (store or default_store()).write(durable=True) as conn:
        found = _lookup(conn, name)
        if found is None:
            raise _not_found(name)
        conn.execute("DELETE FROM names WHERE name = ?", (name,))
        conn.execute("DELETE FROM leases WHERE name = ?", (name,))
    return found


def list_names(*, store: Store | None = None) -> list[Assignment]:
    """Every name with its port, sorted by name."""
    with (store or default_store()).read() as conn:
        rows = conn.execute("SELECT name, port, protocol FROM names ORDER BY name").fetchall()
    return [_row(r) for r in rows]


def lease_name(
    name: str, *, holder: Holder | None = None, store: Store | None = None
) -> tuple[Assignment, Lease]:
    """Hold the port of ``name`` for ``holder`` (default: this process) while it runs.

    Used by ``portbook run``: a second ``run`` of the same name is refused
    while the first one's holder lives. Raises :class:`NotFoundError` for a
    name without a port, :class:`PortUnavailableError` when another live
    process holds it.
    """
    validate_name(name)
    who = holder if holder is not None else this_process()
    with (store or default_store()).write(durable=False) as conn:
        found = _lookup(conn, name)
        if found is None:
            raise _not_found(name)
        current = live_lease_on(conn, found.port, time.time())
        if current is not None:
            raise PortUnavailableError(
                f"{name!r} ({found.protocol}/{found.port}) is held by pid {current.pid} already",
                port=found.port,
                protocol=found.protocol.value,
                holder=f"pid {current.pid}",
            )
        lease = insert_lease(
            conn,
            port=found.port,
            protocols=(found.protocol,),
            families=_families(),
            holder=who,
            expires=None,
            name=name,
        )
    return found, lease


def name_status(
    *, store: Store | None = None, listeners: ListenerCheck | None = None
) -> list[NameStatus]:
    """Every name, with whether a program listens on its port now, and which."""
    check = listeners or default_listeners
    now = time.time()
    with (store or default_store()).read() as conn:
        rows = conn.execute("SELECT name, port, protocol FROM names ORDER BY name").fetchall()
        from portbook._names.leases import is_live, leases_by_port

        leases = leases_by_port(conn)
    result = []
    for row in rows:
        a = _row(row)
        listening, procs = check(a.port, a.protocol)
        lease = leases.get(a.port)
        if lease is not None and (lease.name != a.name or not is_live(lease, now)):
            lease = None
        result.append(NameStatus(a, listening, procs, lease))
    return result


def default_listeners(port: int, protocol: Protocol) -> tuple[bool, tuple[SocketProcess, ...]]:
    """Is a program listening on ``protocol``/``port`` right now, and which (the live table)."""
    # A TCP port with only connections on it (or TIME-WAIT leftovers) is not
    # being served; a bound UDP socket is.
    return _live(port, protocol, lambda sock: sock.listening)


def port_holders(port: int, protocol: Protocol) -> tuple[bool, tuple[SocketProcess, ...]]:
    """Does a live program hold ``protocol``/``port`` (any socket but TIME-WAIT), and which."""
    from portbook._live.records import SocketState

    return _live(port, protocol, lambda sock: sock.state is not SocketState.TIME_WAIT)


def _live(
    port: int, protocol: Protocol, counts: Callable[[Socket], bool]
) -> tuple[bool, tuple[SocketProcess, ...]]:
    from portbook._joined import sockets_on_port

    try:
        sockets = sockets_on_port(port, protocol)
    except SocketTableError:
        # No socket table on this system: a port that cannot be bound is
        # taken by someone we cannot name.
        from portbook._names.picker import probe_free

        return (not probe_free(port, (protocol,), _families()), ())
    procs: dict[int, SocketProcess] = {}
    found = False
    for sock in sockets:
        if not counts(sock):
            continue
        found = True
        for proc in sock.processes:
            procs.setdefault(proc.pid, proc)
    return found, tuple(sorted(procs.values(), key=lambda p: p.pid))


# -- export and import ------------------------------------------------------


def export_names(*, store: Store | None = None) -> dict[str, Any]:
    """All names as a JSON-ready document that :func:`import_names` reads back."""
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "names": [
            {"name": a.name, "port": a.port, "protocol": a.protocol.value}
            for a in list_names(store=store)
        ],
    }


def parse_names_document(text: str) -> list[Assignment]:
    """Parse an export (JSON) or port-for's INI file (``[DEFAULT]`` ``app = port``)."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")) and not stripped.startswith("[DEFAULT]"):
        return _parse_json(text)
    return _parse_port_for_ini(text)


def _parse_json(text: str) -> list[Assignment]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"not a portbook export: invalid JSON ({exc.msg}, line {exc.lineno})"
        ) from None
    entries = doc.get("names") if isinstance(doc, dict) else doc
    if isinstance(doc, dict) and doc.get("format", EXPORT_FORMAT) != EXPORT_FORMAT:
        raise UsageError(f"not a portbook export: format {doc.get('format')!r}")
    if isinstance(doc, dict) and int(doc.get("version", EXPORT_VERSION)) > EXPORT_VERSION:
        raise UsageError(
            f"the export has version {doc.get('version')}, newer than this portbook reads"
        )
    if not isinstance(entries, list):
        raise UsageError("not a portbook export: expected a list of names")
    result = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "name" not in entry or "port" not in entry:
            raise UsageError(f"entry {i + 1} of the export needs a 'name' and a 'port'")
        result.append(
            _entry(str(entry["name"]), str(entry["port"]), str(entry.get("protocol", "tcp")))
        )
    return result


def _parse_port_for_ini(text: str) -> list[Assignment]:
    import configparser

    # port-for writes its ConfigParser's DEFAULT section: "app = port" lines.
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        first = str(exc).splitlines()[0]
        raise UsageError(
            f"neither a portbook export (JSON) nor a port-for INI file: {first}"
        ) from None
    items: dict[str, str] = dict(parser.defaults())
    for section in parser.sections():
        for key, value in parser.items(section, raw=True):
            items.setdefault(key, value)
    return [_entry(key, value, "tcp") for key, value in items.items()]


def _entry(name: str, port_text: str, protocol_text: str) -> Assignment:
    validate_name(name)
    port = parse_port(port_text)
    if port == 0:
        raise UsageError(f"{name!r}: port 0 cannot be a name's")
    return Assignment(name, port, _protocol(protocol_text))


def import_names(text: str, *, store: Store | None = None) -> list[Assignment]:
    """Add the names of an export (JSON) or of port-for's INI file, all or nothing.

    Names already present with the same port and protocol are skipped;
    returns the names added. Raises :class:`UsageError` for a file that
    does not parse, :class:`InvalidNameError` for a bad name in it, and
    :class:`PortUnavailableError` when an entry contradicts the store (a
    name with another port, a port of another name, a port leased now):
    then nothing at all is imported.
    """
    entries = parse_names_document(text)
    _check_no_duplicates(entries)
    added: list[Assignment] = []
    with (store or default_store()).write(durable=True) as conn:
        now = time.time()
        for entry in entries:
            existing = _lookup(conn, entry.name)
            if existing == entry:
                continue
            if existing is not None:
                raise PortUnavailableError(
                    f"{entry.name!r} is {existing.protocol}/{existing.port} here, "
                    f"{entry.protocol}/{entry.port} in the file; nothing imported",
                    port=entry.port,
                    protocol=entry.protocol.value,
                    holder=entry.name,
                )
            row = conn.execute(
                "SELECT name FROM names WHERE port = ? AND protocol = ?",
                (entry.port, entry.protocol.value),
            ).fetchone()
            if row is not None:
                raise PortUnavailableError(
                    f"{entry.protocol}/{entry.port} of {entry.name!r} is already the port "
                    f"of {row[0]!r}; nothing imported",
                    port=entry.port,
                    protocol=entry.protocol.value,
                    holder=str(row[0]),
                )
            lease = live_lease_on(conn, entry.port, now)
            if lease is not None:
                raise PortUnavailableError(
                    f"port {entry.port} of {entry.name!r} is leased to pid {lease.pid} "
                    "right now; nothing imported",
                    port=entry.port,
                    protocol=entry.protocol.value,
                )
            conn.execute(
                "INSERT INTO names (name, port, protocol, created) VALUES (?, ?, ?, ?)",
                (entry.name, entry.port, entry.protocol.value, now),
            )
            added.append(entry)
    return added


def _check_no_duplicates(entries: Iterable[Assignment]) -> None:
    names: dict[str, Assignment] = {}
    ports: dict[tuple[int, Protocol], str] = {}
    for e in entries:
        if e.name in names and names[e.name] != e:
            raise UsageError(f"the file gives {e.name!r} two different ports")
        other = ports.get((e.port, e.protocol))
        if other is not None and other != e.name:
            raise UsageError(f"the file gives {e.protocol}/{e.port} to {other!r} and {e.name!r}")
        names[e.name] = e
        ports[(e.port, e.protocol)] = e.name


public(Assignment, NameStatus)
