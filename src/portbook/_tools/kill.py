"""Free a port: signal exactly the processes that hold it, then watch it being released.

Safety rules, checked before anything is sent: pid 1, portbook's own process
and its ancestors (the shell that ran it, a terminal, an init) are never
signalled; and when any holder cannot be signalled for lack of permission,
nothing at all is signalled, so a port is never left half-freed.

Between listing the holders and signalling them a process may exit and its
pid be reused by an unrelated program. On Linux each holder is first pinned
with a pidfd and checked again to still hold the port; the signal then goes
through the pidfd, which can only ever reach the process that was checked.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from portbook._exceptions import ProcessSignalError, UsageError
from portbook._ports import Protocol, parse_protocol
from portbook._proc import ancestors
from portbook._record import public, record

if TYPE_CHECKING:
    from portbook._live.records import Socket, SocketProcess

__all__ = [
    "KillResult",
    "PortHolder",
    "kill_port",
    "parse_signal",
    "port_holders",
]

# How often the table is read while waiting for the port to be released.
_POLL = 0.01
# After SIGKILL the kernel closes the sockets as the process dies; this long
# is plenty unless the process is stuck in uninterruptible sleep.
_AFTER_KILL = 2.0


@record
class PortHolder:
    """A process that holds the port, with the sockets it holds there.

    ``protected`` says why portbook will never signal it (``None`` when it may).
    """

    process: SocketProcess
    sockets: tuple[Socket, ...]
    protected: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def to_json(self) -> dict[str, Any]:
        return {
            **self.process.to_json(),
            "protected": self.protected,
            "sockets": [
                {
                    "protocol": s.protocol.value,
                    "state": s.state.value,
                    "local_address": str(s.local_address),
                    "local_port": s.local_port,
                }
                for s in self.sockets
            ],
        }


@record
class KillResult:
    """What :func:`kill_port` did.

    ``signalled`` got ``signal``; ``killed`` got SIGKILL afterwards (``force``);
    ``released`` is true when no process holds the port any more (connections
    left in TIME-WAIT belong to the kernel and do not count).
    """

    port: int
    protocol: Protocol | None
    signal: int
    holders: tuple[PortHolder, ...]
    signalled: tuple[int, ...] = ()
    killed: tuple[int, ...] = ()
    released: bool = False
    dry_run: bool = False
    still_held_by: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "protocol": self.protocol.value if self.protocol else None,
            "signal": signal.Signals(self.signal).name,
            "dry_run": self.dry_run,
            "holders": [h.to_json() for h in self.holders],
            "signalled": list(self.signalled),
            "killed": list(self.killed),
            "released": self.released,
            "still_held_by": list(self.still_held_by),
        }


def parse_signal(text: str | int) -> int:
    """``TERM``, ``SIGTERM``, ``sigterm`` or ``15`` -> 15."""
    if isinstance(text, int) or text.strip().isdigit():
        number = int(text)
        try:
            return int(signal.Signals(number))
        except ValueError:
            raise UsageError(f"unknown signal number {number}") from None
    name = text.strip().upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise UsageError(f"unknown signal {text!r}") from None


def _protection(pid: int, mine: set[int]) -> str | None:
    if pid == 1:
        return "pid 1 (init) is never signalled"
    if pid == os.getpid():
        return "portbook itself"
    if pid in mine:
        return "a parent of portbook (signalling it would end this very command)"
    return None


def port_holders(port: int, protocol: Protocol | str | None = None) -> list[PortHolder]:
    """The processes holding exactly local ``port`` (3000 never matches 30001)."""
    from portbook._joined import sockets_on_port

    proto = parse_protocol(protocol) if isinstance(protocol, str) else protocol
    socks = [s for s in sockets_on_port(port, proto, owners=True) if s.local_port == port]
    mine = ancestors(os.getpid())
    by_pid: dict[int, tuple[SocketProcess, list[Socket]]] = {}
    for s in socks:
        for proc in s.processes:
            by_pid.setdefault(proc.pid, (proc, []))[1].append(s)
    return [
        PortHolder(proc, tuple(held), _protection(pid, mine))
        for pid, (proc, held) in sorted(by_pid.items())
    ]


def _unseen_owners(port: int, protocol: Protocol | None) -> list[Socket]:
    """Sockets on the port whose owner this user cannot see (not TIME-WAIT ones)."""
    from portbook._joined import sockets_on_port
    from portbook._live.records import NOTE_NOT_VISIBLE

    return [
        s
        for s in sockets_on_port(port, protocol, owners=True)
        if s.local_port == port and not s.processes and s.owner_note == NOTE_NOT_VISIBLE
    ]


def _held_by(port: int, protocol: Protocol | None, pids: set[int] | None = None) -> set[int]:
    """Processes holding the port now (only those in ``pids`` when given)."""
    from portbook._joined import sockets_on_port

    return {
        p.pid
        for s in sockets_on_port(port, protocol, owners=True)
        if s.local_port == port
        for p in s.processes
        if pids is None or p.pid in pids
    }


class _Pinned:
    """A process pinned by pidfd where the platform has it, by pid elsewhere."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.fd: int | None = None
        pidfd_open: Callable[[int], int] | None = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                self.fd = pidfd_open(pid)
            except OSError:
                self.fd = None  # gone already, or pidfds unavailable (old kernel)

    def send(self, sig: int) -> bool:
        """Send ``sig``; False when the process is gone."""
        sender: Callable[[int, int], None] | None = getattr(signal, "pidfd_send_signal", None)
        try:
            if self.fd is not None and sender is not None:
                sender(self.fd, sig)
            else:
                os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        except PermissionError as exc:
            raise ProcessSignalError(
                f"no permission to signal pid {self.pid} (run as its user or root)", pid=self.pid
            ) from exc
        return True

    def check(self) -> None:
        """Raise :class:`ProcessSignalError` if ``send`` would be refused for permission."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            raise ProcessSignalError(
                f"no permission to signal pid {self.pid} (run as its user or root); "
                "nothing was signalled",
                pid=self.pid,
            ) from exc

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _wait_released(port: int, protocol: Protocol | None, timeout: float) -> set[int]:
    """Wait until no process holds the port; the pids still holding it at the deadline.

    Any process counts, not only those signalled: a child that inherited the
    listening socket keeps the port just as well.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = _held_by(port, protocol)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(_POLL)


