"""Commands of the book: what a port number means."""

from __future__ import annotations

import argparse
from typing import Any

from ._output import Output


def register(subparsers: Any) -> None:
    info = subparsers.add_parser(
        "info",
        help="data sources, port classes and this machine's port ranges",
        description="Show the port classes and this machine's ephemeral and reserved ranges.",
    )
    info.add_argument("--json", action="store_true", help="print JSON for programs")
    info.set_defaults(handler=run_info)


def run_info(args: argparse.Namespace, out: Output) -> int:
    from portbook import PortClass, local_ranges

    ranges = local_ranges()
    classes = [
        {"class": c.iana_name, "common_name": c.common_name, "first": c.first, "last": c.last}
        for c in PortClass
    ]
    if args.json:
        out.json(
            {
                "port_classes": classes,
                "ephemeral": {"first": ranges.ephemeral.first, "last": ranges.ephemeral.last},
                "reserved": [str(r) for r in ranges.reserved],
                "ranges_source": ranges.source,
            }
        )
        return 0
    out.heading("Port classes (IANA, RFC 6335)")
    out.table(
        ["CLASS", "ALSO CALLED", "PORTS"],
        [[c.iana_name, c.common_name, str(c.range)] for c in PortClass],
    )
    out.line()
    out.heading("This machine")
    out.line(f"ephemeral range  {ranges.ephemeral}  ({ranges.source})")
    reserved = ", ".join(str(r) for r in ranges.reserved) or "none"
    out.line(f"reserved ports   {reserved}")
    return 0
