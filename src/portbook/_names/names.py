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

import os
import time

from portbook._exceptions import InvalidNameError, NotFoundError, PortUnavailableError, UsageError
from portbook._machine import ipv6_available
from portbook._names.assignments import (
    Assignment,
    all_names,
    delete_name,
    find_name,
    insert_name,
    name_on_port,
)
from portbook._names.holder import Holder, this_process
from portbook._names.leases import (
    Lease,
    delete_lease,
    delete_leases_of_name,
    insert_lease,
    live_lease_on,
)
from portbook._names.picker import PickPolicy, choose_port
from portbook._names.store import Store, default_store
from portbook._ports import Family, PortRange, Protocol, parse_port, parse_protocol

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable, Set

    from portbook._names.picker import HolderCheck

__all__ = [
    "Assignment",
    "assign",
    "env_variable",
    "families",
    "free_for_a_name",
    "get",
    "lease_name",
    "list_names",
    "name_environment",
    "name_protocol",
    "refuse_if_in_use",
    "release",
    "validate_name",
]

NAME_MAX = 63
_NAME_PUNCT = frozenset("-_./")


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


def name_protocol(protocol: Protocol | str) -> Protocol:
    """The protocol of a name: TCP or UDP; :class:`UsageError` for anything else."""
    proto = protocol if isinstance(protocol, Protocol) else parse_protocol(protocol)
    if proto not in (Protocol.TCP, Protocol.UDP):
        raise UsageError(f"names are for TCP and UDP ports, not {proto.value.upper()}")
    return proto


def families() -> tuple[Family, ...]:
    """The families a name's port is kept free on: IPv4, and IPv6 where the machine has it."""
    return (Family.INET, Family.INET6) if ipv6_available() else (Family.INET,)


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
    listeners: HolderCheck | None = None,
) -> Assignment:
    """The port of ``name``, choosing one first if the name is new.

    The same (port, protocol) is returned on every call until
    :func:`release`. A new name gets a port by the picker's rules
    (``port_range``, ``near``, ``allow_assigned`` as for
    :func:`pick_port`), or ``port`` if given. ``protocol`` defaults to TCP.
    A lease on ``port`` held by this process or one of its parents (the
    shell that ran ``P=$(portbook pick)``) is no conflict: the name takes
    the port over from it. ``listeners`` replaces the policy's check of who
    holds a port (:attr:`PickPolicy.holders`).

    Raises :class:`InvalidNameError` for a bad name;
    :class:`PortUnavailableError` when ``port`` is held by another name, a
    live lease or a running program, or when ``name`` already has another
    port or protocol; :class:`RangeExhaustedError` when no port is left;
    :class:`StoreError` subclasses when the store cannot be written.
    """
    validate_name(name)
    proto = name_protocol(protocol) if protocol is not None else None
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
        known = find_name(conn, name)
    if known is not None and _same(known, port, proto):
        return known
    with chosen.write(durable=True) as conn:
        existing = find_name(conn, name)
        if existing is not None:
            if not _same(existing, port, proto):
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
                families=families(),
                port_range=port_range,
                near=near,
                allow_assigned=allow_assigned,
                policy=rules,
            )
        else:
            free_for_a_name(conn, port, proto, mine=_caller_chain())
            _not_in_use(port, proto, rules, listeners)
        made = Assignment(name, port, proto)
        insert_name(conn, made)
        return made


def _same(existing: Assignment, port: int | None, proto: Protocol | None) -> bool:
    return (port is None or port == existing.port) and (proto is None or proto is existing.protocol)


def _caller_chain() -> set[int]:
    from portbook._proc import ancestors

    return ancestors(os.getpid())


