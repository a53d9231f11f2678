"""Free a port: signal exactly the processes that hold it, then watch it being released.

Safety rules, checked before anything is sent:

* pid 1, portbook's own process and its ancestors (the shell that ran it, a
  terminal, an init) are never signalled;
* every holder of every socket on the port must be seen and signallable:
  when one cannot be seen (another user's, without root) or signalled (no
  permission), nothing at all is signalled, so a port is never left
  half-freed and "released" is never said of a port someone still holds;
* a container runtime's helper that holds a published port for a container
  (``docker-proxy``, ``dockerd``, ``conmon``, ``rootlessport``,
  ``slirp4netns``) is never signalled: that would break the container's
  mapping (or stop every container, for ``dockerd``) while the server
  inside runs on. The container is named with the command that stops it;
  ``container=True`` stops it through its runtime's own command line
  (``docker stop``, ``podman stop``, a rootless user's own ``podman``).

Between listing the holders and signalling them a process may exit and its
pid be reused by an unrelated program. On Linux each holder is first pinned
with a pidfd and checked again to still hold the port; the signal then goes
through the pidfd, which can only ever reach the process that was checked.

Holders are signalled as a service manager stops a service: the root of
each process tree first (an nginx master, a gunicorn arbiter), which stops
its own workers; workers still there after a short grace are signalled too.
The port is *released* when the kernel's table shows no socket on it but
TIME-WAIT entries, which belong to the kernel.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable

from portbook._addresses import address_text
from portbook._exceptions import ProcessSignalError, UsageError
from portbook._ports import Protocol, parse_protocol
from portbook._proc import ancestors, parent_pid
from portbook._record import public, record, replace

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portbook._live.containers import Container
    from portbook._live.published import Published
    from portbook._live.records import Socket, SocketProcess

__all__ = ["KillResult", "PortHolder", "kill_port", "parse_signal", "port_holders"]

# Longest --timeout: a kill waits for a port, not for a day.
MAX_TIMEOUT = 3600.0
# After SIGKILL the kernel closes the sockets as the process dies; this long
# is plenty unless the process is stuck in uninterruptible sleep.
_AFTER_KILL = 2.0
# How long the roots of the holders' trees get to stop their children
# before those are signalled too.
_TREE_GRACE = 1.0
# Reading the table while waiting: first after this long, then 1.5x longer
# each time, at most _POLL_MAX (each read walks every process's descriptors).
_POLL_FIRST = 0.02
_POLL_MAX = 0.25


def _socket_json(s: Socket) -> dict[str, Any]:
    return {
        "protocol": s.protocol.value,
        "state": s.state.value,
        "local_address": address_text(s.local_address),
        "local_port": s.local_port,
    }


@record
class PortHolder:
    """A process that holds the port, with the sockets it holds there.

    ``protected`` says why portbook will never signal it (``None`` when it
    may). ``parent`` is the pid of its parent when that is a holder too (the
    process tree: an nginx worker's master); ``also_holds`` its sockets on
    other ports, which stop with it.
    """

    process: SocketProcess
    sockets: tuple[Socket, ...]
    protected: str | None = None
    parent: int | None = None
    also_holds: tuple[Socket, ...] = ()
    published: Published | None = None  #: the container port it holds, for a runtime's helper

    @property
    def pid(self) -> int:
        return self.process.pid

    def to_json(self) -> dict[str, Any]:
        return {
            **self.process.to_json(),
            "protected": self.protected,
            "sockets": [_socket_json(s) for s in self.sockets],
            "parent": self.parent,
            "also_holds": [_socket_json(s) for s in self.also_holds],
            "published": self.published.to_json() if self.published is not None else None,
        }


@record
class KillResult:
    """What :func:`kill_port` did.

    ``signalled`` got ``signal``; ``killed`` got SIGKILL afterwards (``force``);
    ``released`` is true when the kernel's table shows no socket on the port
    (connections left in TIME-WAIT belong to the kernel and do not count);
    ``still_held_by`` lists the processes holding it at the end. ``stopped``
    are the containers stopped through their runtimes (``container=True``).
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
    stopped: tuple[Container, ...] = ()

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
            "stopped": [c.to_json() for c in self.stopped],
        }


