"""``portbook kill``: stop the processes holding a port, after showing them."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from portbook._cli._args import seconds
from portbook._cli._output import Output

if TYPE_CHECKING:
    from collections.abc import Sequence

    from portbook import KillResult, PortHolder, Protocol


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "kill",
        help="stop the processes holding a port",
        description=(
            "Find every process holding exactly PORT, show them as process trees, ask, send "
            "a signal (SIGTERM), to each tree's root first, and wait until the kernel shows "
            "the port free. Never signals pid 1, portbook or its parents; signals nothing "
            "when one holder cannot be seen or signalled. A port a container runtime's helper "
            "holds for a container (docker-proxy, dockerd, conmon, rootlessport) is refused, "
            "with the command that stops the container; --container runs it."
        ),
    )
    p.add_argument(
        "port", metavar="PORT", help="a port number, tcp/PORT, udp/PORT, or one of your names"
    )
    p.add_argument("--signal", default="TERM", help="signal to send first (default TERM)")
    p.add_argument(
        "--timeout",
        type=seconds(0, 3600),
        default=5.0,
        help="seconds to wait for release (default 5, at most 3600)",
    )
    p.add_argument("--force", action="store_true", help="send SIGKILL if still held after timeout")
    p.add_argument(
        "--dry-run", action="store_true", help="show what would be signalled, do nothing"
    )
    p.add_argument(
        "--container",
        action="store_true",
        help=(
            "for a published port: stop the containers behind it with their runtime "
            "(docker stop, podman stop) instead of signalling anything"
        ),
    )
    p.add_argument("-y", "--yes", action="store_true", help="do not ask")
    p.add_argument("--json", action="store_true", help="print JSON for programs")
    p.set_defaults(handler=run_kill)


def _target(text: str) -> tuple[int, Protocol | None]:
    from portbook import InvalidPortSpecError, parse_port_spec, resolve_ports

    spec = parse_port_spec(text)
    if spec.host is not None:
        raise InvalidPortSpecError(text, "expected one port (or tcp/PORT, udp/PORT, a name)")
    query = resolve_ports(text)
    if len(query.ports) != 1 or not query.ports[0].single:
        raise InvalidPortSpecError(text, f"expected one port, and {text!r} is {query}")
    return query.ports[0].first, query.protocol


def run_kill(args: argparse.Namespace, out: Output) -> int:
    import signal as signals

    from portbook import kill_port, parse_signal, port_holders

    port, proto = _target(args.port)
    signum = parse_signal(args.signal)
    label = f"{proto.value}/{port}" if proto else f"port {port}"
    holders = port_holders(port, proto)
    name = signals.Signals(signum).name
    if not args.json and holders:
        _show(holders, out)
    if holders and args.yes and not args.dry_run:
        # Nothing to ask: kill_port checks the same again before signalling.
        return _report(_kill(port, proto, signum, holders, args), args, out, label, name)
    # Refused now, before asking: what kill_port would refuse, it refuses in a dry run.
    checked = kill_port(
        port,
        protocol=proto,
        sig=signum,
        timeout=args.timeout,
        dry_run=True,
        holders=holders,
        container=args.container,
    )
    if not holders or args.dry_run:
        if args.json:
            out.json(checked.to_json())
        elif not holders:
            out.line(f"no process holds {label}")
        else:
            out.line(f"dry run: would {_action(checked, name)}")
        return 0 if holders else 1
    if not args.yes and not _confirm(out, f"{_action(checked, name).capitalize()}?"):
        out.line("nothing signalled")
        return 1
    return _report(_kill(port, proto, signum, holders, args), args, out, label, name)


def _kill(
    port: int,
    proto: Protocol | None,
    signum: int,
    holders: list[PortHolder],
    args: argparse.Namespace,
) -> KillResult:
    from portbook import kill_port

    return kill_port(
        port,
        protocol=proto,
        sig=signum,
        timeout=args.timeout,
        force=args.force,
        holders=holders,
        container=args.container,
    )


def _action(planned: KillResult, name: str) -> str:
    """What will be done: ``send SIGTERM to 12, 13`` or ``stop container web (docker)``."""
    containers = []
    for h in planned.holders:
        c = h.published.container if h.published is not None else None
        if c is not None and c not in containers:
            containers.append(c)
    if containers and all(h.published is not None for h in planned.holders):
        names = ", ".join(f"{c.name or c.short_id} ({c.runtime})" for c in containers)
        return f"stop container {names}"
    return f"send {name} to {', '.join(str(h.pid) for h in planned.holders)}"


def _confirm(out: Output, question: str) -> bool:
    from portbook import UsageError

    if sys.stdin is None or not sys.stdin.isatty():
        raise UsageError("not asking without a terminal: pass --yes to signal these processes")
    out.stream.write(f"{question} [y/N] ")
    out.stream.flush()
    try:
        answer = sys.stdin.readline()
    except (OSError, UnicodeDecodeError):
        return False  # an answer that cannot be read is not a yes
    return answer.strip().lower() in ("y", "yes")


def _show(holders: Sequence[PortHolder], out: Output) -> None:
    """The holders as process trees, with what else each holds."""
    depth: dict[int, int] = {}
    rows = []
    for h in holders:
        depth[h.pid] = depth.get(h.parent, -1) + 1 if h.parent is not None else 0
        socks = ", ".join(_socket_text(s) for s in h.sockets)
        cmd = " ".join(h.process.cmdline) if h.process.cmdline else (h.process.name or "?")
        rows.append(["  " * depth[h.pid] + str(h.pid), h.process.user or "?", socks, cmd])
    out.table(["PID", "USER", "SOCKETS", "COMMAND"], rows)
    for h in holders:
        c = h.published.container if h.published is not None else None
        if c is not None:
            out.line(
                f"pid {h.pid} ({h.process.name}) holds it for container "
                f"{c.name or c.short_id} ({c.runtime}, {c.short_id})"
            )
        if h.also_holds:
            also = ", ".join(_socket_text(s) for s in h.also_holds)
            out.line(f"pid {h.pid} also holds {also}: stopping it frees those too")


def _socket_text(s: Any) -> str:
    from portbook import Endpoint

    return f"{s.protocol.value} {s.state.value} {Endpoint(s.local_address, s.local_port)}"


def _report(
    result: KillResult, args: argparse.Namespace, out: Output, label: str, name: str
) -> int:
    if args.json:
        out.json(result.to_json())
    else:
        for c in result.stopped:
            out.line(f"stopped container {c.name or c.short_id} ({c.runtime})")
        if result.signalled:
            out.line(f"sent {name} to {', '.join(map(str, result.signalled))}")
        if result.killed:
            out.line(f"sent SIGKILL to {', '.join(map(str, result.killed))}")
        if result.released:
            out.line(f"{label} released")
    if result.released:
        return 0
    hint = "" if args.force else " (--force sends SIGKILL after the timeout)"
    holders = ", ".join(map(str, result.still_held_by)) or "a socket no process owns"
    out.error(f"{label} still held by {holders} after {args.timeout:g}s{hint}")
    return 1
