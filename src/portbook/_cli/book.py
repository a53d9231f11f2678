"""Commands of the book: what a port number means (lookup, search, info, update)."""

from __future__ import annotations

from portbook._cli._args import whole
from portbook._cli._output import says_registry_warning

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import Any

    from portbook import RegistryInfo, Service
    from portbook._cli._output import Output

_SOURCE_TITLES = {
    "iana": "IANA registry",
    "etc-services": "/etc/services",
    "unofficial": "unofficial (common defaults of widely used software, not IANA-assigned)",
}


def register(subparsers: Any) -> None:
    for add in _PARSERS.values():
        add(subparsers)


def register_command(subparsers: Any, command: str) -> None:
    """Register only ``command``: each parser costs argparse a few gettext look-ups
    and formatters, and a run needs just its own (see ``portbook._cli.build_parser``)."""
    _PARSERS[command](subparsers)


# lookup's options when none is given (see LS_DEFAULTS in portbook._cli.live).
LOOKUP_DEFAULTS: dict[str, object] = {"proto": None, "json": False, "long": False}


def _add_lookup(subparsers: Any) -> None:
    lookup = subparsers.add_parser(
        "lookup",
        help="what a port, range or service name means",
        description=(
            "Every entry for a port (443, tcp/443, 443/udp), a range (6000-6010) or a "
            "service name (https), grouped by source: IANA, /etc/services, unofficial."
        ),
    )
    lookup.add_argument("query", metavar="PORT|NAME|RANGE")
    lookup.add_argument("--proto", metavar="P", help="only tcp, udp, sctp or dccp entries")
    lookup.add_argument("--json", action="store_true", help="print a JSON array for programs")
    lookup.add_argument("-l", "--long", action="store_true", help="show every field of each entry")
    lookup.set_defaults(handler=run_lookup)


def _add_search(subparsers: Any) -> None:
    search = subparsers.add_parser(
        "search",
        help="find services by words in their names and descriptions",
        description="Entries whose name or description contains TEXT, best match first.",
    )
    search.add_argument("text", metavar="TEXT")
    search.add_argument(
        "--limit", type=whole(1, 10_000), default=20, metavar="N", help="at most N (1-10000)"
    )
    search.add_argument("--json", action="store_true", help="print a JSON array for programs")
    search.set_defaults(handler=run_search)


def _add_info(subparsers: Any) -> None:
    info = subparsers.add_parser(
        "info",
        help="data sources, port classes and this machine's port ranges",
        description=(
            "Show the registry data in use (source, date, counts), the port classes and "
            "this machine's ephemeral and reserved ranges."
        ),
    )
    info.add_argument("--json", action="store_true", help="print JSON for programs")
    info.set_defaults(handler=run_info)


def _add_update(subparsers: Any) -> None:
    update = subparsers.add_parser(
        "update",
        help="install a newer IANA registry file (XML or CSV)",
        description=(
            "Validate an IANA service-names-port-numbers file (XML or CSV, a path or an "
            "http(s) URL) and install it in the user data directory. The data in use is "
            "kept if anything is wrong with the new file."
        ),
    )
    update.add_argument(
        "--from", dest="source", required=True, metavar="PATH_OR_URL", help="file or URL"
    )
    update.add_argument("--json", action="store_true", help="print JSON for programs")
    update.set_defaults(handler=run_update)


# In the order of `portbook --help`.
_PARSERS = {"lookup": _add_lookup, "search": _add_search, "info": _add_info, "update": _add_update}


def _ports(s: Service) -> str:
    if s.port is None:
        return "-"
    return str(s.port) if s.port_end in (None, s.port) else f"{s.port}-{s.port_end}"


def _first_line(text: str) -> str:
    return text.split("\n", 1)[0]


def _render_services(out: Output, services: Sequence[Service]) -> None:
    first = True
    for source, title in _SOURCE_TITLES.items():
        group = [s for s in services if s.source.value == source]
        if not group:
            continue
        if not first:
            out.line()
        first = False
        out.heading(title)
        if source == "unofficial":
            out.table(
                ["PORT", "PROTO", "NAME", "SOFTWARE", "DESCRIPTION"],
                [
                    [_ports(s), s.protocol or "-", s.name or "-", s.software or "", s.description]
                    for s in group
                ],
            )
        elif source == "etc-services":
            out.table(
                ["PORT", "PROTO", "NAME", "ALIASES", "COMMENT"],
                [
                    [
                        _ports(s),
                        s.protocol or "-",
                        s.name or "-",
                        " ".join(s.aliases),
                        s.description,
                    ]
                    for s in group
                ],
            )
        else:
            out.table(
                ["PORT", "PROTO", "NAME", "STATUS", "DESCRIPTION"],
                [
                    [
                        _ports(s),
                        s.protocol or "any",
                        s.name or "-",
                        s.status.value,
                        _first_line(s.description),
                    ]
                    for s in group
                ],
            )
            # IANA's warnings are worth a line each; the rest is in --long.
            # An unnamed Unassigned/Reserved block's warning may be about another
            # port of the block, so it is labelled with the block, not the port.
            seen = dict.fromkeys(
                (s.name or f"{s.status.value} block {_ports(s)}", s.unauthorized_use) for s in group
            )
            for label, warning in seen:
                if warning:
                    out.line(f"unauthorized use reported ({label}): {_first_line(warning)}")


