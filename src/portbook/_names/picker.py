"""Picking a free port, and the rules that say what "free" means.

A port handed out by :func:`pick_port` is

1. **bindable right now on every protocol and family asked for.** TCP and
   UDP ports are separate name spaces, and so are IPv4 and IPv6 when
   ``IPV6_V6ONLY`` is set; a program that serves TCP on both families needs
   all of them free, so each (protocol, family) is tried with a real
   ``bind()`` to the wildcard address. The wildcard, because a bind to
   ``0.0.0.0:P`` conflicts with *any* address bound on P, so one bind
   catches a listener on 127.0.0.1 and on every interface address alike.
2. **tried without ``SO_REUSEADDR``.** With it, Linux lets a UDP bind share
   a port that another UDP socket holds, and lets a TCP bind succeed over
   another non-listening socket that also set it: a "free" check done that
   way says yes for ports that are taken. Without it the check is strict:
   it also fails while connections of an earlier server linger in
   TIME-WAIT on the port. That is wanted: a server that does not set
   ``SO_REUSEADDR`` itself would fail to bind such a port for up to a
   minute, so the port is not handed out until the TIME-WAIT is over.
   The probe sockets are closed without ``listen()``/``connect()``, so the
   probe itself leaves no TIME-WAIT behind.
3. **outside the kernel's ephemeral range** (``ip_local_port_range``). The
   kernel hands ports of that range to every outgoing connection and every
   ``bind(port=0)`` at any moment; a port picked there may be taken by an
   unrelated ``connect()`` before the server that wanted it starts. Outside
   the range only programs that bind a fixed number compete.
4. **not in ``ip_local_reserved_ports``**: the administrator's list of
   ports kept for services that start later; portbook keeps its hands off
   them just as the kernel does.
5. **not IANA-assigned** unless ``allow_assigned``: a port with a registered
   service is one that some installed program may expect to own (and that
   scanners and firewalls treat as that service).
6. **not leased to a live holder nor given to a name.** The lease is what
   makes two concurrent picks safe: the free check and the lease are one
   ``BEGIN IMMEDIATE`` transaction in the store, so a second picker waits
   for the first one's commit and then sees its lease. (A bind check alone
   cannot do this: between the check and the server's own ``bind()``,
   another picker's check of the same port also succeeds.)
7. **held while it may still be about to be bound.** A port picked for
   another process (``portbook pick``, ``pick_port(lease_to_parent=True)``)
   is leased to the process that ran the picker (the shell of
   ``A=$(portbook pick)``, of ``sh -c``, of a make recipe or an xargs
   command) for as long as that process lives, *and* for at least
   ``PICK_GRACE`` (60) seconds whatever it does: the shell of a pipe or a
   command substitution exits at once, while the program it hands the
   number to may bind it only a while later. Once bound, the port is taken
   by rule 1 anyway; if nobody binds it, it comes back after the grace.

The lease closes the race between pickers, not against programs that bind a
fixed number unannounced. For that, :func:`bind_free_port` returns a socket
that is *already bound* on the port (bound inside the same transaction), so
no other program can get in between: the caller hands the socket to its
server (or to a child: ``portbook run --socket``) instead of a number.
"""

from __future__ import annotations

import bisect
import errno
import os
import random
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence

from portbook._exceptions import (
    PortUnavailableError,
    RangeExhaustedError,
    UnsupportedError,
    UsageError,
)
from portbook._machine import LocalRanges, ipv6_available, local_ranges
from portbook._names.assignments import name_on_port
from portbook._names.holder import Holder, holder_for, this_process
from portbook._names.leases import Lease, insert_lease, live_lease_on, sweep_expired
from portbook._names.store import Store, default_store
from portbook._ports import Family, PortClass, PortRange, Protocol
from portbook._record import field, public, record

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False

__all__ = [
    "ORPHAN_TTL",
    "PICK_GRACE",
    "PickPolicy",
    "bind_free_port",
    "choose_port",
    "pick_port",
    "probe_free",
]

# Ports below 1024 need privileges to bind, and every one of them is a
# well-known service's: a pick never lands there unless a range asks for it.
DEFAULT_RANGE = PortRange(PortClass.USER.first, PortClass.DYNAMIC.last)

_MAX_TTL = 10 * 366 * 86400.0

AssignedCheck = Callable[[int, Protocol], bool]
FreeCheck = Callable[[int, Sequence[Protocol], Sequence[Family]], bool]
if TYPE_CHECKING:
    from portbook._live.records import SocketProcess

    #: Who holds a port right now: (whether any program does, which processes).
    HolderCheck = Callable[[int, Protocol], tuple[bool, tuple[SocketProcess, ...]]]