def kill_port(
    port: int,
    *,
    protocol: Protocol | str | None = None,
    sig: int | str = signal.SIGTERM,
    timeout: float = 5.0,
    force: bool = False,
    dry_run: bool = False,
    holders: list[PortHolder] | None = None,
) -> KillResult:
    """Signal the processes holding ``port`` and wait until they let it go.

    Refuses (:class:`~portbook.ProcessSignalError`, nothing signalled) when a
    holder is pid 1, this process or one of its ancestors, or cannot be
    signalled for lack of permission, or when the port is held by processes
    this user cannot see. With ``force``, holders still there after
    ``timeout`` seconds get SIGKILL. ``holders`` (from :func:`port_holders`)
    is what the caller showed the user; it is checked again before signalling.
    """
    proto = parse_protocol(protocol) if isinstance(protocol, str) else protocol
    signum = parse_signal(sig) if isinstance(sig, str) else int(sig)
    if timeout < 0:
        raise UsageError("timeout must not be negative")
    found = port_holders(port, proto) if holders is None else holders
    result = KillResult(port, proto, signum, tuple(found), dry_run=dry_run)
    # Protection is decided here again, whatever list the caller passed in.
    mine = ancestors(os.getpid())
    found = [
        h if h.protected else PortHolder(h.process, h.sockets, _protection(h.pid, mine))
        for h in found
    ]
    protected = [h for h in found if h.protected]
    if protected:
        h = protected[0]
        raise ProcessSignalError(
            f"refusing to signal pid {h.pid} ({h.process.name or '?'}): {h.protected}; "
            "nothing was signalled",
            pid=h.pid,
        )
    unseen = _unseen_owners(port, proto)
    if unseen and not found:
        raise ProcessSignalError(
            f"port {port} is held by a process this user cannot see (run as root); "
            "nothing was signalled"
        )
    if not found or dry_run:
        return result
    pinned = [_Pinned(h.pid) for h in found]
    try:
        for p in pinned:
            p.check()
        # Pinned now: a pid that stopped holding the port meanwhile (and may
        # have been reused) is dropped, never signalled.
        still = _held_by(port, proto, {p.pid for p in pinned})
        targets = [p for p in pinned if p.pid in still]
        signalled = tuple(p.pid for p in targets if p.send(signum))
        left = _wait_released(port, proto, timeout)
        killed: tuple[int, ...] = ()
        if left and force and signum != signal.SIGKILL:
            # Only processes that were shown, checked and signalled get SIGKILL;
            # a holder that appeared meanwhile is reported, not killed unseen.
            killed = tuple(p.pid for p in targets if p.pid in left and p.send(signal.SIGKILL))
            left = _wait_released(port, proto, _AFTER_KILL)
    finally:
        for p in pinned:
            p.close()
    return KillResult(
        port,
        proto,
        signum,
        tuple(found),
        signalled=signalled,
        killed=killed,
        released=not left,
        still_held_by=tuple(sorted(left)),
    )


public(KillResult, PortHolder)
