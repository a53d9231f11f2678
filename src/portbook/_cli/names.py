"""Commands of your names: pick, assign, get, release, names, run, env."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from portbook._cli._args import seconds
from portbook._cli._output import Output

if TYPE_CHECKING:
    from portbook import Assignment, Store


def register(subparsers: Any) -> None:
    for add in _PARSERS.values():
        add(subparsers)


def register_command(subparsers: Any, command: str) -> None:
    """Register only ``command`` (see ``portbook._cli.build_parser``)."""
    _PARSERS[command](subparsers)


def _store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="PATH",
        help="names database file (default: $PORTBOOK_STORE, else the user data directory)",
    )


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for programs")


def _add_pick(subparsers: Any) -> None:
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
    for flag, value, text in (
        ("--tcp", ("tcp",), "free on TCP"),
        ("--udp", ("udp",), "free on UDP"),
        ("--both", ("tcp", "udp"), "free on TCP and UDP (default: TCP only)"),
    ):
        proto.add_argument(flag, dest="protocols", action="store_const", const=value, help=text)
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
    _choice_options(pick, "pick")
    pick.add_argument(
        "--ttl",
        metavar="SECONDS",
        type=seconds(0, 10 * 366 * 86400, zero=False),
        help="lease for this long instead of for the life of the calling process",
    )
    _json_option(pick)
    _store_option(pick)
    pick.set_defaults(handler=run_pick, protocols=("tcp",), families=None)


def _choice_options(parser: argparse.ArgumentParser, verb: str) -> None:
    """--range, --near and --allow-assigned, shared by pick and assign."""
    parser.add_argument("--range", metavar="LO-HI", help=f"{verb} inside this range")
    parser.add_argument("--near", metavar="PORT", help="the allowed port closest to PORT")
    parser.add_argument(
        "--allow-assigned", action="store_true", help="IANA-assigned ports may be chosen too"
    )


def _add_assign(subparsers: Any) -> None:
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
    _choice_options(assign, "choose")
    _json_option(assign)
    _store_option(assign)
    assign.set_defaults(handler=run_assign)


def _add_get(subparsers: Any) -> None:
    get = subparsers.add_parser("get", help="the port of NAME", description="Print NAME's port.")
    get.add_argument("name", metavar="NAME")
    _json_option(get)
    _store_option(get)
    get.set_defaults(handler=run_get)


def _add_release(subparsers: Any) -> None:
    release = subparsers.add_parser(
        "release", help="forget NAME and free its port", description="Forget NAME's port."
    )
    release.add_argument("name", metavar="NAME")
    _json_option(release)
    _store_option(release)
    release.set_defaults(handler=run_release)


def _add_names(subparsers: Any) -> None:
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
    _json_option(names)
    _store_option(names)
    names.set_defaults(handler=run_names)


def _add_run(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run",
        help="run a command with NAME's port in $PORT, holding it while it runs",
        description=(
            "Run CMD with PORT and PORTBOOK_NAME in its environment (NAME gets a port first "
            "if it has none), holding NAME's port while CMD runs; refused while another "
            "program holds the port. --socket also hands CMD a bound listening socket as "
            "systemd does (fd 3, LISTEN_FDS=1, LISTEN_PID), on 127.0.0.1 unless --host."
        ),
        usage=("portbook run [-h] [--socket] [--host ADDR] [--store PATH] NAME -- CMD [ARG ...]"),
    )
    run.add_argument("name", metavar="NAME")
    run.add_argument("--socket", action="store_true", help="pass a bound listening socket on fd 3")
    run.add_argument(
        "--host", metavar="ADDR", help="with --socket: bind this address (:: for every one)"
    )
    _store_option(run)
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD")
    run.set_defaults(handler=run_run)


def _add_env(subparsers: Any) -> None:
    env = subparsers.add_parser(
        "env",
        help="shell export lines for named ports",
        description="Print 'export NAME_PORT=...' lines: eval \"$(portbook env api db)\".",
    )
    env.add_argument("names", metavar="NAME", nargs="+")
    _store_option(env)
    env.set_defaults(handler=run_env)


# In the order of `portbook --help`.
_PARSERS = {
    "pick": _add_pick,
    "assign": _add_assign,
    "get": _add_get,
    "release": _add_release,
    "names": _add_names,
    "run": _add_run,
    "env": _add_env,
}


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


def _choice(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed --range, --near and --allow-assigned."""
    from portbook import parse_port, parse_port_range

    return {
        "port_range": parse_port_range(args.range) if args.range is not None else None,
        "near": parse_port(args.near) if args.near is not None else None,
        "allow_assigned": args.allow_assigned,
    }


@_with_store
def run_pick(args: argparse.Namespace, out: Output, store: Store) -> int:
    from portbook import pick_port

    lease = pick_port(
        protocols=args.protocols,
        families=args.families,
        ttl=args.ttl,
        store=store,
        lease_to_parent=True,
        **_choice(args),
    )
    if args.json:
        out.json(lease.to_json())
    else:
        out.line(str(lease.port))
    return 0


def _print_assignment(a: Assignment, as_json: bool, out: Output) -> None:
    if as_json:
        out.json(a.to_json())
    else:
        out.line(str(a.port))


@_with_store
def run_assign(args: argparse.Namespace, out: Output, store: Store) -> int:
    from portbook import assign, parse_port

    a = assign(
        args.name,
        port=parse_port(args.port) if args.port is not None else None,
        protocol=args.proto,
        store=store,
        **_choice(args),
    )
    _print_assignment(a, args.json, out)
    return 0


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
        added = import_names(_read_text(args.import_file), store=store)
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


# An export of every name a store can hold is a few MiB; more is not an export
# (and /dev/zero would otherwise be read until memory runs out).
_IMPORT_LIMIT = 64 * 1024 * 1024


def _read_text(path: str) -> str:
    """The UTF-8 text of PATH, or of standard input for ``-``: a pipe such as
    ``<(…)`` is fine, but no more than _IMPORT_LIMIT bytes are read."""
    from portbook import UsageError

    label = "standard input" if path == "-" else path
    try:
        if path == "-":
            stdin = getattr(sys.stdin, "buffer", None)  # None when fd 0 was closed
            if stdin is None:
                raise UsageError("cannot read standard input: it is closed")
            data: bytes = stdin.read(_IMPORT_LIMIT + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(_IMPORT_LIMIT + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {label}: {exc.strerror or exc}") from exc
    if len(data) > _IMPORT_LIMIT:
        raise UsageError(f"cannot read {label}: more than {_IMPORT_LIMIT >> 20} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read {label}: not UTF-8 text") from exc


@_with_store
def run_env(args: argparse.Namespace, out: Output, store: Store) -> int:
    import shlex

    from portbook import name_environment

    for var, port in name_environment(args.names, store=store).items():
        out.line(f"export {var}={shlex.quote(str(port))}")
    return 0


def run_run(args: argparse.Namespace, out: Output) -> int:
    from portbook import Store, run_on_name

    # Options written between NAME and "--" are run's own; read them before
    # the store is opened (--store names which one).
    command = _split_run_command(args)
    with Store(args.store) as store:
        return run_on_name(
            args.name,
            command,
            activation=args.socket,
            host=args.host,
            store=store,
            on_warning=out.warn,
        )


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
        elif word in ("--store", "--host") and i + 1 < len(own):
            setattr(args, word[2:], own[i + 1])
            i += 1
        elif word.startswith(("--store=", "--host=")):
            key, _, value = word[2:].partition("=")
            setattr(args, key, value)
        else:
            raise UsageError(f"run: unknown option {word!r} before '--'")
        i += 1
    return command