# A CLI pick is leased to the process that ran portbook; where that is init
# (pid 1, a container's entry point), a lease to it would never end, so the
# pick is leased for this long instead.
ORPHAN_TTL = 600.0
# The least time a CLI pick keeps its port, whatever its holder does: the
# program that reads the printed number (a server started by make, xargs, a
# script) may bind it only a while after the shell that ran `portbook pick`
# has exited. Longer than any start-up worth waiting for, short enough that
# a port nobody bound comes back soon.
PICK_GRACE = 60.0


def _book_is_assigned() -> AssignedCheck:
    # The policy is how your names reach the other two names. The book is
    # imported when a PickPolicy is made rather than with this module (so
    # `portbook get` never loads it), and its registry data on the first
    # question (so a pick with allow_assigned never reads it).
    from portbook._book.book import is_assigned

    return is_assigned


def _live_holders() -> HolderCheck:
    # The live table likewise, and only when a port cannot be bound.
    from portbook._joined import port_in_use

    return port_in_use


_FAMILY_AF = {Family.INET: socket.AF_INET, Family.INET6: socket.AF_INET6}
_WILDCARD = {Family.INET: "0.0.0.0", Family.INET6: "::"}
_SOCKTYPE = {Protocol.TCP: socket.SOCK_STREAM, Protocol.UDP: socket.SOCK_DGRAM}


def probe_free(port: int, protocols: Sequence[Protocol], families: Sequence[Family]) -> bool:
    """True when ``port`` can be bound right now on every protocol and family given.

    See the module docstring for why the bind is to the wildcard address
    and without ``SO_REUSEADDR``.
    """
    sockets: list[socket.socket] = []
    try:
        for protocol in protocols:
            for family in families:
                sock = socket.socket(_FAMILY_AF[family], _SOCKTYPE[protocol])
                sockets.append(sock)
                if family is Family.INET6:
                    # Without V6ONLY a bind to [::] also takes the IPv4 port
                    # (dual stack), which would make the IPv4 probe above or
                    # below fail against our own probe.
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((_WILDCARD[family], port))
    except OSError:
        return False
    finally:
        for sock in sockets:
            sock.close()
    return True


@record
class PickPolicy:
    """The rules of a pick, as one injectable object.

    ``ranges`` is this machine's ephemeral range and reserved ports,
    ``is_assigned`` the IANA-assignment test (the book), ``is_free`` the bind
    probe, ``holders`` who holds a port (the live table; asked only when
    ``assign --port`` finds the port taken). Tests pass their own to pin the
    ranges or to count probes; everyone else uses :meth:`default`. It is
    the only way your names reach the book and the live table.
    """

    ranges: LocalRanges = field(default_factory=local_ranges)
    is_assigned: AssignedCheck = field(default_factory=_book_is_assigned)
    is_free: FreeCheck = probe_free
    holders: HolderCheck = field(default_factory=_live_holders)

    @classmethod
    def default(cls) -> PickPolicy:
        global _default_policy
        if _default_policy is None:
            _default_policy = cls()
        return _default_policy

    def segments(self, wanted: PortRange) -> list[PortRange]:
        """``wanted`` minus the ephemeral range and the reserved ports, as sorted ranges."""
        cut = [self.ranges.ephemeral, *self.ranges.reserved]
        pieces = [wanted]
        for hole in cut:
            nxt: list[PortRange] = []
            for piece in pieces:
                if hole.last < piece.first or hole.first > piece.last:
                    nxt.append(piece)
                    continue
                if piece.first < hole.first:
                    nxt.append(PortRange(piece.first, hole.first - 1))
                if hole.last < piece.last:
                    nxt.append(PortRange(hole.last + 1, piece.last))
            pieces = nxt
        return sorted(p for p in pieces if p.last > 0)


_default_policy: PickPolicy | None = None


def _candidates(segments: list[PortRange], near: int | None, rng: random.Random) -> Iterator[int]:
    """Allowed ports to try: outward from ``near``, else at random, then all of them.

    Random tries first (rather than always the lowest port) keep pickers
    with different stores, or none, from piling onto the same numbers, and
    skip in a few steps over the long runs of IANA-assigned ports low in
    the range; the sweep after them still visits every port once, so a
    nearly full range is found free or reported exhausted, never missed.
    """
    if not segments:
        return
    firsts = [s.first for s in segments]

    def allowed(port: int) -> bool:
        i = bisect.bisect_right(firsts, port) - 1
        return i >= 0 and port <= segments[i].last

    if near is not None:
        lo, hi = segments[0].first, segments[-1].last
        for step in range(max(near - lo, hi - near) + 1):
            for port in (near + step, near - step) if step else (near,):
                if lo <= port <= hi and allowed(port):
                    yield port
        return
    sizes = [len(s) for s in segments]
    total = sum(sizes)

    def nth(index: int) -> int:
        for seg, size in zip(segments, sizes, strict=True):
            if index < size:
                return seg.first + index
            index -= size
        raise AssertionError("index beyond the segments")  # pragma: no cover

    for _ in range(min(_RANDOM_TRIES, total)):
        yield nth(rng.randrange(total))
    start = rng.randrange(total)
    for offset in range(total):
        yield nth((start + offset) % total)


