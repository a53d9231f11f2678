"""Running a command on a name: ``portbook run NAME -- CMD``.

The command gets its name's port in ``PORT`` (and ``PORTBOOK_NAME``), or a
socket already bound on it as systemd's socket activation hands one over
(fd 3, ``LISTEN_FDS=1``, ``LISTEN_FDNAMES``, ``LISTEN_PID`` set to the
command's own pid). The name's port is leased to the command's own process,
so it is held exactly as long as the command runs, even if portbook itself
is killed; a second ``run`` of the name is refused meanwhile, and so is a
``run`` whose port another program holds (the command would only die with
"address in use").
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from ipaddress import ip_address

from portbook._exceptions import (
    CommandError,
    NotFoundError,
    PortbookError,
    PortUnavailableError,
    UsageError,
)
from portbook._machine import ipv6_available
from portbook._ports import Protocol

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Sequence

    from portbook._names.assignments import Assignment
    from portbook._names.leases import Lease
    from portbook._names.store import Store

__all__ = ["bind_activation_socket", "run_on_name"]

_SOCKTYPE = {Protocol.TCP: socket.SOCK_STREAM, Protocol.UDP: socket.SOCK_DGRAM}
# The variables of socket activation: never passed on from portbook's own
# environment, since they would describe descriptors that are not there.
_SOCKET_ENV = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")

# Runs in the child of `portbook run --socket` between fork and the real
# command: only there is the child's own pid known, which LISTEN_PID must
# name. It moves the socket to fd 3 (dup2 makes the copy inheritable) and
# execs the command, which keeps the pid.
_TRAMPOLINE = """\
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as exc:
    sys.stderr.write(f"portbook: error: cannot run {sys.argv[2]!r}: {exc.strerror}\\n")
    os._exit(127)
