"""Commands of the live table: which program holds which port (``ls``, ``who``, ``ls --watch``)."""

from __future__ import annotations

from operator import attrgetter

from portbook._cli._args import seconds, whole
from portbook._cli._output import Output, count, says_registry_warning

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any

    from portbook import Protocol, Socket, SocketStream, SocketTable

_ROOT_NOTE = (
    "Without root, the owning process of another user's socket cannot be seen: such "
    "sockets are listed with their user and an empty process list. Run as root to see all "
    "owners."
)
_NOT_VISIBLE = "not visible without root"
_KERNEL = "held by the kernel, not by a process"  # TIME-WAIT and the like: "-", nobody to name
# A source's mark after a service name: /etc/services names (what ss shows) go unmarked.
_SOURCE_MARK = {"unofficial": " (common)", "iana": " (iana)"}
_SORTS = ("port", "program", "pid", "state", "user")
_FOLD = 2  # holders shown by name before "+N" folds the rest
# What some sockets have (records are non-empty tuples: true when there).
_NETNS, _CONTAINER, _UNIT, _PUBLISHED = map(attrgetter, ("netns", "container", "unit", "published"))
_NETNS_HELP = (
    "read this network namespace instead of this process's own: all (every one: ip netns, "
    "containers, any process's), host, an ip netns name, a container's name or id, a pid, or "
    "a namespace file (entering another namespace needs root)"
)


# What ls and who hold when no option is given: argparse's defaults, written
# out for the forms the CLI runs without a parser (portbook._cli.quick_args);
# tests/cli/test_basics.py pins them to what the parser gives.
LS_DEFAULTS: dict[str, object] = {
    "all": False,
    "tcp": False,
    "udp": False,
    "ipv4": False,
    "ipv6": False,
    "state": None,
    "port": None,
    "pid": None,
    "user": None,
    "program": None,
    "no_owners": False,
    "sort": "port",
    "wide": False,
    "json": False,
    "watch": False,
    "interval": 2.0,
    "count": None,
    "netns": None,
}
WHO_DEFAULTS: dict[str, object] = {"sort": "port", "wide": False, "json": False, "netns": None}


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
            "List this machine's sockets with their owning processes and what each port is "
            "called: your name for it, else this system's /etc/services name, else a common "
            "default's (marked 'common'), else IANA's (marked 'iana'). By default: listening "
            "TCP and bound UDP sockets, sorted by port. " + _ROOT_NOTE
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
    ls.add_argument(
        "--pid", type=whole(1, 2**22), metavar="N", help="only sockets held by this process"
    )
    ls.add_argument("--user", metavar="U", help="only sockets of this user (name or uid)")
    ls.add_argument("--program", metavar="NAME", help="only sockets held by this program")
    ls.add_argument("--no-owners", action="store_true", help="skip finding owning processes")
    add_netns_option(ls)
    _add_table_options(ls)
    ls.add_argument(
        "--json",
        action="store_true",
        help="print a JSON array for programs (with --watch: one JSON event per line)",
    )
    ls.add_argument(
        "--watch", action="store_true", help="refresh and show sockets opened and closed"
    )
    ls.add_argument(
        "--interval",
        type=seconds(0, 86400, zero=False),
        default=2.0,
        metavar="S",
        help="seconds between refreshes (default 2)",
    )
    ls.add_argument(
        "--count", type=whole(1, 10**9), metavar="N", help="with --watch: stop after N refreshes"
    )
    ls.set_defaults(handler=run_ls)


def add_netns_option(parser: argparse.ArgumentParser) -> None:
    """``--netns NAME|PID|PATH|all``, as ls, who, check and route take it."""
    parser.add_argument("--netns", metavar="NAME|PID|PATH|all", help=_NETNS_HELP)


def _add_table_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sort", choices=_SORTS, default="port", help="order of the rows (default: port)"
    )
    parser.add_argument(
        "-w", "--wide", action="store_true", help="show each holder's whole command line"
    )


def _add_who(subparsers: Any) -> None:
    who = subparsers.add_parser(
        "who",
        help="every socket on one port, who holds it, and what the port is",
        description=(
            "Show every socket whose local port is PORT (any state), its owners, and what the "
            "book calls the port. PORT may be 5432, tcp/5432, :8080, 127.0.0.1:8080, a range, "
            "one of your names (api) or a service name (postgresql: every port it has). "
            + _ROOT_NOTE
        ),
    )
    who.add_argument("port", metavar="PORT")
    add_netns_option(who)
    _add_table_options(who)
    who.add_argument("--json", action="store_true", help="print a JSON array for programs")
    who.set_defaults(handler=run_who)


def _ls_filters(args: argparse.Namespace) -> dict[str, Any]:
    from portbook import parse_port_range

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
        "user": _known_user(args.user),
        "program": args.program,
        "owners": not args.no_owners,
        "netns": args.netns,
    }