# Random candidates tried before the exhaustive sweep.
_RANDOM_TRIES = 32


def _normalise(
    protocols: Protocol | str | Sequence[Protocol | str],
    families: Family | int | Sequence[Family | int] | None,
) -> tuple[tuple[Protocol, ...], tuple[Family, ...]]:
    if isinstance(protocols, str | Protocol):
        protocols = [protocols]
    protos = tuple(dict.fromkeys(Protocol(p) for p in protocols))
    if not protos:
        raise UsageError("pick needs at least one protocol")
    for p in protos:
        if p not in _SOCKTYPE:
            raise UsageError(f"portbook picks TCP and UDP ports, not {p.value.upper()}")
    if families is None:
        fams: tuple[Family, ...] = (
            (Family.INET, Family.INET6) if ipv6_available() else (Family.INET,)
        )
    else:
        if isinstance(families, int):
            families = [families]
        fams = tuple(sorted(dict.fromkeys(Family(f) for f in families)))
        if not fams:
            raise UsageError("pick needs at least one address family")
        if Family.INET6 in fams and not ipv6_available():
            raise UnsupportedError("IPv6 is not available on this machine")
    return protos, fams


def choose_port(
    conn: sqlite3.Connection,
    *,
    protocols: Sequence[Protocol],
    families: Sequence[Family],
    port_range: PortRange | None,
    near: int | None,
    allow_assigned: bool,
    policy: PickPolicy,
    claim: Callable[[int], bool] | None = None,
) -> int:
    """Inside a write transaction: the first candidate port that every rule allows.

    ``claim(port)`` replaces the bind probe (``bind_free_port`` binds for
    real). Dead leases met on the way are deleted (reclaimed). Raises
    :class:`RangeExhaustedError` when no port is left.
    """
    now = time.time()
    sweep_expired(conn, now)
    wanted = port_range if port_range is not None else DEFAULT_RANGE
    if near is not None and near not in wanted:
        raise UsageError(f"--near {near} is outside the range {wanted}")
    segments = policy.segments(wanted)
    try_claim = claim or (lambda port: policy.is_free(port, protocols, families))
    rng = random.Random()
    # Each candidate is looked up by its own indexed query rather than by
    # loading every lease and name first: a pick usually succeeds at its first
    # candidate, and the store may hold thousands of leases.
    for port in _candidates(segments, near, rng):
        if not allow_assigned and any(policy.is_assigned(port, p) for p in protocols):
            continue
        if name_on_port(conn, port) is not None:
            continue
        if live_lease_on(conn, port, now) is not None:
            continue  # (a dead lease on it was deleted: reclaimed)
        if try_claim(port):
            return port
    raise RangeExhaustedError(_exhausted_message(wanted, segments, allow_assigned))


def _exhausted_message(wanted: PortRange, segments: list[PortRange], allow_assigned: bool) -> str:
    if not segments:
        return (
            f"no port left in {wanted}: all of it is in this machine's ephemeral range "
            "or reserved ports"
        )
    why = "taken, leased, named" + ("" if allow_assigned else " or IANA-assigned")
    return f"no free port left in {wanted}: every port outside the ephemeral range is {why}"


#: (holder, expires, hold_until) of a new lease.
_Terms = tuple["Holder | None", "float | None", "float | None"]


def _lease_terms(ttl: float | None, holder: Holder | None, to_parent: bool = False) -> _Terms:
    hold_until = None
    if to_parent and holder is None and ttl is None:
        # The picking process exits at once (`portbook pick`); the lease belongs
        # to whoever ran it, the shell or script that reads the port, and is
        # kept at least PICK_GRACE seconds for the program it hands the port
        # to (rule 7 of the module docstring).
        hold_until = time.time() + PICK_GRACE
        parent = os.getppid()
        if parent > 1:
            holder = holder_for(parent)
        else:
            ttl = ORPHAN_TTL
    if ttl is not None:
        # NaN fails both comparisons; the upper bound keeps expiry times
        # representable as dates (JSON shows them as ISO 8601).
        if not 0 < ttl <= _MAX_TTL:
            raise UsageError(f"a lease's TTL must be more than 0 and at most 10 years, not {ttl}")
        return holder, time.time() + ttl, hold_until
    return (holder if holder is not None else this_process()), None, hold_until


