"""A socket fixture for the live-table benchmark: N loopback sockets held by a few processes.

``LiveFixture(total)`` starts ``processes`` worker processes (4 by default) that
between them open exactly ``total`` sockets on loopback and hold them until the
fixture is closed:

- a few TCP listeners per worker (one of them on ``::1`` when IPv6 works),
- a few UDP sockets per worker (half of them connected),
- and for the rest established TCP pairs: each worker connects to its own
  listeners and accepts as it goes, so it holds both ends of every pair.

With ``unowned=True`` one more TCP listener is held by no process at all: its
only reference is a descriptor in flight in a Unix socket message that nobody
receives. Finding owners then means reading every process's open files, as it
does on any real machine where an old process (an init that listens for
socket activation, a long-running daemon) holds a socket; without it, the
fixture's workers, the newest processes, hold every socket, and an owner walk
that stops once all are found never reads the rest of the machine.

Standalone, it opens the sockets and holds them until Enter, end of input,
Ctrl-C or SIGTERM, which is handy for profiling by hand::

    python bench/live_fixture.py --sockets 20000 --netns

Limits met on the way, and how they are handled:

- Open files: every socket is a file descriptor, so each worker raises
  RLIMIT_NOFILE to what it needs. Only root may raise the hard limit, and never
  above ``fs.nr_open``; ``fs.file-max`` caps the whole machine.
- Local ports: every client socket takes a local port, and a (source address,
  destination address:port) pair offers only the ephemeral range (about 28,000
  ports by default). Clients are spread over every listener port and over
  16 source addresses in 127.0.0.0/8 (all of it is loopback on Linux), with
  ``IP_BIND_ADDRESS_NO_PORT`` so that binding the source address does not
  reserve a port on its own: the port is picked at ``connect()`` time, when the
  kernel knows the full 4-tuple and may reuse a port for another destination.
- Listen backlog: ``somaxconn`` caps it, and on loopback a full accept queue
  drops the SYN, which costs the client a one-second retransmission. Workers
  connect in batches much smaller than the backlog and accept each batch before
  the next.
- Teardown: client sockets are closed with ``SO_LINGER`` set to zero, which
  resets the connection instead of leaving 25,000 TIME-WAIT sockets behind for
  a minute. Workers run in their own process group (a Ctrl-C in the terminal reaches
  only the parent, which then stops them), stop when their standard input
  closes (the parent died or is done) and ask the kernel for SIGKILL should
  the parent die without closing it.

With ``netns=True`` (root only) the parent first moves itself into a network
namespace of its own (``enter_private_netns``), so the fixture's sockets fill
neither the machine's socket table nor its ephemeral ports; every process the
caller starts afterwards, ``ss`` and ``portbook`` included, sees that
namespace's table.
"""

from __future__ import annotations

import argparse  # noqa: TID251  (a bench script, not the library)
import contextlib
import ctypes
import fcntl
import json
import os
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from portbook import ipv6_available as ipv6_loopback_works

__all__ = [
    "FixtureError",
    "LiveFixture",
    "WorkerPlan",
    "enter_private_netns",
    "ipv6_loopback_works",
    "plan_sockets",
]

LISTENERS_PER_WORKER = 4
UDP_PER_WORKER = 4
SOURCE_ADDRESSES = 16  # 127.0.0.1 .. 127.0.0.16 as client source addresses
BATCH = 128  # connects between two rounds of accept(); far below any backlog
BACKLOG = 1024
FD_MARGIN = 64  # stdio, pipes, the interpreter's own files

# Linux values; the socket module lacks some names on some Python versions.
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


class FixtureError(RuntimeError):
    """The fixture could not open, or hold, the sockets it was asked for."""


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """What one worker opens: ``listeners + udp + 2 * pairs + unowned`` sockets in all."""

    listeners: int
    ipv6_listeners: int
    udp: int
    pairs: int
    unowned: int = 0

    @property
    def sockets(self) -> int:
        return self.listeners + self.udp + 2 * self.pairs + self.unowned