def _known_user(user: str | None) -> str | None:
    """``--user``: a uid, or a name this system knows (a typo is bad input, not "no sockets")."""
    from portbook import UsageError

    if user is None or (user.isascii() and user.isdigit()):
        return user
    import pwd

    try:
        pwd.getpwnam(user)
    except (KeyError, ValueError):
        raise UsageError(f"no such user: {user!r}") from None
    return user


@says_registry_warning
def run_ls(args: argparse.Namespace, out: Output) -> int:
    filters = _ls_filters(args)
    if args.watch:
        return _watch(filters, args, out)
    return _collector_paused(_list_once, filters, args, out)


def _list_once(filters: dict[str, Any], args: argparse.Namespace, out: Output) -> int:
    if args.json:
        # Each socket written as it is built: a large table is never held whole.
        from portbook import socket_stream

        stream = socket_stream(**filters)
        _json(stream, out)
        _notes(stream, out, "portbook ls --netns all")
        return 0
    from portbook import socket_table

    # The plain table shows nobody inside a container (--wide does): not read then.
    table = socket_table(**filters, inside=args.wide)
    _render(table.sockets, out, args, show_peer=args.all or bool(args.state))
    _notes(table, out, "portbook ls --netns all")
    return 0


def _notes(table: SocketTable | SocketStream, out: Output, command: str) -> None:
    if table.notes or table.elsewhere:  # the common case: nothing to say, nothing imported
        from portbook._cli.behind import notes

        notes(table, out, command)


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


@says_registry_warning
def run_who(args: argparse.Namespace, out: Output) -> int:
    return _collector_paused(_who, args, out)


def _who(args: argparse.Namespace, out: Output) -> int:
    from portbook import resolve_ports, socket_table

    query = resolve_ports(args.port)
    table = socket_table(query, netns=args.netns)
    sockets = table.sockets
    command = f"portbook who {args.port} --netns all"
    if args.json:
        _json(sockets, out)
        _notes(table, out, command)
        return 0 if sockets else 1
    if not sockets:
        out.line(f"nothing is using {query} right now")
        from portbook._cli.behind import forwarded

        forwarded(query, out)
    else:
        if any(map(_CONTAINER, sockets)) or any(map(_PUBLISHED, sockets)):
            from portbook._cli.behind import lead

            lead(sockets, out)
        _render(sockets, out, args, show_peer=True)
    _notes(table, out, command)
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


def _json(sockets: Iterable[Socket], out: Output) -> None:
    # In pieces: a large table's JSON is megabytes (see write_sockets_json).
    from portbook import write_sockets_json

    if out.json_ascii:
        out.json([s.to_json() for s in sockets])
        return
    write_sockets_json(sockets, out.stream)
    out.stream.write("\n")


def _holders_text(sock: Socket, wide: bool) -> str:
    """``nginx[100] nginx[101](www-data) +3``: holders by name, with a user unlike the socket's."""
    procs = sock.processes
    if not procs:
        return "-" if sock.owner_note in (None, _KERNEL) else "?"
    shown = procs if wide else procs[:_FOLD]
    parts = []
    for p in shown:
        who = f"{p.name or '?'}[{p.pid}]"
        if p.user and p.user != sock.user:
            who += f"({p.user})"
        if wide and p.cmdline:
            who += " " + " ".join(p.cmdline)
        parts.append(who)
    extra = len(procs) - len(shown)
    return ("; " if wide else " ").join(parts) + (f" +{extra}" if extra else "")


def _service_text(sock: Socket) -> str:
    if sock.name is not None:
        return f"{sock.name} (yours)"
    if sock.service is None:
        return "-"
    return sock.service + _SOURCE_MARK.get(sock.service_source or "", "")


def _sort_key(sort: str) -> Callable[[Socket], tuple[Any, ...]]:
    def where(s: Socket) -> tuple[Any, ...]:
        return (s.local_port, s.family, s.local_address.packed, s.state.value)

    first: dict[str, Callable[[Socket], Any]] = {
        "port": lambda s: (),
        "program": lambda s: (s.processes[0].name or "") if s.processes else "\uffff",
        "pid": lambda s: s.processes[0].pid if s.processes else 1 << 30,
        "state": lambda s: s.state.value,
        "user": lambda s: s.user or "",
    }
    head = first[sort]
    return lambda s: (head(s), *where(s))


