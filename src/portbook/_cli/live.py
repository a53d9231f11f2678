"""Commands of the live table: which program holds which port (``ls``, ``who``, ``ls --watch``)."""

from __future__ import annotations

from portbook._cli._output import Output

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import Any

    from portbook import Protocol, Socket

_ROOT_NOTE = (
    "Without root, the owning process of another user's socket cannot be seen: such "
    "sockets are listed with their uid and an empty process list. Run as root to see all owners."
)
_NOT_VISIBLE = "not visible without root"


def register(subparsers: Any) -> None:
    _add_ls(subparsers)
    _add_who(subparsers)


def register_command(subparsers: Any, command: str) -> None:
    """Register only ``command`` (``ls`` or ``who``): the ls parser alone has a score of
    arguments, each a formatter and gettext look-ups (see ``portbook._cli.build_parser``)."""
    (_add_who if command == "who" else _add_ls)(subparsers)


def _add_ls(subparsers: Any) -> None:
    ls = subparsers.add_parser(
        "ls",
        help="listening sockets and the programs that hold them (the default command)",
        description=(
            "List this machine's sockets with their owning processes and what the book calls "
            "each port. By default: listening TCP and bound UDP sockets. " + _ROOT_NOTE
        ),
    )
    ls.add_argument("-a", "--all", action="store_true", help="every socket, in every state")
    ls.add_argument("-t", "--tcp", action="store_true", help="TCP sockets only")
    ls.add_argument("-u", "--udp", action="store_true", help="UDP sockets only")
    ls.add_argument("-4", dest="ipv4", action="store_true", help="IPv4 sockets only")
    ls.add_argument("-6", dest="ipv6", action="store_true", help="IPv6 sockets only")
    ls.add_argument(
        "--state",
        action="append",
        metavar="S",
        help="only this state (ss's names: LISTEN, ESTAB, TIME-WAIT, UNCONN, ...); repeatable",
    )
    ls.add_argument("--port", metavar="P|RANGE", help="only this local port or range (8000-8100)")
    ls.add_argument("--pid", type=int, metavar="N", help="only sockets held by this process")
    ls.add_argument("--user", metavar="U", help="only sockets of this user (name or uid)")
    ls.add_argument("--program", metavar="NAME", help="only sockets held by this program")
    ls.add_argument("--no-owners", action="store_true", help="skip finding owning processes")
    ls.add_argument(
        "--json",
        action="store_true",
        help="print a JSON array for programs (with --watch: one JSON event per line)",
    )
    ls.add_argument(
        "--watch", action="store_true", help="refresh and show sockets opened and closed"
    )
    ls.add_argument(
        "--interval", type=float, default=2.0, metavar="S", help="seconds between refreshes"
    )
    ls.add_argument("--count", type=int, metavar="N", help="with --watch: stop after N refreshes")
    ls.set_defaults(handler=run_ls)


def _add_who(subparsers: Any) -> None:
    who = subparsers.add_parser(
        "who",
        help="every socket on one port, who holds it, and what the port is",
        description=(
            "Show every socket whose local port is PORT (any state), its owners, and what the "
            "book calls the port. PORT may be 5432, tcp/5432, :8080, 127.0.0.1:8080 or a "
            "range. " + _ROOT_NOTE
        ),
    )
    who.add_argument("port", metavar="PORT")
    who.add_argument("--json", action="store_true", help="print a JSON array for programs")
    who.set_defaults(handler=run_who)


def _ls_filters(args: argparse.Namespace) -> dict[str, Any]:
    from portbook import UsageError, parse_port_range

    if args.interval <= 0 or (args.count is not None and args.count < 1):
        raise UsageError("--interval must be above 0 and --count at least 1")
    protocols = [p for p, on in (("tcp", args.tcp), ("udp", args.udp)) if on] or None
    families = [f for f, on in ((4, args.ipv4), (6, args.ipv6)) if on] or None
    states = args.state
    return {
        "protocols": protocols,
        "families": families,
        "states": states,
        "listening": not args.all and not states,
        "port": parse_port_range(args.port) if args.port is not None else None,
        "pid": args.pid,
        "user": args.user,
        "program": args.program,
        "owners": not args.no_owners,
    }


def run_ls(args: argparse.Namespace, out: Output) -> int:
    filters = _ls_filters(args)
    if args.watch:
        return _watch(filters, args, out)
    return _collector_paused(_list_once, filters, args, out)


def _list_once(filters: dict[str, Any], args: argparse.Namespace, out: Output) -> int:
    from portbook import list_sockets

    sockets = list_sockets(**filters)
    _render(sockets, out, json_out=args.json, show_peer=args.all or bool(args.state))
    return 0


def _collector_paused(run: Callable[..., int], *args: Any) -> int:
    """``run(*args)`` with the cyclic garbage collector paused until its records are freed.

    list_sockets pauses the collector while it builds the table, but resumes
    it with the table still alive, and the next allocation then makes the
    collector traverse every new record once (milliseconds for a large
    table). Here the pause lasts until ``run`` has returned and its records
    have gone (reference counting frees them), so that traversal never
    happens. Not for --watch, which runs for as long as the user likes.
    """
    import gc

    paused = gc.isenabled()
    gc.disable()
    try:
        return run(*args)
    finally:
        if paused:
            gc.enable()