def plan_sockets(
    total: int, processes: int = 4, ipv6: bool = True, unowned: bool = False
) -> list[WorkerPlan]:
    """Split ``total`` sockets over ``processes`` workers, exactly.

    Each worker gets a few listeners (one on ``::1`` when ``ipv6``) and a few
    UDP sockets; the rest of its share goes to established pairs, and an odd
    socket left over becomes one more UDP socket. With ``unowned`` the first
    worker also leaves one listener in flight (see the module docstring).
    """
    if processes < 1:
        raise FixtureError("the fixture needs at least one process")
    fixed = LISTENERS_PER_WORKER + UDP_PER_WORKER
    if total < processes * fixed + unowned:
        least = processes * fixed + unowned
        raise FixtureError(f"at least {least} sockets for {processes} processes")
    plans = []
    for index in range(processes):
        share = total // processes + (1 if index < total % processes else 0)
        extra = 1 if unowned and index == 0 else 0
        pairs, odd = divmod(share - fixed - extra, 2)
        plans.append(
            WorkerPlan(
                listeners=LISTENERS_PER_WORKER,
                ipv6_listeners=1 if ipv6 else 0,
                udp=UDP_PER_WORKER + odd,
                pairs=pairs,
                unowned=extra,
            )
        )
    return plans


def enter_private_netns() -> None:
    """Move this process into a new network namespace and bring its loopback up.

    Only root may do it. Children started afterwards inherit the namespace,
    and it disappears with the last process in it, so nothing is left to clean.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise FixtureError(f"cannot create a network namespace: {os.strerror(err)}")
    # A new namespace has only "lo", and it is down.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ctl:
        request = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(ctl, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(ctl, _SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | _IFF_UP))


def raise_nofile(needed: int) -> None:
    """Raise RLIMIT_NOFILE to at least ``needed``, or say plainly why it cannot be."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        nr_open = _read_int("/proc/sys/fs/nr_open")
        if nr_open is not None and needed > nr_open:
            raise FixtureError(f"{needed} open files exceed fs.nr_open ({nr_open})")
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
        except (ValueError, OSError) as exc:
            raise FixtureError(
                f"{needed} open files exceed the hard limit {hard} (only root can raise it)"
            ) from exc
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def check_file_max(total: int) -> None:
    """Refuse early when the whole machine cannot hold ``total`` more open files."""
    text = _read_text("/proc/sys/fs/file-nr")
    if text is None:
        return
    allocated, _, file_max = (int(x) for x in text.split())
    if allocated + total + 1000 > file_max:
        raise FixtureError(
            f"{total} more open files would exceed fs.file-max ({file_max}, {allocated} in use)"
        )


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _read_int(path: str) -> int | None:
    text = _read_text(path)
    return int(text.split()[0]) if text else None