def _render_long(out: Output, services: Sequence[Service]) -> None:
    for i, s in enumerate(services):
        if i:
            out.line()
        fields = s.to_json()
        fields["port"] = _ports(s)
        del fields["port_end"]
        width = max(len(k) for k in fields)
        for key, value in fields.items():
            if value is None or value in ([], ""):
                continue
            text = ", ".join(value) if isinstance(value, list) else str(value)
            lines = text.split("\n")
            out.line(f"{key.ljust(width)}  {lines[0]}")
            for more in lines[1:]:
                out.line(f"{' ' * width}  {more}")


@says_registry_warning
def run_lookup(args: argparse.Namespace, out: Output) -> int:
    from portbook import lookup

    query: str = args.query
    services = lookup(query, args.proto)
    if args.json:
        out.json([s.to_json() for s in services])
        return 0 if services else 1
    if not services:
        out.error(f"nothing known about {query!r}")
        return 1
    if args.long:
        _render_long(out, services)
    else:
        _render_services(out, services)
    _port_footer(out, query)
    return 0


def _port_footer(out: Output, query: str) -> None:
    """For one port: its IANA class and where it sits in this machine's ranges."""
    from portbook import local_ranges, parse_port_spec, port_class

    ports = parse_port_spec(query).ports
    if ports is None or not ports.single:
        return
    port = ports.first
    cls = port_class(port)
    ranges = local_ranges()
    where = "inside" if port in ranges.ephemeral else "outside"
    reserved = "; reserved on this machine" if ranges.is_reserved(port) else ""
    out.line()
    out.line(
        f"{port} is a {cls.iana_name} port ({cls.common_name}), {where} this machine's "
        f"ephemeral range {ranges.ephemeral}{reserved}"
    )


@says_registry_warning
def run_search(args: argparse.Namespace, out: Output) -> int:
    from portbook import search

    services = search(args.text, args.limit)
    if args.json:
        out.json([s.to_json() for s in services])
        return 0 if services else 1
    if not services:
        out.error(f"nothing matches {args.text!r}")
        return 1
    out.table(
        ["PORT", "PROTO", "NAME", "SOURCE", "DESCRIPTION"],
        [
            [
                _ports(s),
                s.protocol or "-",
                s.name or "-",
                s.source.value,
                _first_line(s.description),
            ]
            for s in services
        ],
    )
    return 0


def run_info(args: argparse.Namespace, out: Output) -> int:
    from portbook import PortClass, local_ranges, registry_info

    ranges = local_ranges()
    reg = registry_info()
    classes = [
        {"class": c.iana_name, "common_name": c.common_name, "first": c.first, "last": c.last}
        for c in PortClass
    ]
    if reg.warning:
        out.warn(reg.warning)
    if args.json:
        out.json(
            {
                "registry": reg.to_json(),
                "port_classes": classes,
                "ephemeral": {"first": ranges.ephemeral.first, "last": ranges.ephemeral.last},
                "reserved": [str(r) for r in ranges.reserved],
                "ranges_source": ranges.source,
            }
        )
        return 0
    out.heading("Registry")
    out.line(f"IANA service names and port numbers, {_dates(reg)} ({reg.origin} data)")
    out.table(
        ["SOURCE", "ENTRIES", "DETAIL"],
        [
            [
                "iana",
                str(reg.records),
                f"{reg.assigned} assigned, {reg.reserved} reserved, "
                f"{reg.unassigned} unassigned, {reg.names_only} name-only; "
                f"{reg.source_name} ({reg.source_format})",
            ],
            ["etc-services", str(reg.etc_services_entries), reg.etc_services_path or "none"],
            ["unofficial", str(reg.unofficial_entries), "curated, not IANA-assigned"],
        ],
    )
    out.line(f"data file: {reg.path}")
    out.line()
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


def _dates(reg: RegistryInfo) -> str:
    newest = reg.newest_record.isoformat() if reg.newest_record else "unknown"
    if reg.updated:
        return f"updated {reg.updated.isoformat()}"
    return f"registry date not recorded, newest entry {newest}"


def run_update(args: argparse.Namespace, out: Output) -> int:
    from portbook import update_registry

    reg = update_registry(args.source)
    if args.json:
        out.json(reg.to_json())
        return 0
    out.line(
        f"registry updated: {reg.records} records from {reg.source_name} "
        f"({reg.source_format}, {_dates(reg)}), installed at {reg.path}"
    )
    return 0
