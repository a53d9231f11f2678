"""Tools around ports: wait for one, free one, see which socket a packet reaches, ephemeral use."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from portbook._cli._output import Output

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class _CommandAfterDashes(argparse.ArgumentParser):
    """Takes everything after the first ``--`` as the command to run, untouched.

    argparse would otherwise mix the command's words into the positional
    targets (``wait 8080 -- sh -c 'exit 3'``).
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        words = list(sys.argv[1:] if args is None else args)
        command: list[str] = []
        if "--" in words:
            cut = words.index("--")
            words, command = words[:cut], words[cut + 1 :]
        ns, extras = super().parse_known_args(words, namespace)
        ns.command = command
        return ns, extras


class _ArrowWords(argparse.ArgumentParser):
    """Lets ``->`` stand as its own word: argparse would read it as an option.

    Words beginning with ``->`` are handed on with the arrow written as ``→``
    (which route also accepts as typed).
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        words = list(sys.argv[1:] if args is None else args)
        words = ["\u2192" + w[2:] if w.startswith("->") else w for w in words]
        return super().parse_known_args(words, namespace)


def register(subparsers: Any) -> None:
    _register_wait(subparsers)
    _register_kill(subparsers)
    _register_route(subparsers)
    _register_ephemeral(subparsers)


# ---------------------------------------------------------------------- wait


def _register_wait(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "wait",
        add_help=False,
        usage="portbook wait [options] [HOST:]PORT... [-- CMD ...]",
        help="wait until ports accept connections (or are free), then run a command",
        description=(
            "Wait until every [HOST:]PORT accepts connections, or with --closed until it is "
            "free to bind on this machine, then run CMD if given. Ports of this machine are "
            "watched in the kernel's socket table; other hosts are probed by connecting. "
            "Accepts wait-for-it's options (-h HOST -p PORT, -t, -s, -q, -- CMD)."
        ),
        epilog="Exit status: 0 when satisfied (or CMD's status), 1 on timeout, 2 on bad input.",
    )
    # Grafted on so that only this command splits at "--" (see the class).
    p.__class__ = type("WaitParser", (_CommandAfterDashes, type(p)), {})
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("targets", nargs="*", metavar="[HOST:]PORT", help="what to wait for")
    p.add_argument("-h", "--host", help="host for targets that name none (wait-for-it's -h)")
    p.add_argument(
        "-p", "--port", action="append", default=[], help="a port to wait for (wait-for-it's -p)"
    )
    p.add_argument(
        "-t",
        "--timeout",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="give up after this long (default 15; 0 waits forever)",
    )
    p.add_argument(
        "--closed",
        action="store_true",
        help="wait until free to bind on this machine (no listener, connection or TIME-WAIT)",
    )
    p.add_argument(
        "--reuseaddr",
        action="store_true",
        help="with --closed: TIME-WAIT does not count (for servers that set SO_REUSEADDR)",
    )
    p.add_argument(
        "--connect",
        action="store_true",
        help="probe this machine's ports by connecting too (ports published by NAT rules)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.add_argument(
        "-s", "--strict", action="store_true", help="run CMD only if every target was satisfied"
    )
    p.set_defaults(handler=run_wait, command=[])


def run_wait(args: argparse.Namespace, out: Output) -> int:
    from portbook import (
        UsageError,
        WaitTarget,
        WaitTimeoutError,
        parse_wait_target,
        wait_for_free,
        wait_for_port,
    )

    words = list(args.targets) + list(args.port)
    if not words:
        raise UsageError("give at least one [HOST:]PORT to wait for")
    if args.timeout < 0:
        raise UsageError("timeout must not be negative")
    if args.reuseaddr and not args.closed:
        raise UsageError("--reuseaddr only applies with --closed")
    targets = [parse_wait_target(w, host=args.host) for w in words]
    what = "free" if args.closed else "open"

    def ready(target: WaitTarget, seconds: float) -> None:
        if not args.quiet:
            out.err.write(f"portbook: {target} is {what} after {seconds:.3f}s\n")
            out.err.flush()

    timeout = None if args.timeout == 0 else args.timeout
    waiter = wait_for_free if args.closed else wait_for_port
    kwargs: dict[str, Any] = {"timeout": timeout, "connect": args.connect, "on_ready": ready}
    if args.closed:
        kwargs["reuseaddr"] = args.reuseaddr
    satisfied = True
    try:
        waiter(*targets, **kwargs)
    except WaitTimeoutError as exc:
        satisfied = False
        out.error(str(exc))
    if not args.command:
        return EXIT_OK if satisfied else EXIT_FAILURE
    if not satisfied and args.strict:
        out.error("strict mode: not running the command")
        return EXIT_FAILURE
    return _run_command(args.command, out)


def _run_command(command: list[str], out: Output) -> int:
    import os

    out.stream.flush()
    out.err.flush()
    if out.stream is sys.stdout and out.err is sys.stderr:
        # As the real command, become CMD (as wait-for-it does with exec): in a
        # container entrypoint, signals such as docker stop's SIGTERM then reach
        # CMD itself, and CMD's exit status is the command's.
        try:
            os.execvp(command[0], command)
        except FileNotFoundError:
            out.error(f"command not found: {command[0]}")
            return 127
        except OSError as exc:
            out.error(f"cannot run {command[0]}: {exc.strerror}")
            return 126
    import subprocess

    try:
        done = subprocess.run(command, check=False)
    except FileNotFoundError:
        out.error(f"command not found: {command[0]}")
        return 127
    except OSError as exc:
        out.error(f"cannot run {command[0]}: {exc.strerror}")
        return 126
    # A command killed by a signal exits 128+N, as a shell reports it.
    return done.returncode if done.returncode >= 0 else 128 - done.returncode


# ---------------------------------------------------------------------- kill


def _register_kill(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "kill",
        help="stop the processes holding a port",
        description=(
            "Find the processes holding exactly PORT, show them, ask, send a signal (SIGTERM) "
            "and wait until the port is released. Never signals pid 1, portbook or its parents."
        ),
    )
    p.add_argument("port", metavar="PORT", help="a port number, or tcp/PORT, udp/PORT")
    p.add_argument("--signal", default="TERM", help="signal to send first (default TERM)")
    p.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for release (default 5)"
    )
    p.add_argument("--force", action="store_true", help="send SIGKILL if still held after timeout")
    p.add_argument(
        "--dry-run", action="store_true", help="show what would be signalled, do nothing"
    )
    p.add_argument("-y", "--yes", action="store_true", help="do not ask")
    p.add_argument("--json", action="store_true", help="print JSON for programs")
    p.set_defaults(handler=run_kill)


def _holder_rows(holders: Sequence[Any]) -> list[list[str]]:
    rows = []
    for h in holders:
        socks = ", ".join(
            f"{s.protocol.value} {s.state.value} {_addr(s.local_address, s.local_port)}"
            for s in h.sockets
        )
        cmd = " ".join(h.process.cmdline) if h.process.cmdline else (h.process.name or "?")
        rows.append([str(h.pid), h.process.user or "?", socks, cmd])
    return rows


def _addr(address: Any, port: int) -> str:
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def run_kill(args: argparse.Namespace, out: Output) -> int:
    from portbook import (
        InvalidPortSpecError,
        UsageError,
        kill_port,
        parse_port_spec,
        parse_signal,
        port_holders,
    )

    spec = parse_port_spec(args.port)
    if spec.ports is None or not spec.ports.single or spec.host is not None:
        raise InvalidPortSpecError(args.port, "expected one port number (or tcp/PORT, udp/PORT)")
    port, proto = spec.ports.first, spec.protocol
    signum = parse_signal(args.signal)
    if args.timeout < 0:
        raise UsageError("timeout must not be negative")
    holders = port_holders(port, proto)
    label = f"{proto.value}/{port}" if proto else f"port {port}"
    if not holders:
        result = kill_port(port, protocol=proto, sig=signum, dry_run=True, holders=[])
        if args.json:
            out.json(result.to_json())
        else:
            out.line(f"no process holds {label}")
        return EXIT_FAILURE
    if not args.json:
        out.table(["PID", "USER", "SOCKETS", "COMMAND"], _holder_rows(holders))
    import signal as _signal

    name = _signal.Signals(signum).name
    if args.dry_run:
        result = kill_port(port, protocol=proto, sig=signum, dry_run=True, holders=holders)
        if args.json:
            out.json(result.to_json())
        else:
            out.line(f"dry run: would send {name} to {', '.join(str(h.pid) for h in holders)}")
        return EXIT_OK
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("not asking without a terminal: pass --yes to signal these processes")
        out.stream.write(f"Send {name} to {len(holders)} process(es) holding {label}? [y/N] ")
        out.stream.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            out.line("nothing signalled")
            return EXIT_FAILURE
    result = kill_port(
        port,
        protocol=proto,
        sig=signum,
        timeout=args.timeout,
        force=args.force,
        holders=holders,
    )
    if args.json:
        out.json(result.to_json())
    else:
        if result.signalled:
            out.line(f"sent {name} to {', '.join(map(str, result.signalled))}")
        if result.killed:
            out.line(f"sent SIGKILL to {', '.join(map(str, result.killed))}")
        if result.released:
            out.line(f"{label} released")
    if not result.released:
        hint = "" if args.force else " (--force sends SIGKILL after the timeout)"
        out.error(
            f"{label} still held by {', '.join(map(str, result.still_held_by))} "
            f"after {args.timeout:g}s{hint}"
        )
        return EXIT_FAILURE
    return EXIT_OK


# ---------------------------------------------------------------------- route


def _register_route(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "route",
        help="which socket (and program) receives a packet, and by which rule",
        description=(
            "Show the socket this machine's kernel delivers a TCP connection or UDP datagram "
            "to, its owning program, and the rule that chose it: established, exact-listener, "
            "wildcard-listener (incl. IPv6 dual-stack), reuseport-group or none. "
            "Quote the arrow in a shell, where > redirects: "
            "portbook route udp '10.0.0.7:40000 -> 192.168.1.5:53'."
        ),
    )
    p.__class__ = type("RouteParser", (_ArrowWords, type(p)), {})
    p.add_argument("protocol", metavar="PROTO", help="tcp or udp")
    p.add_argument(
        "endpoints",
        nargs="+",
        metavar="[SRC_ADDR:SRC_PORT ->] DST_ADDR:DST_PORT",
        help="destination, optionally preceded by a source and '->'",
    )
    p.add_argument(
        "--device",
        metavar="IFACE",
        help="the interface the packet arrives on (default: lo for loopback)",
    )
    p.add_argument("--json", action="store_true", help="print JSON for programs")
    p.set_defaults(handler=run_route)


def run_route(args: argparse.Namespace, out: Output) -> int:
    from portbook import RouteRule, parse_route_args, route

    source, destination = parse_route_args(args.endpoints)
    result = route(args.protocol, destination, source=source, device=args.device)
    if args.json:
        out.json(result.to_json())
        return EXIT_OK if result.rule is not RouteRule.NONE else EXIT_FAILURE
    head = f"{result.protocol.value} "
    head += f"{result.source} -> {result.destination}" if result.source else str(result.destination)
    out.line(head)
    out.line(f"rule    {result.rule.value}")
    out.line(f"why     {result.reason}")
    if result.candidates:
        if result.group_size > 1:
            out.line(f"group   {result.group_size} sockets, one chosen by hash:")
        rows = []
        for s in result.candidates:
            owners = ", ".join(f"{p.name or '?'}[{p.pid}]" for p in s.processes) or (
                s.owner_note or "?"
            )
            remote = (
                _addr(s.remote_address, s.remote_port or 0) if s.remote_address is not None else ""
            )
            rows.append(
                [
                    s.state.value,
                    _addr(s.local_address, s.local_port),
                    remote,
                    "v6only"
                    if s.v6only
                    else ("dual-stack" if s.family == 6 and s.v6only is False else ""),
                    owners,
                ]
            )
        out.table(["STATE", "LOCAL", "PEER", "", "PROGRAM"], rows)
    for note in result.notes:
        if note not in result.reason:
            out.line(f"note    {note}")
    return EXIT_OK if result.rule is not RouteRule.NONE else EXIT_FAILURE


# ---------------------------------------------------------------------- ephemeral


def _register_ephemeral(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "ephemeral",
        help="ephemeral port range and how close each destination is to running out",
        description=(
            "Show this machine's ephemeral range and reserved ports, the local ports in use "
            "(TIME-WAIT included) toward each remote address and port, and warn when one is "
            "close to running out."
        ),
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=80.0,
        metavar="PERCENT",
        help="warn at or above this share of the range (default 80)",
    )
    p.add_argument("--top", type=int, default=20, help="destinations to list (default 20)")
    p.add_argument("--json", action="store_true", help="print JSON for programs")
    p.set_defaults(handler=run_ephemeral)


def run_ephemeral(args: argparse.Namespace, out: Output) -> int:
    from portbook import UsageError, ephemeral_usage

    if not 0 < args.threshold <= 100:
        raise UsageError("threshold is a percentage above 0 and at most 100")
    if args.top < 0:
        raise UsageError("--top must not be negative")
    usage = ephemeral_usage(threshold=args.threshold / 100)
    if args.json:
        out.json(usage.to_json())
        return EXIT_OK
    r = usage.ranges
    out.line(f"ephemeral range  {r.ephemeral}  ({len(r.ephemeral)} ports, {r.source})")
    out.line(f"reserved ports   {', '.join(str(x) for x in r.reserved) or 'none'}")
    out.line(f"usable           {usage.capacity} ports per destination")
    if usage.bound:
        out.line(f"held by bind()   {usage.bound} ports of the range (lost to every destination)")
    if usage.tw_reuse is not None:
        meaning = {0: "off", 1: "on", 2: "loopback only"}.get(usage.tw_reuse, str(usage.tw_reuse))
        out.line(f"tcp_tw_reuse     {usage.tw_reuse} ({meaning})")
    out.line(f"udp              {usage.udp_in_use} local ports in use ({usage.udp_ratio:.1%})")
    out.line()
    if not usage.destinations:
        out.line("no outgoing TCP connection uses an ephemeral port")
    else:
        shown = usage.destinations[: args.top]
        out.table(
            ["DESTINATION", "IN USE", "TIME-WAIT", "OF", "USED"],
            [
                [
                    f"tcp {_addr(d.remote_address, d.remote_port)}",
                    str(d.in_use),
                    str(d.time_wait),
                    str(d.capacity),
                    f"{d.ratio:.1%}",
                ]
                for d in shown
            ],
        )
        if len(usage.destinations) > len(shown):
            out.line(f"... and {len(usage.destinations) - len(shown)} more destinations")
    for warning in usage.warnings:
        out.warn(f"close to running out of ephemeral ports: {warning}")
    return EXIT_OK
