"""``portbook check``: can a program bind this port right now, and if not, every reason why."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from portbook._cli._output import Output

if TYPE_CHECKING:
    from portbook import PortCheck


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "check",
        help="can a program bind PORT right now, and why not",
        description=(
            "Try a real bind() of PORT (without SO_REUSEADDR, on the wildcard address or "
            "--host) per protocol and family, and give every reason it fails or may: the "
            "sockets in the way (listeners, connections, bound-only sockets, TIME-WAIT, an IPv6 "
            "socket on :: that takes IPv4 too), a privileged port, and, as facts that do not "
            "stop a bind, the ephemeral and reserved ranges and your names and leases. PORT may "
            "be one of your names. Exit status: 0 bindable, 1 not, 2 bad input."
        ),
    )
    p.add_argument("port", metavar="PORT", help="a port number (or tcp/PORT, udp/PORT, a name)")
    p.add_argument(
        "--proto",
        choices=("tcp", "udp", "both"),
        help="tcp (default), udp or both (default: the name's own, or tcp)",
    )
    family = p.add_mutually_exclusive_group()
    family.add_argument("-4", dest="family", action="store_const", const=4, help="IPv4 only")
    family.add_argument("-6", dest="family", action="store_const", const=6, help="IPv6 only")
    p.add_argument("--host", metavar="ADDR", help="the address to bind (default: every address)")
    from portbook._cli.live import add_netns_option

    add_netns_option(p)
    p.add_argument("--json", action="store_true", help="print JSON for programs")
    p.set_defaults(handler=run_check, family=None)


def run_check(args: argparse.Namespace, out: Output) -> int:
    from portbook import InvalidPortSpecError, check_port, resolve_ports

    query = resolve_ports(args.port)
    if len(query.ports) != 1 or not query.ports[0].single:
        raise InvalidPortSpecError(args.port, "check takes one port (a number or one name)")
    if args.proto == "both":
        protocols = ["tcp", "udp"]
    else:
        protocols = [args.proto or (query.protocol.value if query.protocol else "tcp")]
    host = args.host or (str(query.host) if query.host not in (None, "localhost") else None)
    checks = check_port(
        query.ports[0].first,
        protocols=protocols,
        families=None if args.family is None else [args.family],
        host=host,
        netns=args.netns,
    )
    bindable = all(c.bindable for c in checks)
    if args.json:
        out.json(
            {"port": checks[0].port, "bindable": bindable, "checks": [c.to_json() for c in checks]}
        )
    else:
        for c in checks:
            _show(c, out)
    return 0 if bindable else 1


def _show(c: PortCheck, out: Output) -> None:
    from portbook import endpoint_text

    where = f"{c.protocol.value} {endpoint_text(c.address, c.port)}"
    if c.netns is not None:
        where += f" in network namespace {c.netns.name}"
    verdict = "can be bound now" if c.bindable else f"cannot be bound now ({c.error})"
    out.line(f"{where}: {verdict}")
    for r in c.reasons:
        out.line(f"  {'x' if r.blocks else '-'} {r.message}")