"""


def _activation_address(host: str | None) -> tuple[str, int]:
    if host is None:
        return ("::", socket.AF_INET6) if ipv6_available() else ("0.0.0.0", socket.AF_INET)
    try:
        parsed = ip_address(host)
    except ValueError:
        raise UsageError(f"expected an IP address to bind, not {host!r}") from None
    return str(parsed), socket.AF_INET6 if parsed.version == 6 else socket.AF_INET


def bind_activation_socket(
    port: int, protocol: Protocol | str = Protocol.TCP, *, host: str | None = None
) -> socket.socket:
    """A socket bound to ``port``, for handing to a server (socket activation).

    Without ``host``, on every address: one socket serves both families where
    the machine has IPv6 (a dual-stack ``::`` socket, IPv4 arriving as
    ``::ffff:a.b.c.d``), because systemd's ``LISTEN_FDS=1`` promises exactly
    one descriptor; elsewhere ``0.0.0.0``. With ``host`` (an IP address), on
    that address only; ``::`` is dual-stack too. A TCP socket is listening
    when returned. Raises :class:`PortUnavailableError` when the port cannot
    be bound, :class:`UsageError` for a ``host`` that is not an IP address.
    """
    proto = Protocol(protocol)
    kind = _SOCKTYPE[proto]
    address, family = _activation_address(host)
    dual = family == socket.AF_INET6 and address == "::"
    sock = socket.socket(family, kind)
    try:
        if dual:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        if kind == socket.SOCK_STREAM:
            # A restarted server must not wait out the TIME-WAIT of its
            # previous run's connections; for TCP this never lets two
            # listeners share the port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(socket.SOMAXCONN)
    except OSError as exc:
        sock.close()
        raise PortUnavailableError(
            f"cannot bind {proto.value}/{port} on {address}: {exc.strerror}",
            port=port,
            protocol=proto.value,
        ) from exc
    return sock


def run_on_name(
    name: str,
    command: Sequence[str],
    *,
    activation: bool = False,
    host: str | None = None,
    store: Store | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> int:
    """Run ``command`` holding ``name``'s port (assigned first if new); its exit status.

    ``activation`` hands the command a bound listening socket on fd 3, on
    ``host`` (default ``127.0.0.1``: a development server is not for the
    network unless asked). The command's status is returned as a shell
    reports it (128+N for signal N). While the command runs, SIGTERM and
    SIGHUP sent to this process are passed on and Ctrl-C is left to the
    command (it reaches the whole foreground process group), so this must
    run in the main thread.

    When the command listens on other ports but not on its own within a
    while (a server that ignores ``$PORT``: ``python3 -m http.server`` takes
    8000), ``on_warning`` is called with a sentence saying so.

    Raises :class:`PortUnavailableError` when another ``run`` holds the name
    or another program holds its port, :class:`CommandError` when the
    command cannot be started, and what :func:`portbook.assign` raises.
    """
    from portbook._names.leases import release_lease
    from portbook._names.names import assign, lease_name, refuse_if_in_use

    if not command:
        raise UsageError("run needs a command after the name: portbook run NAME -- CMD ...")
    a = assign(name, store=store)
    refuse_if_in_use(a)
    _, lease = lease_name(name, store=store)
    try:
        return _run(
            a,
            list(command),
            lease=lease,
            activation=activation,
            host=host,
            store=store,
            on_warning=on_warning,
        )
    finally:
        # `portbook release NAME` during the run has dropped the lease already.
        with contextlib.suppress(NotFoundError):
            release_lease(lease, store=store)


def _run(
    a: Assignment,
    command: list[str],
    *,
    lease: Lease,
    activation: bool,
    host: str | None,
    store: Store | None,
    on_warning: Callable[[str], None] | None,
) -> int:
    """Start the command, hand it the lease, wait for it with signals passed on."""
    import signal
    import subprocess

    from portbook._names.holder import holder_for
    from portbook._names.leases import transfer_lease

    env = {k: v for k, v in os.environ.items() if k not in _SOCKET_ENV}
    env.update(PORT=str(a.port), PORTBOOK_NAME=a.name)
    sock = None
    if activation:
        sock = bind_activation_socket(a.port, a.protocol, host=host or "127.0.0.1")
    argv: list[str] = command
    pass_fds: tuple[int, ...] = ()
    if sock is not None:
        env.update(LISTEN_FDS="1", LISTEN_FDNAMES=a.name)
        argv = [sys.executable, "-I", "-S", "-c", _TRAMPOLINE, str(sock.fileno()), *command]
        pass_fds = (sock.fileno(),)
    try:
        child = subprocess.Popen(argv, env=env, pass_fds=pass_fds)
    except OSError as exc:
        raise CommandError(f"cannot run {command[0]!r}: {exc.strerror}", status=127) from exc
    finally:
        if sock is not None:
            sock.close()  # the child has its own copy
    # The command, not portbook, is what uses the port: the lease now lasts as
    # long as it does. (Its pid and start time stay the same through the
    # trampoline's exec.)
    with contextlib.suppress(PortbookError):  # the child exited already, or a release
        transfer_lease(lease, holder_for(child.pid), store=store)
    if on_warning is not None and not activation:
        _watch_listening(child, a, command[0], on_warning)
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: child.send_signal(signum))
        for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", signal.SIGTERM))
    }
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        status = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status if status >= 0 else 128 - status


# When to look where the command listens: growing pauses, then no more.
_LOOKS = (0.5, 1.0, 1.5, 2.0)  # 5 s in all


def _watch_listening(
    child: subprocess.Popen[bytes], a: Assignment, program: str, warn: Callable[[str], None]
) -> None:
    """In the background, warn once if the command listens elsewhere but not on its port."""
    import threading

    def look() -> None:
        import time

        for pause in _LOOKS:
            time.sleep(pause)
            if child.poll() is not None:
                return
            mine, elsewhere = _listening(child.pid, a)
            if mine:
                return
            if elsewhere and pause == _LOOKS[-1]:
                ports = ", ".join(sorted({str(p) for p in elsewhere}, key=int))
                warn(
                    f"{a.name}: {program} listens on {ports}, not on its port {a.port} "
                    "(does it read $PORT?)"
                )

    threading.Thread(target=look, name="portbook-run-watch", daemon=True).start()


def _listening(pid: int, a: Assignment) -> tuple[bool, list[int]]:
    """(whether the command's process tree listens on its port, the other ports it listens on)."""
    from portbook._exceptions import PortbookError
    from portbook._joined import list_sockets
    from portbook._proc import descendants

    tree = descendants(pid) | {pid}
    try:
        sockets = list_sockets(listening=True, protocols=[a.protocol])
    except PortbookError:
        return True, []  # no table to read: nothing to say
    held = [s for s in sockets if any(p.pid in tree for p in s.processes)]
    return any(s.local_port == a.port for s in held), [s.local_port for s in held]