def run_who(args: argparse.Namespace, out: Output) -> int:
    return _collector_paused(_who, args, out)


def _who(args: argparse.Namespace, out: Output) -> int:
    from portbook import find_sockets, resolve_ports

    query = resolve_ports(args.port)
    sockets = find_sockets(query)
    if args.json:
        _json(sockets, out)
        return 0 if sockets else 1
    if not sockets:
        out.line(f"nothing is using {query} right now")
    else:
        _render(sockets, out, json_out=False, show_peer=True)
    if query.source == "name":
        out.line()
        out.line(f"{args.port} is your name for {query.protocol}/{query}")
    _book_lines(out, str(query) if query.source != "service" else args.port, query.protocol)
    return 0 if sockets else 1


def _book_lines(out: Output, query: str, protocol: Protocol | None) -> None:
    """What the book calls the port, as ``portbook lookup`` shows it."""
    from portbook import lookup
    from portbook._cli.book import _port_footer, _render_services

    services = lookup(query, protocol)
    out.line()
    if services:
        _render_services(out, services)
    else:
        out.line(f"the book has no entry for {query}")
    _port_footer(out, query)


def _json(sockets: Sequence[Socket], out: Output) -> None:
    # In pieces: a large table's JSON is megabytes (see write_sockets_json).
    from portbook import write_sockets_json

    write_sockets_json(sockets, out.stream, indent=2 if out.tty else None)
    out.stream.write("\n")


def _endpoint(address: object, port: int | None) -> str:
    if port is None:
        return "*"
    text = str(address)
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


def _owners_text(sock: Socket) -> str:
    if sock.processes:
        return ",".join(f"{p.name or '?'}[{p.pid}]" for p in sock.processes)
    return "?" if sock.owner_note == _NOT_VISIBLE else "-"


def _render(sockets: Sequence[Socket], out: Output, *, json_out: bool, show_peer: bool) -> None:
    if json_out:
        _json(sockets, out)
        return
    headers = ["PROTO", "STATE", "LOCAL", "PEER", "PROCESS", "USER", "SERVICE"]
    # Addresses and owner lists are shared between sockets: format each once.
    hosts: dict[int, str] = {}
    owners: dict[int, tuple[str, str]] = {}
    keep: list[object] = []  # keeps the id() keys above unique

    def host(address: object) -> str:
        text = hosts.get(id(address))
        if text is None:
            keep.append(address)
            text = str(address)
            text = hosts[id(address)] = f"[{text}]" if ":" in text else text
        return text

    rows: list[list[str]] = []
    for s in sockets:
        procs = s.processes
        who = owners.get(id(procs))
        if who is None:
            keep.append(procs)
            who = owners[id(procs)] = (_owners_text(s), (procs[0].user or "?") if procs else "")
        row = [
            f"{s.protocol}{s.family:d}",
            s.state.value,
            f"{host(s.local_address)}:{s.local_port}",
            "*" if s.remote_port is None else f"{host(s.remote_address)}:{s.remote_port}",
            who[0],
            who[1] if procs else _uid_name(s.uid),
            s.service or "-",
        ]
        if not show_peer:
            del row[3]
        rows.append(row)
    if not show_peer:
        del headers[3]
    out.table(headers, rows)
    if any(s.owner_note == _NOT_VISIBLE for s in sockets):
        out.err.write("portbook: note: some owners are not visible without root\n")


_uid_names: dict[int, str] = {}


def _uid_name(uid: int) -> str:
    name = _uid_names.get(uid)
    if name is None:
        import pwd

        try:
            name = pwd.getpwuid(uid).pw_name if uid >= 0 else "?"
        except KeyError:
            name = str(uid)
        _uid_names[uid] = name
    return name


def _event_line(sign: str, s: Socket) -> str:
    owners = _owners_text(s)
    peer = "" if s.remote_port is None else " " + _endpoint(s.remote_address, s.remote_port)
    return (
        f"{sign} {s.protocol.value} {_endpoint(s.local_address, s.local_port)}{peer} "
        f"{s.state.value} {owners}"
    )


def _watch(filters: dict[str, Any], args: argparse.Namespace, out: Output) -> int:
    from portbook import watch_sockets

    try:
        for change in watch_sockets(interval=args.interval, count=args.count, **filters):
            if args.json:
                # One JSON object per line and event, for programs following along.
                import json

                for event, sockets in (("closed", change.closed), ("opened", change.opened)):
                    for s in sockets:
                        out.line(json.dumps({"event": event, "socket": s.to_json()}))
            elif out.tty:
                out.stream.write("\x1b[H\x1b[2J")
                out.heading(
                    f"portbook ls --watch: {len(change.sockets)} sockets, "
                    f"{len(change.opened)} opened, {len(change.closed)} closed "
                    f"(every {args.interval:g}s, Ctrl-C to stop)"
                )
                for s in change.closed:
                    out.line(_event_line("-", s))
                if not change.first:
                    for s in change.opened:
                        out.line(_event_line("+", s))
                out.line()
                _render(list(change.sockets), out, json_out=False, show_peer=args.all)
            else:
                for s in change.closed:
                    out.line(_event_line("-", s))
                for s in change.opened:
                    out.line(_event_line("+", s))
            out.stream.flush()
    except KeyboardInterrupt:
        pass
    return 0