class LiveFixture:
    """``total`` loopback sockets over ``processes`` worker processes, held until closed.

    Use as a context manager. After ``__enter__``: ``pids`` (the workers),
    ``tcp_listeners`` (``(address, port)`` of every TCP listener, IPv4 ones
    first), ``unowned_port`` (the listener no process holds, with ``unowned``)
    and ``sockets`` (how many the workers report holding, == ``total``).
    """

    def __init__(
        self,
        total: int,
        processes: int = 4,
        ipv6: bool | None = None,
        unowned: bool = False,
        ready_timeout: float | None = None,
    ) -> None:
        self.total = total
        use_ipv6 = ipv6_loopback_works() if ipv6 is None else ipv6
        self.plans = plan_sockets(total, processes, use_ipv6, unowned)
        self.ready_timeout = ready_timeout if ready_timeout is not None else 60 + total / 250
        self.pids: list[int] = []
        self.tcp_listeners: list[tuple[str, int]] = []
        self.unowned_port: int | None = None
        self.sockets = 0
        self.build_seconds = 0.0
        self._procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> LiveFixture:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        check_file_max(self.total)
        started = time.monotonic()
        for plan in self.plans:
            argv = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--worker",
                json.dumps(asdict(plan)),
                "--parent",
                str(os.getpid()),
            ]
            # Own process group: a Ctrl-C in the terminal goes to the parent alone,
            # which then stops the workers in order (close() below).
            self._procs.append(
                subprocess.Popen(
                    argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
                )
            )
        reports = self._read_reports(started + self.ready_timeout)
        self.build_seconds = time.monotonic() - started
        v4: list[tuple[str, int]] = []
        v6: list[tuple[str, int]] = []
        for report in reports:
            for host, port in report["listeners"]:
                (v6 if ":" in host else v4).append((host, port))
            self.sockets += report["sockets"]
            if report["unowned"] is not None:
                self.unowned_port = report["unowned"]
        self.tcp_listeners = v4 + v6
        self.pids = [proc.pid for proc in self._procs]
        if self.sockets != self.total:
            raise FixtureError(f"workers hold {self.sockets} sockets, not {self.total}")

    def _read_reports(self, deadline: float) -> list[dict[str, Any]]:
        reports: dict[int, dict[str, Any]] = {}
        buffers: dict[int, bytes] = {}
        with selectors.DefaultSelector() as sel:
            for index, proc in enumerate(self._procs):
                assert proc.stdout is not None
                sel.register(proc.stdout, selectors.EVENT_READ, index)
                buffers[index] = b""
            while len(reports) < len(self._procs):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FixtureError(
                        f"workers not ready after {self.ready_timeout:.0f} s "
                        f"({len(reports)} of {len(self._procs)} ready)"
                    )
                for key, _ in sel.select(left):
                    index = key.data
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        status = self._procs[index].wait()
                        raise FixtureError(f"worker {index} exited ({status}) before ready")
                    buffers[index] += chunk
                    if b"\n" in buffers[index]:
                        sel.unregister(key.fileobj)
                        report = json.loads(buffers[index].split(b"\n", 1)[0])
                        if "error" in report:
                            raise FixtureError(f"worker {index}: {report['error']}")
                        reports[index] = report
        return [reports[i] for i in range(len(self._procs))]

    def close(self, timeout: float = 60) -> None:
        """Stop every worker (they close their sockets); kill any that will not stop."""
        for proc in self._procs:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        deadline = time.monotonic() + timeout
        for proc in self._procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self._procs = []


# ---------------------------------------------------------------------------
# Worker side


def _worker(plan: WorkerPlan, parent: int) -> int:
    # Die with the parent even if it is killed outright (no chance to close
    # our stdin); re-check the parent afterwards, as it may already be gone.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        return 1
    held: list[socket.socket] = []
    clients: list[socket.socket] = []
    unix: list[socket.socket] = []
    try:
        raise_nofile(plan.sockets + FD_MARGIN)
        started = time.monotonic()
        listeners = _open_listeners(plan, held)
        _open_udp(plan, held)
        unowned = _open_unowned(unix) if plan.unowned else None
        _open_pairs(plan, listeners, held, clients)
        report = {
            "pid": os.getpid(),
            "listeners": [list(s.getsockname()[:2]) for s in listeners],
            "unowned": unowned,
            "sockets": len(held) + len(clients) + (unowned is not None),
            "seconds": round(time.monotonic() - started, 3),
        }
        sys.stdout.write(json.dumps(report) + "\n")
        sys.stdout.flush()
        # Hold everything until the parent closes our stdin (or dies).
        while sys.stdin.buffer.read(4096):
            pass
        return 0
    except (OSError, FixtureError) as exc:
        sys.stdout.write(json.dumps({"error": str(exc)}) + "\n")
        sys.stdout.flush()
        return 1
    finally:
        # RST instead of FIN: no TIME-WAIT sockets left behind on either side.
        linger = struct.pack("ii", 1, 0)
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            sock.close()
        for sock in held:
            sock.close()
        # Closing the receiving end drops the message, and with it the last
        # reference to the unowned listener.
        for sock in unix:
            sock.close()


