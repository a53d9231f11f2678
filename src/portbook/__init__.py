"""portbook: the port-number naming system of one computer, made visible and usable.

A port has three names, and portbook joins them: what the number means (the
book), which program holds it right now (the live table), and your own names
for your services. The public API is exactly the names in ``__all__``; each
is imported on first use, so that ``import portbook`` (and so the CLI)
starts fast. The package is laid out as the three names are:

* ``_book/``: the book (IANA registry, /etc/services, unofficial defaults);
* ``_live/``: the live table (backends, holders, the ``Socket`` records);
* ``_names/``: your names (the store, leases, the picker, run);
* ``_joined.py``: where the three meet (the live table with the book's and
  your names for its ports);
* ``_tools/``: the tools around ports (wait, kill, route, ephemeral);
* ``_cli/``: the command line, a client of this public API;
* shared by all: ``_ports`` (the port model and what users type),
  ``_exceptions`` (the one error tree), ``_record`` (the one record
  mechanism), ``_machine`` (this machine's ranges and network facts),
  ``_proc`` (/proc readers), ``_addresses`` (address text), ``_paths``.
"""

from __future__ import annotations

# Not `from typing import TYPE_CHECKING`: importing typing costs about a
# quarter of an interpreter start, and type checkers treat any name
# TYPE_CHECKING as true. Nor importlib (it brings warnings): __import__ below.
TYPE_CHECKING = False

__version__ = "0.1.0"

# name -> private module that defines it. __all__, this table and the TYPE_CHECKING
# imports below list the same names; tests/test_public_api.py checks that they agree.
_EXPORTS: dict[str, str] = {
    # errors
    "InvalidNameError": "_exceptions",
    "InvalidPortSpecError": "_exceptions",
    "NotFoundError": "_exceptions",
    "PortUnavailableError": "_exceptions",
    "PortbookError": "_exceptions",
    "ProcessSignalError": "_exceptions",
    "RangeExhaustedError": "_exceptions",
    "RegistryError": "_exceptions",
    "RegistryUpdateError": "_exceptions",
    "SocketTableError": "_exceptions",
    "StoreCorruptError": "_exceptions",
    "StoreError": "_exceptions",
    "StoreLockedError": "_exceptions",
    "StoreReadOnlyError": "_exceptions",
    "StoreVersionError": "_exceptions",
    "UnsupportedError": "_exceptions",
    "UsageError": "_exceptions",
    "CommandError": "_exceptions",
    "WaitTimeoutError": "_exceptions",
    # the port model
    "Family": "_ports",
    "PortClass": "_ports",
    "PortRange": "_ports",
    "PortSpec": "_ports",
    "Protocol": "_ports",
    "parse_port": "_ports",
    "parse_port_range": "_ports",
    "parse_port_spec": "_ports",
    "parse_protocol": "_ports",
    "port_class": "_ports",
    # this machine's ranges
    "LocalRanges": "_machine",
    "local_ranges": "_machine",
    # your names: leases, names and their store
    "Assignment": "_names.assignments",
    "Holder": "_names.holder",
    "Lease": "_names.leases",
    "NameStatus": "_joined",
    "Store": "_names.store",
    "assign": "_names.names",
    "bind_free_port": "_names.picker",
    "export_names": "_names.transfer",
    "get": "_names.names",
    "import_names": "_names.transfer",
    "lease_name": "_names.names",
    "list_leases": "_names.leases",
    "list_names": "_names.names",
    "name_status": "_joined",
    "PortQuery": "_joined",
    "resolve_ports": "_joined",
    "find_sockets": "_joined",
    "pick_port": "_names.picker",
    "run_on_name": "_names.run",
    "name_environment": "_names.names",
    "PickPolicy": "_names.picker",
    "release": "_names.names",
    "release_lease": "_names.leases",
    "transfer_lease": "_names.leases",
    # the book: what a port number means
    "Book": "_book.book",
    "RegistryInfo": "_book.records",
    "Service": "_book.records",
    "ServiceSource": "_book.records",
    "ServiceStatus": "_book.records",
    "is_assigned": "_book.book",
    "lookup": "_book.book",
    "registry_info": "_book.book",
    "registry_warning": "_book.book",
    "search": "_book.book",
    "service_name": "_book.book",
    "update_registry": "_book.book",
    # the live table
    "Exposure": "_live.records",
    "Socket": "_live.records",
    "SocketProcess": "_live.records",
    "SocketState": "_live.records",
    "list_sockets": "_joined",
    "SocketChanges": "_live.watch",
    "watch_sockets": "_joined",
    "socket_backend": "_live.table",
    "sockets_on_port": "_joined",
    "sockets_json": "_live.jsontext",
    "NetlinkBackend": "_live.backends",
    "ProcfsBackend": "_live.backends",
    "PsutilBackend": "_live.backends",
    "SocketBackend": "_live.backends",
    "RawSocket": "_live.backends",
    "TableQuery": "_live.backends",
    "SocketTable": "_live.records",
    "socket_table": "_joined",
    "SocketStream": "_live.table",
    "socket_stream": "_joined",
    # what is behind a port: namespaces, containers, units, published ports
    "Container": "_live.containers",
    "DnatRule": "_live.nat",
    "Netns": "_live.netns",
    "NetnsKind": "_live.netns",
    "Published": "_live.published",
    "Runtime": "_live.cgroups",
    "Unit": "_live.cgroups",
    "port_forwards": "_live.behind",
    # wait, kill, route, ephemeral
    "Endpoint": "_tools.route",
    "Route": "_tools.route",
    "RouteRule": "_tools.route",
    "route": "_tools.route",
    "route_packet": "_tools.route",
    "WaitTarget": "_tools.wait",
    "wait_for_free": "_tools.wait",
    "wait_for_port": "_tools.wait",
    "KillResult": "_tools.kill",
    "PortHolder": "_tools.kill",
    "kill_port": "_tools.kill",
    "port_holders": "_tools.kill",
    "DestinationUsage": "_tools.ephemeral",
    "BindReason": "_tools.check",
    "PortCheck": "_tools.check",
    "check_port": "_tools.check",
    "EphemeralUsage": "_tools.ephemeral",
    "ephemeral_usage": "_tools.ephemeral",
    # helpers the command line uses
    "bind_activation_socket": "_names.run",
    "write_sockets_json": "_live.jsontext",
    "holder_for": "_names.holder",
    "ipv6_available": "_machine",
    "address_text": "_addresses",
    "endpoint_text": "_addresses",
    "parse_wait_target": "_tools.wait",
    "parse_signal": "_tools.kill",
    "parse_route_args": "_tools.route",
}

