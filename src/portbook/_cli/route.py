"""``portbook route``: which socket (and program) receives a packet, and by which rule."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from portbook._cli._output import Output


class _ArrowWords(argparse.ArgumentParser):
    """Lets ``->`` stand as its own word: argparse would read it as an option.

    Words beginning with ``->`` are handed on with the arrow written as ``→``
    (which route also accepts as typed). ``tcp/DST``, the form other commands
    take for a port, is read as ``tcp DST``.
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        words = list(sys.argv[1:] if args is None else args)
        words = ["\u2192" + w[2:] if w.startswith("->") else w for w in words]
        return super().parse_known_args(_protocol_apart(words), namespace)


_VALUED = ("--device", "--netns")  # the options that take the next word as their value


def _protocol_apart(words: list[str]) -> list[str]:
    """``words`` with a first positional ``tcp/...`` or ``udp/...`` split in two."""
    index = 0
    while index < len(words):
        word = words[index]
        if word == "--":
            index += 1
            break
        if not word.startswith("-"):
            break
        index += 2 if word in _VALUED else 1
    if index < len(words):
        proto, slash, rest = words[index].partition("/")
        if slash and rest and proto.lower() in ("tcp", "udp"):
            return [*words[:index], proto, rest, *words[index + 1 :]]
    return words


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "route",
        help="which socket (and program) receives a packet, and by which rule",
        description=(
            "Show the socket this machine's kernel delivers a TCP connection or UDP datagram "
            "to, its owning program, and the rule that chose it: established, exact-listener, "
            "wildcard-listener (incl. IPv6 dual-stack), reuseport-group or none; for an address "
            "that is not this machine's, not-local and where the routing table sends it. A port "
            "a container runtime publishes is followed into the container (inside); as root, a "
            "port no socket takes but a DNAT rule forwards answers dnat. "
            "PROTO DST may be written PROTO/DST (tcp/127.0.0.1:6379). "
            "Quote the arrow in a shell, where > redirects: "
            "portbook route udp '192.0.2.7:40000 -> 127.0.0.1:53'. "
            "Exit status: 0 a socket takes it, 1 none does, 2 bad input."
        ),
    )
    p.__class__ = type("RouteParser", (_ArrowWords, type(p)), {})
    p.add_argument("protocol", metavar="PROTO", help="tcp or udp")
    p.add_argument(
        "endpoints",
        nargs="+",
        metavar="[SRC_ADDR:SRC_PORT ->] DST",
        help=(
            "the destination (ADDR:PORT, [IPv6]:PORT, localhost:PORT or one of your names), "
            "optionally preceded by a source and '->'"
        ),
    )
    p.add_argument(
        "--device",
        metavar="IFACE",
        help="the interface the packet arrives on (default: lo for loopback)",
    )
    from portbook._cli.live import add_netns_option

    add_netns_option(p)
    p.add_argument("--json", action="store_true", help="print JSON for programs")
    p.set_defaults(handler=run_route)


def run_route(args: argparse.Namespace, out: Output) -> int:
    from portbook import RouteRule, parse_route_args, route

    source, destination = parse_route_args(args.endpoints)
    result = route(args.protocol, destination, source=source, device=args.device, netns=args.netns)
    if args.json:
        out.json(result.to_json())
        return 0 if result.rule not in (RouteRule.NONE, RouteRule.NOT_LOCAL) else 1
    head = f"{result.protocol.value} "
    head += f"{result.source} -> {result.destination}" if result.source else str(result.destination)
    if result.netns is not None:
        head += f" in network namespace {result.netns.name}"
    out.line(head)
    _show(result, out)
    inside = result.inside
    if result.published is not None and result.published.container is not None:
        c = result.published.container
        target = f"{result.published.target_address or ''}:{result.published.target_port}"
        out.line(
            f"into    container {c.name or c.short_id} ({c.runtime}, {c.short_id}), "
            f"forwarded by {result.published.by} to {target}"
        )
        if inside is None:
            out.line("inside  its network namespace could not be read")
    if inside is not None:
        out.line(f"inside  {inside.rule.value}: {inside.reason}")
        _show(inside, out, show_rule=False)
        if inside.rule is RouteRule.NONE:
            return 1
    return 0 if result.rule not in (RouteRule.NONE, RouteRule.NOT_LOCAL) else 1


def _show(result: Any, out: Output, *, show_rule: bool = True) -> None:
    """One decision: its rule and reason, its sockets, its notes."""
    if show_rule:
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
                _endpoint(s.remote_address, s.remote_port or 0)
                if s.remote_address is not None
                else ""
            )
            rows.append(
                [
                    s.state.value,
                    _endpoint(s.local_address, s.local_port),
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


def _endpoint(address: Any, port: int) -> str:
    from portbook import Endpoint

    return str(Endpoint(address, port))