def parse_signal(text: str | int) -> int:
    """``TERM``, ``SIGTERM``, ``sigterm`` or ``15`` -> 15 (ASCII digits only)."""
    if isinstance(text, int) or (text.strip().isascii() and text.strip().isdigit()):
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


def check_timeout(timeout: float) -> float:
    """``timeout`` if it is a number of seconds from 0 to :data:`MAX_TIMEOUT`, else UsageError."""
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout)):
        raise UsageError(f"timeout must be a number of seconds, not {timeout!r}")
    if not 0 <= timeout <= MAX_TIMEOUT:
        raise UsageError(f"timeout must be 0 to {MAX_TIMEOUT:g} seconds, not {timeout:g}")
    return float(timeout)


def _protection(pid: int, mine: set[int]) -> str | None:
    if pid == 1:
        return "pid 1 (init) is never signalled"
    if pid == os.getpid():
        return "portbook itself"
    if pid in mine:
        return "a parent of portbook (signalling it would end this very command)"
    return None


def _sockets(port: int, protocol: Protocol | None, *, owners: bool = True) -> list[Socket]:
    """Every socket on exactly local ``port`` (3000 never matches 30001), any address."""
    from portbook._joined import sockets_on_port

    return [s for s in sockets_on_port(port, protocol, owners=owners) if s.local_port == port]


def port_holders(port: int, protocol: Protocol | str | None = None) -> list[PortHolder]:
    """The processes holding exactly local ``port``, as process trees (roots first)."""
    from portbook._joined import list_sockets

    proto = parse_protocol(protocol) if isinstance(protocol, str) else protocol
    everything = list_sockets()  # one read: the port's holders and what else they hold
    on_port = [s for s in everything if s.local_port == port and proto in (None, s.protocol)]
    return _holders(on_port, everything)


def _holders(on_port: list[Socket], everything: list[Socket]) -> list[PortHolder]:
    mine = ancestors(os.getpid())
    by_pid: dict[int, tuple[SocketProcess, list[Socket]]] = {}
    for s in on_port:
        for proc in s.processes:
            by_pid.setdefault(proc.pid, (proc, []))[1].append(s)
    held = {id(s) for s in on_port}
    elsewhere: dict[int, list[Socket]] = {}
    for s in everything:
        if id(s) not in held and s.listening:
            for proc in s.processes:
                if proc.pid in by_pid:
                    elsewhere.setdefault(proc.pid, []).append(s)
    parents = {pid: parent_pid(pid) for pid in by_pid}
    holders = []
    for pid, (proc, socks) in sorted(by_pid.items()):
        published = _published_by(proc, socks)
        holders.append(
            PortHolder(
                proc,
                tuple(socks),
                _protection(pid, mine) or (_helper_protection(proc, published)),
                parents[pid] if parents[pid] in by_pid else None,
                tuple(elsewhere.get(pid, ())),
                published,
            )
        )
    return _tree_order(holders)


# A runtime's helpers that only ever hold ports for containers; dockerd also
# serves its own API, so it is protected only where it holds a published port.
_ALWAYS_HELPERS = frozenset({"docker-proxy", "conmon", "rootlessport", "slirp4netns"})


def _published_by(proc: SocketProcess, sockets: list[Socket]) -> Published | None:
    for s in sockets:
        if s.published is not None and s.published.holder == proc.pid:
            return s.published
    return None


def _helper_protection(proc: SocketProcess, published: Published | None) -> str | None:
    """Why a runtime's helper is never signalled, with what to do instead; ``None`` otherwise."""
    name = proc.name or "?"
    if published is None:
        if name not in _ALWAYS_HELPERS:
            return None
        return (
            f"{name} holds this port for a container (which one cannot be read here); signalling "
            "it would break the container's port, not stop the container: stop the container "
            "with its runtime"
        )
    what = "every container" if name == "dockerd" else "the container's port"
    container = published.container
    if container is None:
        return (
            f"{name} holds this port for a container this user cannot name; signalling it would "
            f"break {what}: stop the container with its runtime"
        )
    return (
        f"{name} holds this port for container {container.name or container.short_id} "
        f"({container.runtime or 'unknown runtime'}); signalling it would break {what} and "
        f"leave the server running: {stop_advice(container)}"
    )