__all__ = [
    "Assignment",
    "BindReason",
    "Book",
    "CommandError",
    "Container",
    "DestinationUsage",
    "DnatRule",
    "Endpoint",
    "EphemeralUsage",
    "Exposure",
    "Family",
    "Holder",
    "InvalidNameError",
    "InvalidPortSpecError",
    "KillResult",
    "Lease",
    "LocalRanges",
    "NameStatus",
    "NetlinkBackend",
    "Netns",
    "NetnsKind",
    "NotFoundError",
    "PickPolicy",
    "PortCheck",
    "PortClass",
    "PortHolder",
    "PortQuery",
    "PortRange",
    "PortSpec",
    "PortUnavailableError",
    "PortbookError",
    "ProcessSignalError",
    "ProcfsBackend",
    "Protocol",
    "PsutilBackend",
    "Published",
    "RangeExhaustedError",
    "RawSocket",
    "RegistryError",
    "RegistryInfo",
    "RegistryUpdateError",
    "Route",
    "RouteRule",
    "Runtime",
    "Service",
    "ServiceSource",
    "ServiceStatus",
    "Socket",
    "SocketBackend",
    "SocketChanges",
    "SocketProcess",
    "SocketState",
    "SocketStream",
    "SocketTable",
    "SocketTableError",
    "Store",
    "StoreCorruptError",
    "StoreError",
    "StoreLockedError",
    "StoreReadOnlyError",
    "StoreVersionError",
    "TableQuery",
    "Unit",
    "UnsupportedError",
    "UsageError",
    "WaitTarget",
    "WaitTimeoutError",
    "__version__",
    "address_text",
    "assign",
    "bind_activation_socket",
    "bind_free_port",
    "check_port",
    "endpoint_text",
    "ephemeral_usage",
    "export_names",
    "find_sockets",
    "get",
    "holder_for",
    "import_names",
    "ipv6_available",
    "is_assigned",
    "kill_port",
    "lease_name",
    "list_leases",
    "list_names",
    "list_sockets",
    "local_ranges",
    "lookup",
    "name_environment",
    "name_status",
    "parse_port",
    "parse_port_range",
    "parse_port_spec",
    "parse_protocol",
    "parse_route_args",
    "parse_signal",
    "parse_wait_target",
    "pick_port",
    "port_class",
    "port_forwards",
    "port_holders",
    "registry_info",
    "registry_warning",
    "release",
    "release_lease",
    "resolve_ports",
    "route",
    "route_packet",
    "run_on_name",
    "search",
    "service_name",
    "socket_backend",
    "socket_stream",
    "socket_table",
    "sockets_json",
    "sockets_on_port",
    "transfer_lease",
    "update_registry",
    "wait_for_free",
    "wait_for_port",
    "watch_sockets",
    "write_sockets_json",
]

