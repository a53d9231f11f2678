"""``portbook ephemeral``: the ephemeral range and how close each destination is to running out."""

from __future__ import annotations

import argparse
from typing import Any

from portbook._cli._args import number, whole
from portbook._cli._output import Output, count


def register(subparsers: Any) -> None:
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
        type=number(0, 100, zero=False, what="a percentage"),
        default=80.0,
        metavar="PERCENT",
        help="warn at or above this share of the range (default 80)",
    )
    p.add_argument(
        "--top", type=whole(0, 1_000_000), default=20, help="destinations to list (default 20)"
    )
    p.add_argument("--json", action="store_true", help="print JSON for programs")
    p.set_defaults(handler=run_ephemeral)


def run_ephemeral(args: argparse.Namespace, out: Output) -> int:
    from portbook import UsageError, ephemeral_usage

    if args.top < 0:
        raise UsageError("--top must not be negative")
    usage = ephemeral_usage(threshold=args.threshold / 100)
    if args.json:
        out.json(usage.to_json())
        return 0
    r = usage.ranges
    out.line(f"ephemeral range  {r.ephemeral}  ({count(len(r.ephemeral), 'port')}, {r.source})")
    out.line(f"reserved ports   {', '.join(str(x) for x in r.reserved) or 'none'}")
    out.line(f"usable           {count(usage.capacity, 'port')} per destination")
    if usage.bound:
        bound = count(usage.bound, "port")
        out.line(f"held by bind()   {bound} of the range (lost to every destination)")
    if usage.tw_reuse is not None:
        meaning = {0: "off", 1: "on", 2: "loopback only"}.get(usage.tw_reuse, str(usage.tw_reuse))
        out.line(f"tcp_tw_reuse     {usage.tw_reuse} ({meaning})")
    udp = count(usage.udp_in_use, "local port")
    out.line(f"udp              {udp} in use ({usage.udp_ratio:.1%})")
    out.line()
    if not usage.destinations:
        out.line("no outgoing TCP connection uses an ephemeral port")
    else:
        shown = usage.destinations[: args.top]
        out.table(
            ["DESTINATION", "IN USE", "TIME-WAIT", "OF", "USED"],
            [
                [
                    f"tcp {_endpoint(d.remote_address, d.remote_port)}",
                    str(d.in_use),
                    str(d.time_wait),
                    str(d.capacity),
                    f"{d.ratio:.1%}",
                ]
                for d in shown
            ],
        )
        if len(usage.destinations) > len(shown):
            out.line(f"... and {count(len(usage.destinations) - len(shown), 'more destination')}")
    for warning in usage.warnings:
        out.warn(f"close to running out of ephemeral ports: {warning}")
    return 0


def _endpoint(address: Any, port: int) -> str:
    from portbook import Endpoint

    return str(Endpoint(address, port))