def stop_advice(container: Container) -> str:
    """How to stop ``container``: its runtime's own command (``docker stop web``)."""
    from portbook._live.cgroups import Runtime

    name = container.name or container.id
    if container.pod is not None and container.namespace is not None:
        return (
            f"it belongs to Kubernetes pod {container.pod} in namespace {container.namespace}: "
            f"kubectl delete pod {container.pod} -n {container.namespace} (the kubelet restarts "
            "a container stopped underneath it)"
        )
    if container.runtime is Runtime.DOCKER:
        return f"docker stop {name} (or kill --container)"
    if container.runtime is Runtime.PODMAN:
        if container.uid is not None:
            return f"as user {_user(container.uid)}: podman stop {name} (or kill --container)"
        return f"podman stop {name} (or kill --container)"
    if container.runtime is Runtime.CRIO:
        return f"crictl stop {container.id}"
    return f"nerdctl stop {container.id} (containerd)"


def _user(uid: int) -> str:
    from portbook._proc import user_name

    return user_name(uid) or str(uid)


def _tree_order(holders: list[PortHolder]) -> list[PortHolder]:
    """Each root of the holders' process trees, followed by its descendants (by pid)."""
    children: dict[int | None, list[PortHolder]] = {}
    for h in holders:
        children.setdefault(h.parent, []).append(h)
    ordered: list[PortHolder] = []
    stack = sorted(children.get(None, []), key=lambda h: h.pid, reverse=True)
    while stack:
        h = stack.pop()
        ordered.append(h)
        stack.extend(sorted(children.get(h.pid, []), key=lambda c: c.pid, reverse=True))
    return ordered


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


def _wait_exits(pinned: list[_Pinned], timeout: float) -> None:
    """Sleep until every pinned process has exited or ``timeout`` passed, without polling.

    A pidfd becomes readable when its process exits; without pidfds, sleep.
    """
    import select

    fds = [p.fd for p in pinned if p.fd is not None]
    if not fds:
        time.sleep(min(timeout, _POLL_MAX))
        return
    deadline = time.monotonic() + timeout
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    while fds:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        for fd, _ in poller.poll(left * 1000):
            poller.unregister(fd)
            fds.remove(fd)


def _holding(port: int, protocol: Protocol | None) -> tuple[set[int], bool]:
    """(processes holding the port now, whether any socket but TIME-WAIT is there)."""
    from portbook._live.records import SocketState

    live = [s for s in _sockets(port, protocol) if s.state is not SocketState.TIME_WAIT]
    return _holders_of(live), bool(live)


def _holders_of(sockets: list[Socket]) -> set[int]:
    """The pids holding any of ``sockets`` (a TIME-WAIT socket has none to add)."""
    return {p.pid for s in sockets for p in s.processes}


def _wait_released(
    port: int, protocol: Protocol | None, pinned: list[_Pinned], timeout: float
) -> tuple[set[int], bool]:
    """Wait until the port is free; (pids still holding it, still held) at the end.

    First for the signalled processes to exit (pidfds: no polling), then, as
    a child that inherited the socket holds the port just as well, the table
    is read with a growing pause until it shows the port free.
    """
    deadline = time.monotonic() + timeout
    _wait_exits(pinned, timeout)
    pause = _POLL_FIRST
    # Polled without the owner walk (the kernel's table alone says whether
    # the port is free); who still holds it is read once, at the end.
    while _still_held(port, protocol):
        left = deadline - time.monotonic()
        if left <= 0:
            return _holding(port, protocol)
        time.sleep(min(pause, left))
        pause = min(pause * 1.5, _POLL_MAX)
    return set(), False


def _still_held(port: int, protocol: Protocol | None) -> bool:
    """Whether any socket but TIME-WAIT is on the port: one filtered read, no owner walk."""
    from portbook._live.records import SocketState

    return any(s.state is not SocketState.TIME_WAIT for s in _sockets(port, protocol, owners=False))