if TYPE_CHECKING:
    from ._book.book import (
        Book,
        is_assigned,
        lookup,
        registry_info,
        registry_warning,
        search,
        service_name,
        update_registry,
    )
    from ._book.records import RegistryInfo, Service, ServiceSource, ServiceStatus
    from ._exceptions import (
        CommandError,
        InvalidNameError,
        InvalidPortSpecError,
        NotFoundError,
        PortbookError,
        PortUnavailableError,
        ProcessSignalError,
        RangeExhaustedError,
        RegistryError,
        RegistryUpdateError,
        SocketTableError,
        StoreCorruptError,
        StoreError,
        StoreLockedError,
        StoreReadOnlyError,
        StoreVersionError,
        UnsupportedError,
        UsageError,
        WaitTimeoutError,
    )
    from ._machine import LocalRanges, local_ranges
    from ._ports import (
        Family,
        PortClass,
        PortRange,
        PortSpec,
        Protocol,
        parse_port,
        parse_port_range,
        parse_port_spec,
        parse_protocol,
        port_class,
    )

if TYPE_CHECKING:  # the live table
    from ._joined import list_sockets, sockets_on_port, watch_sockets
    from ._live.backends import (
        NetlinkBackend,
        ProcfsBackend,
        PsutilBackend,
        RawSocket,
        SocketBackend,
        TableQuery,
    )
    from ._live.jsontext import sockets_json
    from ._live.records import Exposure, Socket, SocketProcess, SocketState, SocketTable
    from ._live.table import SocketStream, socket_backend
    from ._live.watch import SocketChanges

if TYPE_CHECKING:  # what is behind a port
    from ._joined import socket_stream, socket_table
    from ._live.behind import port_forwards
    from ._live.cgroups import Runtime, Unit
    from ._live.containers import Container
    from ._live.nat import DnatRule
    from ._live.netns import Netns, NetnsKind
    from ._live.published import Published

if TYPE_CHECKING:  # your names
    from ._joined import NameStatus, PortQuery, find_sockets, name_status, resolve_ports
    from ._names.assignments import Assignment
    from ._names.holder import Holder
    from ._names.leases import Lease, list_leases, release_lease, transfer_lease
    from ._names.names import assign, get, lease_name, list_names, name_environment, release
    from ._names.picker import PickPolicy, bind_free_port, pick_port
    from ._names.run import run_on_name
    from ._names.store import Store
    from ._names.transfer import export_names, import_names


if TYPE_CHECKING:  # wait, kill, route, ephemeral
    from ._tools.check import BindReason, PortCheck, check_port
    from ._tools.ephemeral import DestinationUsage, EphemeralUsage, ephemeral_usage
    from ._tools.kill import KillResult, PortHolder, kill_port, port_holders
    from ._tools.route import Endpoint, Route, RouteRule, route, route_packet
    from ._tools.wait import WaitTarget, wait_for_free, wait_for_port

if TYPE_CHECKING:  # helpers the command line uses
    from ._addresses import address_text, endpoint_text
    from ._live.jsontext import write_sockets_json
    from ._machine import ipv6_available
    from ._names.holder import holder_for
    from ._names.run import bind_activation_socket
    from ._tools.kill import parse_signal
    from ._tools.route import parse_route_args
    from ._tools.wait import parse_wait_target


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'portbook' has no attribute {name!r}")
    # A non-empty fromlist makes __import__ return the submodule itself.
    value = getattr(__import__(f"{__name__}.{module}", fromlist=(name,)), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