def _open_listeners(plan: WorkerPlan, held: list[socket.socket]) -> list[socket.socket]:
    backlog = min(BACKLOG, _read_int("/proc/sys/net/core/somaxconn") or 128)
    listeners = []
    for index in range(plan.listeners):
        v6 = index >= plan.listeners - plan.ipv6_listeners
        sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM)
        held.append(sock)
        sock.bind(("::1" if v6 else "127.0.0.1", 0))
        sock.listen(backlog)
        listeners.append(sock)
    return listeners


def _open_udp(plan: WorkerPlan, held: list[socket.socket]) -> None:
    first: tuple[str, int] | None = None
    for index in range(plan.udp):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        held.append(sock)
        sock.bind(("127.0.0.1", 0))
        if first is None:
            first = sock.getsockname()
        elif index % 2:
            sock.connect(first)  # a connected UDP socket has a remote address


def _open_unowned(unix: list[socket.socket]) -> int:
    """Leave one TCP listener held only by an unreceived SCM_RIGHTS message; its port."""
    sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    unix += [sender, receiver]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port: int = listener.getsockname()[1]
        socket.send_fds(sender, [b"x"], [listener.fileno()])
    return port


def _open_pairs(
    plan: WorkerPlan,
    listeners: list[socket.socket],
    held: list[socket.socket],
    clients: list[socket.socket],
) -> None:
    targets = [(s.family, s.getsockname()[:2]) for s in listeners]
    for start in range(0, plan.pairs, BATCH):
        pending = [0] * len(listeners)
        for number in range(start, min(start + BATCH, plan.pairs)):
            which = number % len(listeners)
            family, address = targets[which]
            sock = socket.socket(family, socket.SOCK_STREAM)
            clients.append(sock)
            if family == socket.AF_INET:
                source = 1 + (number // len(listeners)) % SOURCE_ADDRESSES
                sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((f"127.0.0.{source}", 0))
            sock.connect(address)
            pending[which] += 1
        for which, count in enumerate(pending):
            listeners[which].settimeout(30)
            for _ in range(count):
                conn, _ = listeners[which].accept()
                held.append(conn)


# ---------------------------------------------------------------------------
# Command line


def _hold_until_stopped(fixture: LiveFixture) -> None:
    print(
        f"{fixture.sockets} sockets held by pids {' '.join(map(str, fixture.pids))} "
        f"(opened in {fixture.build_seconds:.1f} s)"
    )
    print(f"TCP listeners: {' '.join(f'{h}:{p}' for h, p in fixture.tcp_listeners)}")
    if fixture.unowned_port is not None:
        print(f"Held by no process: TCP listener 127.0.0.1:{fixture.unowned_port}")
    print(f"In the same network namespace: nsenter --net=/proc/{os.getpid()}/ns/net COMMAND")
    print("Enter, end of input, Ctrl-C or SIGTERM closes them.", flush=True)
    with contextlib.suppress(KeyboardInterrupt, EOFError):
        sys.stdin.readline()


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sockets", type=int, default=1000, help="how many (default 1000)")
    parser.add_argument("--processes", type=int, default=4, help="worker processes (default 4)")
    parser.add_argument("--no-ipv6", action="store_true", help="IPv4 listeners only")
    parser.add_argument(
        "--unowned", action="store_true", help="add one TCP listener that no process holds"
    )
    parser.add_argument(
        "--netns", action="store_true", help="in a network namespace of its own (root)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--parent", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        # A Ctrl-C is for the parent; the worker stops when its stdin closes.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return _worker(WorkerPlan(**json.loads(args.worker)), args.parent)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if args.netns:
            enter_private_netns()
        with LiveFixture(
            args.sockets,
            args.processes,
            ipv6=False if args.no_ipv6 else None,
            unowned=args.unowned,
        ) as fixture:
            _hold_until_stopped(fixture)
    except FixtureError as exc:
        print(f"live_fixture: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def iter_fds(pid: int) -> Iterator[str]:
    """The targets of ``/proc/PID/fd/*`` (``socket:[INODE]`` for sockets)."""
    base = Path(f"/proc/{pid}/fd")
    for entry in base.iterdir():
        with contextlib.suppress(OSError):
            yield os.readlink(entry)


if __name__ == "__main__":
    raise SystemExit(main())