def _refuse_protected(found: list[PortHolder]) -> None:
    """Raise when any holder must not be signalled (pid 1, an ancestor, a runtime's helper...)."""
    for h in found:
        if h.protected:
            raise ProcessSignalError(
                f"refusing to signal pid {h.pid} ({h.process.name or '?'}): {h.protected}; "
                "nothing was signalled",
                pid=h.pid,
            )


def _refuse_unseen(now: list[Socket], port: int) -> None:
    """Raise when a socket on the port (``now``: a fresh read) has a holder nobody can see."""
    from portbook._live.records import SocketState

    unseen = [
        s for s in now if not s.processes and s.state is not SocketState.TIME_WAIT and s.inode
    ]
    if unseen:
        where = address_text(unseen[0].local_address)
        raise ProcessSignalError(
            f"port {port} is also held on {where} by a process this user cannot see "
            f"({unseen[0].owner_note}); nothing was signalled"
        )


def kill_port(
    port: int,
    *,
    protocol: Protocol | str | None = None,
    sig: int | str = signal.SIGTERM,
    timeout: float = 5.0,
    force: bool = False,
    dry_run: bool = False,
    holders: list[PortHolder] | None = None,
    container: bool = False,
) -> KillResult:
    """Signal the processes holding ``port`` and wait until the kernel shows it free.

    Refuses (:class:`~portbook.ProcessSignalError`, nothing signalled) when a
    holder is pid 1, this process or one of its ancestors, a container
    runtime's helper holding the port for a container, cannot be signalled
    for lack of permission, or cannot be seen at all. Roots of the holders'
    process trees are signalled first. With ``force``, holders still there
    after ``timeout`` seconds get SIGKILL. ``holders`` (from
    :func:`port_holders`) is what the caller showed the user; protection and
    the holding itself are checked again before anything is signalled.

    ``container=True`` frees a published port by stopping its containers
    through their runtimes' commands (``docker stop -t TIMEOUT``, ``podman
    stop``, as the container's user for rootless Podman), never by a signal;
    every holder must then be such a helper.
    """
    proto = parse_protocol(protocol) if isinstance(protocol, str) else protocol
    signum = parse_signal(sig) if isinstance(sig, str) else int(sig)
    wait = check_timeout(timeout)
    found = port_holders(port, proto) if holders is None else holders
    if container:
        return _stop_containers(port, proto, signum, found, timeout=wait, dry_run=dry_run)
    mine = ancestors(os.getpid())
    found = [h if h.protected else replace(h, protected=_protection(h.pid, mine)) for h in found]
    _refuse_protected(found)
    if not found or dry_run:
        _refuse_unseen(_sockets(port, proto), port)
        return KillResult(port, proto, signum, tuple(found), dry_run=dry_run)
    pinned = {h.pid: _Pinned(h.pid) for h in found}
    try:
        for p in pinned.values():
            p.check()
        # One read, after pinning, both refuses an unseen holder and says who
        # of the pinned still holds the port (each read walks every process).
        now = _sockets(port, proto)
        _refuse_unseen(now, port)
        signalled, killed, left, held = _signal_and_wait(
            port, proto, found, pinned, _holders_of(now), signum=signum, timeout=wait, force=force
        )
    finally:
        for p in pinned.values():
            p.close()
    return KillResult(
        port,
        proto,
        signum,
        tuple(found),
        signalled=signalled,
        killed=killed,
        released=not held,
        still_held_by=tuple(sorted(left)),
    )