def free_for_a_name(
    conn: sqlite3.Connection, port: int, proto: Protocol, *, mine: Set[int] = frozenset()
) -> None:
    """Refuse (:class:`PortUnavailableError`) a port that is another name's or leased now.

    The one check of the store that ``assign --port`` and ``names --import``
    share. A live lease held by one of the pids in ``mine`` (the caller and
    its parents) is no conflict: it is dropped, and the name takes the port.
    """
    other = name_on_port(conn, port, proto)
    if other is not None:
        raise PortUnavailableError(
            f"{proto}/{port} is already the port of the name {other.name!r}",
            port=port,
            protocol=proto.value,
            holder=other.name,
        )
    lease = live_lease_on(conn, port, time.time())
    if lease is None:
        return
    if lease.pid is not None and lease.pid in mine:
        delete_lease(conn, lease.id)
        return
    who = f"pid {lease.pid}" if lease.pid is not None else "a timed lease"
    raise PortUnavailableError(
        f"port {port} is leased to {who} right now", port=port, protocol=proto.value, holder=who
    )


def refuse_if_in_use(a: Assignment, *, policy: PickPolicy | None = None) -> None:
    """Refuse (:class:`PortUnavailableError`, naming the holder) a name whose port is in use."""
    _not_in_use(a.port, a.protocol, policy or PickPolicy.default(), None)


def _not_in_use(
    port: int, proto: Protocol, rules: PickPolicy, listeners: HolderCheck | None
) -> None:
    """Refuse a port a running program holds (TIME-WAIT leftovers are no refusal)."""
    if rules.is_free(port, (proto,), families()):
        return
    # Not bindable right now. Only a live program makes that a refusal: the
    # TIME-WAIT leftovers of an earlier run go away by themselves (and a
    # server that sets SO_REUSEADDR binds over them anyway).
    held, procs = (listeners or rules.holders)(port, proto)
    if not held:
        return
    who = ", ".join(f"pid {p.pid} ({p.name or '?'})" for p in procs) or (
        "a program portbook cannot see (another user's: run as root to see which)"
    )
    raise PortUnavailableError(
        f"{proto}/{port} is in use by {who}", port=port, protocol=proto.value, holder=who
    )


def get(name: str, *, store: Store | None = None) -> Assignment:
    """The port of ``name``; :class:`NotFoundError` when it has none."""
    validate_name(name)
    with (store or default_store()).read() as conn:
        found = find_name(conn, name)
    if found is None:
        raise _not_found(name)
    return found


def release(name: str, *, store: Store | None = None) -> Assignment:
    """Forget ``name`` and give its port back; returns what it had.

    Raises :class:`NotFoundError` when the name has no port.
    """
    validate_name(name)
    with (store or default_store()).write(durable=True) as conn:
        found = find_name(conn, name)
        if found is None:
            raise _not_found(name)
        delete_name(conn, name)
        delete_leases_of_name(conn, name)
    return found


def list_names(*, store: Store | None = None) -> list[Assignment]:
    """Every name with its port, sorted by name."""
    with (store or default_store()).read() as conn:
        return all_names(conn)


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
        found = find_name(conn, name)
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
            families=families(),
            holder=who,
            expires=None,
            name=name,
        )
    return found, lease


def env_variable(name: str) -> str:
    """The shell variable of a name's port: ``api`` -> ``API_PORT``, ``a.b/c`` -> ``A_B_C_PORT``."""
    return "".join(c if c.isalnum() else "_" for c in name.upper()) + "_PORT"


def name_environment(names: Iterable[str], *, store: Store | None = None) -> dict[str, int]:
    """``{"API_PORT": 24117, ...}`` for ``names`` (what ``portbook env`` exports).

    Raises :class:`NotFoundError` for a name without a port and
    :class:`UsageError` when two names would share one variable.
    """
    seen: dict[str, str] = {}
    result: dict[str, int] = {}
    for name in names:
        a = get(name, store=store)
        var = env_variable(a.name)
        if seen.get(var, a.name) != a.name:
            raise UsageError(f"{seen[var]!r} and {a.name!r} would both be ${var}")
        seen[var] = a.name
        result[var] = a.port
    return result