def pick_port(
    *,
    protocols: Protocol | str | Sequence[Protocol | str] = Protocol.TCP,
    families: Family | int | Sequence[Family | int] | None = None,
    port_range: PortRange | None = None,
    near: int | None = None,
    allow_assigned: bool = False,
    ttl: float | None = None,
    holder: Holder | None = None,
    store: Store | None = None,
    policy: PickPolicy | None = None,
    lease_to_parent: bool = False,
) -> Lease:
    """Pick a free port and lease it at once.

    By default the port is free for TCP on IPv4 and IPv6 (IPv4 alone where
    the machine has no IPv6) and is leased to the calling process: it stays
    out of every other pick until this process exits or
    :func:`release_lease` is called. With ``ttl`` the lease ends after that
    many seconds instead (and, if ``holder`` is also given, when the holder
    exits, whichever comes first). ``lease_to_parent`` (what ``portbook pick``
    does) leases to the process that started this one instead, or for
    ``ORPHAN_TTL`` seconds when that is init. ``near`` picks the closest
    allowed port to that number; ``port_range`` limits the search (the
    ephemeral range and reserved ports are always left out).

    Raises :class:`RangeExhaustedError` when no port is left,
    :class:`UsageError` for impossible arguments, and :class:`StoreError`
    subclasses when the store cannot be used.
    """
    protos, fams = _normalise(protocols, families)
    return _choose_and_lease(
        store,
        protos,
        fams,
        port_range=port_range,
        near=near,
        allow_assigned=allow_assigned,
        terms=_lease_terms(ttl, holder, lease_to_parent),
        rules=policy or PickPolicy.default(),
    )


def _choose_and_lease(
    store: Store | None,
    protos: tuple[Protocol, ...],
    fams: tuple[Family, ...],
    *,
    port_range: PortRange | None,
    near: int | None,
    allow_assigned: bool,
    terms: _Terms,
    rules: PickPolicy,
    claim: Callable[[int], bool] | None = None,
) -> Lease:
    """Choose a port and lease it in one write transaction: the step both pickers share."""
    holder, expires, hold_until = terms
    with (store or default_store()).write(durable=False) as conn:
        port = choose_port(
            conn,
            protocols=protos,
            families=fams,
            port_range=port_range,
            near=near,
            allow_assigned=allow_assigned,
            policy=rules,
            claim=claim,
        )
        return insert_lease(
            conn,
            port=port,
            protocols=protos,
            families=fams,
            holder=holder,
            expires=expires,
            hold_until=hold_until,
        )


def bind_free_port(
    *,
    protocol: Protocol | str = Protocol.TCP,
    family: Family | int = Family.INET,
    host: str | None = None,
    listen: bool = True,
    backlog: int = 128,
    port_range: PortRange | None = None,
    near: int | None = None,
    allow_assigned: bool = False,
    ttl: float | None = None,
    holder: Holder | None = None,
    store: Store | None = None,
    policy: PickPolicy | None = None,
) -> tuple[socket.socket, Lease]:
    """Pick a free port, bind a socket on it and lease it, all in one transaction.

    The socket is bound to ``host`` (default: the family's wildcard
    address) before the lease is committed, so neither another picker nor
    an unrelated program can take the port between pick and bind. A TCP
    socket is listening when returned unless ``listen=False``. The caller
    owns the socket; the lease lasts as :func:`pick_port`'s does.

    The socket is bound without ``SO_REUSEADDR``: a later bind by someone
    else that sets it still cannot share a listening TCP port, and for UDP
    not setting it is what keeps others from sharing the port at all.

    Raises what :func:`pick_port` raises.
    """
    protos, fams = _normalise(protocol, family)
    proto, fam = protos[0], fams[0]
    terms = _lease_terms(ttl, holder)
    rules = policy or PickPolicy.default()
    bound: list[socket.socket] = []

    def claim(port: int) -> bool:
        # The wildcard probe first: a bind to 127.0.0.1 alone would not see
        # a program bound on another interface address.
        if not rules.is_free(port, protos, fams):
            return False
        sock = socket.socket(_FAMILY_AF[fam], _SOCKTYPE[proto])
        try:
            if fam is Family.INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host if host is not None else _WILDCARD[fam], port))
            if listen and proto is Protocol.TCP:
                sock.listen(backlog)
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False  # taken between probe and bind: try the next port
            raise PortUnavailableError(
                f"cannot bind {host or _WILDCARD[fam]}:{port}: {exc.strerror}", port=port
            ) from exc
        bound.append(sock)
        return True

    try:
        lease = _choose_and_lease(
            store,
            protos,
            fams,
            port_range=port_range,
            near=near,
            allow_assigned=allow_assigned,
            terms=terms,
            rules=rules,
            claim=claim,
        )
    except BaseException:
        for sock in bound:
            sock.close()
        raise
    return bound[0], lease


public(PickPolicy)
