"""Wait until ports open (accept connections) or close (are free to bind).

Two ways of noticing, chosen per target:

* A port of **this machine** is watched in the kernel's socket table. Opening
  is the moment a listener appears that the kernel would hand a connection to
  (the ``route`` decision, so ``127.0.0.1:80`` is not satisfied by a listener
  on ``::1`` only); the query asks netlink for LISTEN sockets of one port,
  filtered in the kernel, which is cheap enough to repeat every few
  milliseconds. Nothing connects, so the server under watch never sees a
  probe connection in its logs or its accept queue.
* A port of **another host** can only be probed: connect with a short timeout,
  retrying at an interval that starts small and grows (so a slow start does
  not turn into a flood of SYNs).

``closed`` means *free to bind* on this machine, which is stricter than
refusing connections: any socket still using the port blocks a ``bind()``
without SO_REUSEADDR, including connections in TIME-WAIT left by the old
server. Probing by binding would be exact but would itself hold the port for
a moment and could make the very server that is starting fail, so the table is
read instead. With ``reuseaddr=True`` TIME-WAIT entries do not count (a server
that sets SO_REUSEADDR, as most do, can bind over them). One holder stays
invisible: a TCP socket that is bound but neither listens nor connects is in
no table the kernel reports (only in its bind hash), so it is not waited for.
For another host ``closed`` can only mean "refuses connections".
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from portbook._exceptions import InvalidPortSpecError, UsageError, WaitTimeoutError
from portbook._machine import loopback_index
from portbook._ports import Protocol, parse_host, parse_port_spec
from portbook._record import public, record

if TYPE_CHECKING:
    from portbook._live.backends.base import RawSocket, SocketBackend

__all__ = [
    "WaitTarget",
    "parse_wait_target",
    "wait_for_free",
    "wait_for_port",
]

# How often the local table is read. A LISTEN-only query of one port costs
# well under a millisecond, so 3 ms keeps the delay in single milliseconds
# for a few percent of one core.
LOCAL_INTERVAL = 0.003
# Remote probing: first retry after 10 ms, then 1.5x longer up to 250 ms.
REMOTE_FIRST = 0.010
REMOTE_GROWTH = 1.5
REMOTE_MAX = 0.250
# One connect attempt may take this long before it counts as "not yet".
CONNECT_TIMEOUT = 2.0

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


@record
class WaitTarget:
    """One port to wait for: ``host`` is ``None`` for "any address of this machine"."""

    text: str
    port: int
    host: str | None = None
    protocol: Protocol = Protocol.TCP

    def __str__(self) -> str:
        return self.text


def parse_wait_target(text: str | int, *, host: str | None = None) -> WaitTarget:
    """``8080``, ``:8080``, ``db:5432``, ``[::1]:8080``, ``127.0.0.1:80``, ``udp/53``, ``api``.

    ``host`` (wait-for-it's ``-h``) applies when ``text`` names no host. A
    name is one of yours (or a service of the book with one port).
    """
    raw = str(text)
    if host is not None:
        host = str(parse_host(host))  # wait-for-it's -h: checked as any host is
    spec = parse_port_spec(raw)
    if spec.name is not None:
        from portbook._joined import single_port

        port, protocol = single_port(raw)
        return WaitTarget(
            text=raw if host is None else f"{host}:{port}",
            port=port,
            host=host,
            protocol=protocol or Protocol.TCP,
        )
    if spec.ports is None or not spec.ports.single:
        raise InvalidPortSpecError(raw, "expected [HOST:]PORT with one port number")
    if spec.protocol is not None and spec.protocol not in (Protocol.TCP, Protocol.UDP):
        raise InvalidPortSpecError(raw, "wait knows tcp and udp")
    chosen = host if spec.host is None else str(spec.host)
    shown = raw if chosen is None or spec.host is not None else f"{chosen}:{spec.ports.first}"
    return WaitTarget(
        text=shown,
        port=spec.ports.first,
        host=chosen,
        protocol=spec.protocol or Protocol.TCP,
    )


def _as_targets(targets: Sequence[WaitTarget | str | int], host: str | None) -> list[WaitTarget]:
    if not targets:
        raise UsageError("give at least one port to wait for")
    return [t if isinstance(t, WaitTarget) else parse_wait_target(t, host=host) for t in targets]


def _local_addresses(
    host: str | None,
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address] | None:
    """This machine's addresses ``host`` names; ``None`` when it names another host.

    ``[]`` means "any address" (no host given). An address is this machine's
    when a socket can be bound to it: the kernel's own answer, with no list of
    interfaces to read.
    """
    if host is None:
        return []
    try:
        addrs = [ipaddress.ip_address(host.split("%", 1)[0])]
    except ValueError:
        if host.lower() in _LOCAL_NAMES:
            return [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
        return None  # a name: probed by connecting, whatever it resolves to
    out: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for addr in addrs:
        if addr.is_unspecified or addr.is_loopback or _bindable(addr):
            out.append(addr)
        else:
            return None
    return out


def _bindable(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(addr), 0))
    except OSError:
        return False
    return True


# What stops a bind, as check names it (portbook._tools.check), in words.
_KIND_WORDS = {
    "listener": "listener",
    "connection": "connection",
    "bound": "bound socket",
    "udp": "UDP socket",
    "time-wait": "TIME-WAIT connection",
    "dual-stack": "dual-stack socket",
}


class _Checker:
    """Answers "is this target satisfied now?" for one target."""

    def __init__(self, target: WaitTarget, *, closed: bool, reuseaddr: bool, connect: bool) -> None:
        self.target = target
        self.closed = closed
        self.reuseaddr = reuseaddr
        # connect=True probes even this machine's ports by connecting: a port
        # published by packet filtering (DNAT to a container) has no listener
        # in this machine's table, yet accepts connections.
        self.local = None if connect else _local_addresses(target.host)
        self._backend: SocketBackend | None = None
        self._mask = 0  # kernel state mask of a listener (TCP LISTEN, UDP unconnected)
        self._held: list[str] = []  # the kinds of what stops a bind of the port
        self._failure = ""  # why the last connect failed
        if self.local is None and target.protocol is Protocol.UDP:
            raise UsageError(
                f"{target}: UDP has no connection to probe on another host; "
                "only ports of this machine can be watched for udp"
            )
        self.interval = LOCAL_INTERVAL if self.local is not None else REMOTE_FIRST
        if self.local:
            # Loaded now, not in the moment the listener appears.
            import portbook._live.records
            import portbook._machine
            import portbook._tools.route  # noqa: F401

    # -- this machine ------------------------------------------------------------
    #
    # Polled every few milliseconds, so each poll asks the backend for raw
    # facts of one port (the kernel filters) and builds no records; records
    # (and the route decision) are made only once a listener is there.

    def _query(self, mask: int) -> list[RawSocket]:
        from portbook._live.backends.base import TableQuery
        from portbook._live.table import socket_backend

        if self._backend is None:
            self._backend = socket_backend()
        port = self.target.port
        query = TableQuery(
            protocols=frozenset({self.target.protocol.value}), state_mask=mask, ports=(port, port)
        )
        return list(self._backend.sockets(query))

    def _listen_mask(self) -> int:
        if not self._mask:
            from portbook._live.build import state_mask
            from portbook._live.records import SocketState

            tcp = self.target.protocol is Protocol.TCP
            wanted = SocketState.LISTEN if tcp else SocketState.UNCONN
            self._mask = state_mask([wanted], self.target.protocol)
        return self._mask

    def _local_open(self) -> bool:
        from portbook._live.build import build_sockets
        from portbook._machine import local_ranges
        from portbook._tools.route import Endpoint, RouteRule, route_packet

        raws = self._query(self._listen_mask())
        if not raws:
            return False
        if not self.local:
            return True  # no host given: any listener on this port will do
        # Records straight from the raw facts in hand: no second query, no owner
        # walk and no book lookup (loading the registry would cost more than
        # the whole wait is allowed to take).
        found = build_sockets(raws, scan=None, processes={}, ranges=local_ranges())
        for addr in self.local:
            if addr.is_unspecified:
                return True  # "0.0.0.0:80" means "this machine, port 80"
            dst = Endpoint(addr, self.target.port)
            device = loopback_index()  # from this machine, packets arrive on lo
            if route_packet(self.target.protocol, dst, found, device=device).rule != RouteRule.NONE:
                return True
        return False

    def _local_free(self) -> bool:
        from portbook._live.backends.base import ALL_STATES_MASK

        # The cheap LISTEN query first: while a listener is in the way there is
        # no need to walk every connection of the machine.
        self._held = self._blocking(self._query(self._listen_mask()))
        if not self._held:
            self._held = self._blocking(self._query(ALL_STATES_MASK))
        return not self._held

    def _blocking(self, raws: list[RawSocket]) -> list[str]:
        """The kinds of what stops a bind() of the target's port (check's rule), if anything."""
        if not raws:
            return []
        from ipaddress import ip_address

        from portbook._live.build import build_sockets
        from portbook._machine import local_ranges
        from portbook._ports import Family
        from portbook._tools.check import blockers

        found = build_sockets(raws, scan=None, processes={}, ranges=local_ranges())
        addresses = self.local or [ip_address("0.0.0.0"), ip_address("::")]
        kinds: dict[int, str] = {}  # one reason per socket in the way, the first found
        for address in addresses:
            family = Family(address.version)
            for reason in blockers(
                found, self.target.protocol, family, address, reuseaddr=self.reuseaddr
            ):
                kinds.setdefault(id(reason.socket), reason.kind)
        return list(kinds.values())

    @property
    def blocker(self) -> str:
        """What kept the target from being satisfied at the last check, in words."""
        if self._failure:
            return self._failure
        counts: dict[str, int] = {}
        for kind in self._held:
            counts[kind] = counts.get(kind, 0) + 1
        return ", ".join(
            f"{n} {_KIND_WORDS.get(kind, kind)}{'' if n == 1 else 's'}"
            for kind, n in sorted(counts.items())
        )

    # -- other hosts -------------------------------------------------------------

    def _connects(self, deadline: float) -> bool:
        host = self.target.host or "localhost"
        remaining = max(deadline - time.monotonic(), 0.01)
        try:
            conn = socket.create_connection(
                (host, self.target.port), timeout=min(CONNECT_TIMEOUT, remaining)
            )
        except socket.gaierror as exc:
            self._failure = f"cannot resolve {host}: {exc.strerror}"
            return False
        except OSError as exc:
            self._failure = exc.strerror or type(exc).__name__
            return False
        conn.close()
        self._failure = "still accepts connections"
        return True

    def satisfied(self, deadline: float) -> bool:
        if self.local is not None:
            return self._local_free() if self.closed else self._local_open()
        up = self._connects(deadline)
        return not up if self.closed else up

    def pause(self, deadline: float, stop: threading.Event) -> None:
        stop.wait(max(0.0, min(self.interval, deadline - time.monotonic())))
        if self.local is None:
            self.interval = min(self.interval * REMOTE_GROWTH, REMOTE_MAX)


def _wait(
    targets: list[WaitTarget],
    *,
    timeout: float | None,
    closed: bool,
    reuseaddr: bool,
    connect: bool,
    on_ready: Callable[[WaitTarget, float], None] | None,
) -> float:
    start = time.monotonic()
    deadline = float("inf") if timeout is None else start + max(timeout, 0.0)
    checkers = [_Checker(t, closed=closed, reuseaddr=reuseaddr, connect=connect) for t in targets]
    pending: dict[int, _Checker] = dict(enumerate(checkers))
    lock = threading.Lock()
    stop = threading.Event()  # set when one target failed: the others stop too
    errors: list[BaseException] = []

    def run(index: int, checker: _Checker) -> None:
        try:
            while not stop.is_set():
                if checker.satisfied(deadline):
                    with lock:
                        pending.pop(index, None)
                    if on_ready is not None:
                        on_ready(checker.target, time.monotonic() - start)
                    return
                if time.monotonic() >= deadline:
                    return
                checker.pause(deadline, stop)
        except BaseException as exc:  # re-raised in the caller's thread below
            errors.append(exc)
            stop.set()

    if len(checkers) == 1:
        run(0, checkers[0])
    else:
        # Each target has its own rhythm (a remote connect may block for a
        # while); one thread each keeps a slow host from delaying a local port.
        threads = [
            threading.Thread(target=run, args=(i, c), daemon=True, name=f"wait-{c.target}")
            for i, c in enumerate(checkers)
        ]
        for th in threads:
            th.start()
        try:
            for th in threads:
                th.join()
        finally:
            stop.set()
    if errors:
        raise errors[0]
    if pending:
        names = tuple(str(c.target) for c in pending.values())
        details = [
            f"{c.target} ({c.blocker})" if c.blocker else str(c.target) for c in pending.values()
        ]
        what = "free" if closed else "open"
        waited = "" if timeout is None else f" after {timeout:g}s"
        raise WaitTimeoutError(
            f"not {what}{waited}: {', '.join(details)}",
            pending=names,
        )
    return time.monotonic() - start


def wait_for_port(
    *targets: WaitTarget | str | int,
    timeout: float | None = 30.0,
    host: str | None = None,
    connect: bool = False,
    on_ready: Callable[[WaitTarget, float], None] | None = None,
) -> float:
    """Wait until every target accepts connections; return the seconds waited.

    Targets are ``8080`` (any address of this machine), ``127.0.0.1:8080``,
    ``db.example:5432``, ``udp/53`` or :class:`WaitTarget`. ``host`` applies to
    targets that name none. ``timeout=None`` waits forever. Ports of this
    machine are watched in the socket table unless ``connect=True``, which
    probes by connecting as for other hosts. ``on_ready(target, seconds)`` is
    called as each target is satisfied. Raises
    :class:`~portbook.WaitTimeoutError` naming the targets not ready.
    """
    return _wait(
        _as_targets(targets, host),
        timeout=timeout,
        closed=False,
        reuseaddr=False,
        connect=connect,
        on_ready=on_ready,
    )


def wait_for_free(
    *targets: WaitTarget | str | int,
    timeout: float | None = 30.0,
    host: str | None = None,
    reuseaddr: bool = False,
    connect: bool = False,
    on_ready: Callable[[WaitTarget, float], None] | None = None,
) -> float:
    """Wait until every target is free to bind on this machine; return the seconds waited.

    Free means no socket uses the port at all (listeners, connections,
    TIME-WAIT); ``reuseaddr=True`` ignores TIME-WAIT, as a server setting
    SO_REUSEADDR may. For another host, free means it refuses connections.
    """
    return _wait(
        _as_targets(targets, host),
        timeout=timeout,
        closed=True,
        reuseaddr=reuseaddr,
        connect=connect,
        on_ready=on_ready,
    )


public(WaitTarget)
