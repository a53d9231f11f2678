"""Commands of your names: pick, assign, get, release, names, run, env."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from portbook._cli._output import Output

if TYPE_CHECKING:
    from portbook import Assignment, Store

# Without --ttl and with no parent process to hold it (the parent is init, as
# for a command run straight by a container's entry point), a CLI pick is
# leased for this many seconds instead.
ORPHAN_TTL = 600.0

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

_SOCKET_ENV = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


def _store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="PATH",
        help="names database file (default: $PORTBOOK_STORE, else the user data directory)",
    )


def register(subparsers: Any) -> None:
    pick = subparsers.add_parser(
        "pick",
        help="a free port, leased at once so no concurrent pick gets it",
        description=(
            "Print a port that is free on every protocol and family asked for, outside this "
            "machine's ephemeral range and reserved ports, not IANA-assigned, and lease it: "
            "to the calling (parent) process until it exits, or for --ttl seconds."
        ),
    )
    proto = pick.add_mutually_exclusive_group()
    proto.add_argument(
        "--tcp", dest="protocols", action="store_const", const=("tcp",), help="free on TCP"
    )
    proto.add_argument(
        "--udp", dest="protocols", action="store_const", const=("udp",), help="free on UDP"
    )
    proto.add_argument(
        "--both",
        dest="protocols",
        action="store_const",
        const=("tcp", "udp"),
        help="free on TCP and UDP (default: TCP only)",
    )
    fam = pick.add_mutually_exclusive_group()
    fam.add_argument("-4", dest="families", action="store_const", const=(4,), help="IPv4 only")
    fam.add_argument("-6", dest="families", action="store_const", const=(6,), help="IPv6 only")
    fam.add_argument(
        "--dual",
        dest="families",
        action="store_const",
        const=(4, 6),
        help="IPv4 and IPv6 (the default where the machine has IPv6)",
    )
    pick.add_argument("--range", metavar="LO-HI", help="pick inside this range")
    pick.add_argument("--near", metavar="PORT", help="the allowed port closest to PORT")
    pick.add_argument(
        "--ttl",
        metavar="SECONDS",
        type=float,
        help="lease for this long instead of for the life of the calling process",
    )
    pick.add_argument(
        "--allow-assigned", action="store_true", help="IANA-assigned ports may be picked too"
    )
    pick.add_argument("--json", action="store_true", help="print JSON for programs")
    _store_option(pick)
    pick.set_defaults(handler=run_pick, protocols=("tcp",), families=None)

    assign = subparsers.add_parser(
        "assign",
        help="a stable port for NAME (the same on every call until released)",
        description=(
            "Give NAME a port and print it; the same port on every later call until "
            "'portbook release NAME'. --port asks for a port (refused, with the reason, "
            "when another name, a lease or a running program holds it)."
        ),
    )
    assign.add_argument("name", metavar="NAME")
    assign.add_argument("--port", metavar="P", help="this port and no other")
    assign.add_argument("--proto", metavar="P", help="tcp (default) or udp")
    assign.add_argument("--range", metavar="LO-HI", help="choose inside this range")
    assign.add_argument("--near", metavar="PORT", help="the allowed port closest to PORT")
    assign.add_argument(
        "--allow-assigned", action="store_true", help="IANA-assigned ports may be chosen too"
    )
    assign.add_argument("--json", action="store_true", help="print JSON for programs")
    _store_option(assign)
    assign.set_defaults(handler=run_assign)

    get = subparsers.add_parser("get", help="the port of NAME", description="Print NAME's port.")
    get.add_argument("name", metavar="NAME")
    get.add_argument("--json", action="store_true", help="print JSON for programs")
    _store_option(get)
    get.set_defaults(handler=run_get)

    release = subparsers.add_parser(
        "release", help="forget NAME and free its port", description="Forget NAME's port."
    )
    release.add_argument("name", metavar="NAME")
    release.add_argument("--json", action="store_true", help="print JSON for programs")
    _store_option(release)
    release.set_defaults(handler=run_release)

    names = subparsers.add_parser(
        "names",
        help="your names, their ports, and who listens on them now",
        description=(
            "List every name with its port and whether a program listens on it right now. "
            "--export prints all names as JSON; --import FILE adds the names of such a file "
            "or of port-for's INI file (all or nothing; '-' reads standard input)."
        ),
    )
    mode = names.add_mutually_exclusive_group()
    mode.add_argument("--export", action="store_true", help="print all names as JSON")
    mode.add_argument("--import", dest="import_file", metavar="FILE", help="add names from FILE")
    names.add_argument("--json", action="store_true", help="print JSON for programs")
    _store_option(names)
    names.set_defaults(handler=run_names)

    run = subparsers.add_parser(
        "run",
        help="run a command with NAME's port in $PORT, holding it while it runs",
        description=(
            "Run CMD with PORT and PORTBOOK_NAME in its environment (NAME gets a port first "
            "if it has none), holding NAME's port while CMD runs. --socket also hands CMD a "
            "bound listening socket as systemd does: fd 3, LISTEN_FDS=1, LISTEN_PID."
        ),
        usage="portbook run [-h] [--socket] [--store PATH] NAME -- CMD [ARG ...]",
    )
    run.add_argument("name", metavar="NAME")
    run.add_argument("--socket", action="store_true", help="pass a bound listening socket on fd 3")
    _store_option(run)
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD")
    run.set_defaults(handler=run_run)

    env = subparsers.add_parser(
        "env",
        help="shell export lines for named ports",
        description="Print 'export NAME_PORT=...' lines: eval \"$(portbook env api db)\".",
    )
    env.add_argument("names", metavar="NAME", nargs="+")
    _store_option(env)
    env.set_defaults(handler=run_env)


def _with_store(
    handler: Callable[[argparse.Namespace, Output, Store], int],
) -> Callable[[argparse.Namespace, Output], int]:
    """Open the store named by --store (or the default) for one command, and close it after."""

    def run(args: argparse.Namespace, out: Output) -> int:
        from portbook import Store

        with Store(args.store) as store:
            return handler(args, out, store)

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


@_with_store
def run_pick(args: argparse.Namespace, out: Output, store: Store) -> int:
    from portbook import holder_for, parse_port, parse_port_range, pick_port

    port_range = parse_port_range(args.range) if args.range else None
    near = parse_port(args.near) if args.near is not None else None
    ttl = args.ttl
    holder = None
    if ttl is None:
        # The CLI process exits at once; the lease belongs to whoever ran it
        # (the shell or script that reads the port), and ends when that exits.
        parent = os.getppid()
        if parent > 1:
            holder = holder_for(parent)
        else:
            ttl = ORPHAN_TTL
    lease = pick_port(
        protocols=args.protocols,
        families=args.families,
        port_range=port_range,
        near=near,
        allow_assigned=args.allow_assigned,
        ttl=ttl,
        holder=holder,
        store=store,
    )
    if args.json:
        out.json(lease.to_json())
    else:
        out.line(str(lease.port))
    return 0


@_with_store
def run_assign(args: argparse.Namespace, out: Output, store: Store) -> int:
    from portbook import assign, parse_port, parse_port_range

    a = assign(
        args.name,
        port=parse_port(args.port) if args.port is not None else None,
        protocol=args.proto,
        port_range=parse_port_range(args.range) if args.range else None,
        near=parse_port(args.near) if args.near is not None else None,
        allow_assigned=args.allow_assigned,
        store=store,
    )
    _print_assignment(a, args.json, out)
    return 0


def _print_assignment(a: Assignment, as_json: bool, out: Output) -> None:
    if as_json:
        out.json(a.to_json())
    else:
        out.line(str(a.port))


@_with_store
def run_get(args: argparse.Namespace, out: Output, store: Store) -> int:
    from portbook import get

    _print_assignment(get(args.name, store=store), args.json, out)
    return 0


@_with_store
def run_release(args: argparse.Namespace, out: Output, store: Store) -> int:
    from portbook import release

    a = release(args.name, store=store)
    if args.json:
        out.json(a.to_json())
    else:
        out.line(f"released {a.name} ({a.protocol}/{a.port})")
    return 0


@_with_store
def run_names(args: argparse.Namespace, out: Output, store: Store) -> int:
    from portbook import export_names, import_names, name_status

    if args.export:
        out.json(export_names(store=store))
        return 0
    if args.import_file is not None:
        text = _read_text(args.import_file)
        added = import_names(text, store=store)
        if args.json:
            out.json([a.to_json() for a in added])
        else:
            out.line(f"imported {len(added)} name{'' if len(added) == 1 else 's'}")
        return 0
    statuses = name_status(store=store)
    if args.json:
        out.json([s.to_json() for s in statuses])
        return 0
    if not statuses:
        out.line("no names yet: 'portbook assign NAME' gives one a port")
        return 0
    out.table(
        ["NAME", "PORT", "PROTO", "LISTENING", "PROCESS"],
        [
            [
                s.assignment.name,
                str(s.assignment.port),
                s.assignment.protocol.value,
                "yes" if s.listening else "no",
                ", ".join(f"{p.name or '?'}[{p.pid}]" for p in s.processes)
                or (f"(held by pid {s.held_by.pid})" if s.held_by else ""),
            ]
            for s in statuses
        ],
    )
    return 0


def _read_text(path: str) -> str:
    from portbook import UsageError

    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"cannot read {path}: {reason}") from exc


def env_variable(name: str) -> str:
    """``api`` -> ``API_PORT``; ``example.com/apache`` -> ``EXAMPLE_COM_APACHE_PORT``."""
    return "".join(c if c.isalnum() else "_" for c in name.upper()) + "_PORT"


@_with_store
def run_env(args: argparse.Namespace, out: Output, store: Store) -> int:
    import shlex

    from portbook import UsageError, get

    seen: dict[str, str] = {}
    lines = []
    for name in args.names:
        a = get(name, store=store)
        var = env_variable(a.name)
        if var in seen and seen[var] != a.name:
            raise UsageError(f"{seen[var]!r} and {a.name!r} would both be ${var}")
        seen[var] = a.name
        lines.append(f"export {var}={shlex.quote(str(a.port))}")
    for line in lines:
        out.line(line)
    return 0


@_with_store
def run_run(args: argparse.Namespace, out: Output, store: Store) -> int:
    import contextlib
    import signal
    import subprocess

    from portbook import (
        NotFoundError,
        PortbookError,
        assign,
        bind_activation_socket,
        holder_for,
        lease_name,
        release_lease,
        transfer_lease,
    )

    command = _split_run_command(args)
    if not command:
        out.error("run needs a command after the name: portbook run NAME -- CMD ...")
        return 2
    a = assign(args.name, store=store)
    _, lease = lease_name(args.name, store=store)
    try:
        sock = bind_activation_socket(a.port, a.protocol) if args.socket else None
        env = {k: v for k, v in os.environ.items() if k not in _SOCKET_ENV}
        env.update(PORT=str(a.port), PORTBOOK_NAME=a.name)
        argv = command
        pass_fds: tuple[int, ...] = ()
        if sock is not None:
            env.update(LISTEN_FDS="1", LISTEN_FDNAMES=a.name)
            argv = [sys.executable, "-I", "-S", "-c", _TRAMPOLINE, str(sock.fileno()), *command]
            pass_fds = (sock.fileno(),)
        try:
            child = subprocess.Popen(argv, env=env, pass_fds=pass_fds)
        except OSError as exc:
            out.error(f"cannot run {command[0]!r}: {exc.strerror}")
            return 127
        finally:
            if sock is not None:
                sock.close()  # the child has its own copy
        # The command, not portbook, is what uses the port: the lease now
        # lasts as long as it does, even if portbook itself is killed. (Its
        # pid and start time stay the same through the re-exec.)
        with contextlib.suppress(PortbookError):
            lease = transfer_lease(lease, holder_for(child.pid), store=store)
        # Ctrl-C reaches the whole foreground process group: the child gets
        # it itself, and portbook stays to collect the exit status and give
        # the port back. SIGTERM/SIGHUP sent to portbook alone are passed on.
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
    finally:
        # `portbook release NAME` during the run has dropped the lease already.
        with contextlib.suppress(NotFoundError):
            release_lease(lease, store=store)
    return status if status >= 0 else 128 - status


def _split_run_command(args: argparse.Namespace) -> list[str]:
    # argparse's REMAINDER takes every word after NAME, including run's own
    # options written before "--" (`run api --socket -- cmd`); take those back.
    from portbook import UsageError

    words = list(args.command)
    if "--" not in words:
        return words
    cut = words.index("--")
    own, command = words[:cut], words[cut + 1 :]
    i = 0
    while i < len(own):
        word = own[i]
        if word == "--socket":
            args.socket = True
        elif word == "--store" and i + 1 < len(own):
            args.store = own[i + 1]
            i += 1
        elif word.startswith("--store="):
            args.store = word.partition("=")[2]
        else:
            raise UsageError(f"run: unknown option {word!r} before '--'")
        i += 1
    return command