def _signal_and_wait(
    port: int,
    proto: Protocol | None,
    found: list[PortHolder],
    pinned: dict[int, _Pinned],
    still: set[int],
    *,
    signum: int,
    timeout: float,
    force: bool,
) -> tuple[tuple[int, ...], tuple[int, ...], set[int], bool]:
    """(signalled, killed, still holding, still held): the signals and the waits.

    ``still`` are the pids holding the port, read after ``pinned`` were: a
    pid that stopped holding it meanwhile (and may have been reused) is
    dropped, never signalled.
    """
    roots = [pinned[h.pid] for h in found if h.pid in still and h.parent is None]
    rest = [pinned[h.pid] for h in found if h.pid in still and h.parent is not None]
    signalled = [p.pid for p in roots if p.send(signum)]
    if rest:
        # The roots stop their own children; those still holding after a
        # short grace are signalled too.
        _wait_exits(rest, min(_TREE_GRACE, timeout))
        still, _ = _holding(port, proto)
        signalled += [p.pid for p in rest if p.pid in still and p.send(signum)]
    targets = roots + rest
    left, held = _wait_released(port, proto, targets, timeout)
    killed: list[int] = []
    if held and force and signum != signal.SIGKILL:
        # Only processes that were shown, checked and signalled get SIGKILL;
        # a holder that appeared meanwhile is reported, not killed unseen.
        killed = [p.pid for p in targets if p.pid in left and p.send(signal.SIGKILL)]
        left, held = _wait_released(port, proto, targets, _AFTER_KILL)
    return tuple(signalled), tuple(killed), left, held


def _stop_containers(
    port: int,
    proto: Protocol | None,
    signum: int,
    found: list[PortHolder],
    *,
    timeout: float,
    dry_run: bool,
) -> KillResult:
    """``kill_port(container=True)``: stop the containers behind the port, then wait for it."""
    containers: list[Container] = []
    for h in found:
        target = h.published.container if h.published is not None else None
        if target is None:
            raise ProcessSignalError(
                f"pid {h.pid} ({h.process.name or '?'}) holds the port for no container portbook "
                "can name; nothing was stopped",
                pid=h.pid,
            )
        if target not in containers:
            containers.append(target)
    commands = [_stop_command(c, timeout) for c in containers]  # refuses before stopping any
    if not found or dry_run:
        return KillResult(port, proto, signum, tuple(found), dry_run=dry_run)
    for c, argv in zip(containers, commands, strict=True):
        _run_stop(c, argv, timeout)
    left, held = _wait_released(port, proto, [], timeout + _AFTER_KILL)
    return KillResult(
        port,
        proto,
        signum,
        tuple(found),
        released=not held,
        still_held_by=tuple(sorted(left)),
        stopped=tuple(containers),
    )


def _stop_command(container: Container, timeout: float) -> list[str]:
    """The runtime command that stops ``container`` (its own user's, for rootless Podman)."""
    import shutil

    from portbook._live.cgroups import Runtime

    if container.runtime not in (Runtime.DOCKER, Runtime.PODMAN) or container.pod is not None:
        raise ProcessSignalError(
            f"portbook stops Docker and Podman containers only; "
            f"{container.name or container.id}: {stop_advice(container)}"
        )
    tool = "docker" if container.runtime is Runtime.DOCKER else "podman"
    path = shutil.which(tool) or shutil.which(tool, path="/usr/bin:/usr/local/bin")
    if path is None:
        raise ProcessSignalError(f"{tool} is not installed here: cannot stop {container.id}")
    argv = [path, "stop", "-t", str(math.ceil(timeout)), container.id]
    if container.uid is None or container.uid == os.geteuid():
        return argv
    if os.geteuid() != 0:
        raise ProcessSignalError(
            f"container {container.name or container.id} belongs to user "
            f"{_user(container.uid)}'s own Podman: run portbook as that user (or root)"
        )
    import pwd

    entry = pwd.getpwuid(container.uid)
    runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
    if runuser is None:
        raise ProcessSignalError("runuser is not installed: cannot run that user's podman")
    environment = [f"HOME={entry.pw_dir}", f"XDG_RUNTIME_DIR=/run/user/{container.uid}"]
    return [runuser, "-u", entry.pw_name, "--", "env", *environment, *argv]


def _run_stop(container: Container, argv: list[str], timeout: float) -> None:
    import subprocess

    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout + 60, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ProcessSignalError(f"{argv[0]} failed: {exc}") from exc
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise ProcessSignalError(f"could not stop {container.name or container.id}: {why}")


public(KillResult, PortHolder)