def _render(
    sockets: Sequence[Socket], out: Output, args: argparse.Namespace, *, show_peer: bool
) -> None:
    headers = ["PROTO", "STATE", "LOCAL", "PEER", "USER", "SERVICE", "PROCESS"]
    ordered = sorted(sockets, key=_sort_key(getattr(args, "sort", "port")))
    wide = getattr(args, "wide", False)
    # Addresses and holder lists are shared between sockets: format each once.
    hosts: dict[int, str] = {}
    owners: dict[tuple[int, str | None, str | None], str] = {}
    keep: list[object] = []  # keeps the id() keys above unique

    from portbook import address_text

    def endpoint(address: Any, port: int) -> str:
        text = hosts.get(id(address))
        if text is None:
            keep.append(address)
            shown = address_text(address)
            text = hosts[id(address)] = f"[{shown}]" if address.version == 6 else shown
        return f"{text}:{port}"

    extra: list[tuple[str, Callable[[Socket], str]]] = []
    if any(map(_NETNS, sockets)) or any(map(_CONTAINER, sockets)) or any(map(_UNIT, sockets)):
        from portbook._cli.behind import extra_columns

        extra = extra_columns(sockets, wide)
    headers += [name for name, _ in extra]
    cells: dict[tuple[str, int, int, int, int], str] = {}  # by the shared records behind a cell
    rows: list[list[str]] = []
    for s in ordered:
        key = (id(s.processes), s.user, s.owner_note)
        who = owners.get(key)
        if who is None:
            keep.append(s.processes)
            who = owners[key] = _holders_text(s, wide)
        peer = "*" if s.remote_port is None else endpoint(s.remote_address, s.remote_port)
        row = [
            f"{s.protocol}{s.family:d}",
            s.state.value,
            endpoint(s.local_address, s.local_port),
            peer,
            s.user or "?",
            _service_text(s),
            who,
        ]
        for name, text in extra:
            shared = (name, id(s.netns), id(s.container), id(s.unit), id(s.published))
            cell = cells.get(shared)
            if cell is None:
                keep.append((s.netns, s.container, s.unit, s.published))
                cell = cells[shared] = text(s)
            row.append(cell)
        if not show_peer:
            del row[3]
        rows.append(row)
    if not show_peer:
        del headers[3]
    # On a narrow terminal the least useful columns go first: who the socket
    # belongs to, its unit, what the book calls it, the peer; the namespace
    # and the container, which say which program it is, last.
    drop = [
        headers.index(h)
        for h in ("USER", "UNIT", "SERVICE", "PEER", "NETNS", "CONTAINER")
        if h in headers
    ]
    out.table(headers, rows, drop=drop)
    _owner_notes(sockets, out)


def _owner_notes(sockets: Sequence[Socket], out: Output) -> None:
    """What each "?" in the PROCESS column stands for, once per reason."""
    if any(s.owner_note == _NOT_VISIBLE for s in sockets):
        out.note("some owners are not visible without root")
    others = {s.owner_note for s in sockets if s.owner_note not in (None, _KERNEL, _NOT_VISIBLE)}
    for note in sorted(others)[:3]:
        out.note(f"?: {note}")


def _event_line(sign: str, s: Socket) -> str:
    from portbook import endpoint_text

    peer = ""
    if s.remote_address is not None and s.remote_port is not None:
        peer = " " + endpoint_text(s.remote_address, s.remote_port)
    return (
        f"{sign} {s.protocol.value} {endpoint_text(s.local_address, s.local_port)}{peer} "
        f"{s.state.value} {_holders_text(s, False)}"
    )


def _watch(filters: dict[str, Any], args: argparse.Namespace, out: Output) -> int:
    from portbook import watch_sockets

    try:
        for change in watch_sockets(interval=args.interval, count=args.count, **filters):
            if args.json:
                _watch_json(change, out)
            elif out.tty:
                _watch_screen(change, args, out)
            else:
                # "=" marks what was already there when the watch began.
                for s in change.closed:
                    out.line(_event_line("-", s))
                for s in change.opened:
                    out.line(_event_line("=" if change.first else "+", s))
            out.stream.flush()
    except KeyboardInterrupt:
        pass
    return 0


def _watch_json(change: Any, out: Output) -> None:
    # One JSON object per line and event, for programs following along; the
    # sockets of the first refresh were already there ("initial": true).
    import json

    for event, sockets in (("closed", change.closed), ("opened", change.opened)):
        for s in sockets:
            record = {"event": event, "socket": s.to_json(), "initial": change.first}
            out.stream.write(json.dumps(record, ensure_ascii=out.json_ascii) + "\n")


def _watch_screen(change: Any, args: argparse.Namespace, out: Output) -> None:
    out.stream.write("\x1b[H\x1b[2J")
    if change.first:
        news = f"{count(len(change.sockets), 'socket')} already there"
    else:
        news = (
            f"{count(len(change.sockets), 'socket')}, {len(change.opened)} opened, "
            f"{len(change.closed)} closed"
        )
    out.heading(f"portbook ls --watch: {news} (every {args.interval:g}s, Ctrl-C to stop)")
    for s in change.closed:
        out.line(_event_line("-", s))
    if not change.first:
        for s in change.opened:
            out.line(_event_line("+", s))
    out.line()
    _render(list(change.sockets), out, args, show_peer=args.all)
