"""portbook: the port-number naming system of one computer, made visible and usable.

A port has three names, and portbook joins them: what the number means (the
IANA registry, /etc/services, this machine's ranges), which program holds it
right now (the kernel's socket table), and your own names for your services.

The public API is exactly the names in ``__all__``; everything lives in
private modules and is imported on first use, so that ``import portbook`` (and
so the CLI) starts fast.
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
    "UsageError": "_exceptions",
    "WaitTimeoutError": "_exceptions",
    # the port model
    "Family": "_model",
    "PortClass": "_model",
    "PortRange": "_model",
    "PortSpec": "_model",
    "Protocol": "_model",
    "parse_port": "_model",
    "parse_port_range": "_model",
    "parse_port_spec": "_model",
    "parse_protocol": "_model",
    "port_class": "_model",
    # this machine's ranges
    "LocalRanges": "_system",
    "local_ranges": "_system",
    # your names: leases, names and their store
    "Assignment": "_names",
    "Holder": "_procinfo",
    "Lease": "_leases",
    "NameStatus": "_names",
    "Store": "_store",
    "assign": "_names",
    "bind_free_port": "_picker",
    "export_names": "_names",
    "get": "_names",
    "import_names": "_names",
    "lease_name": "_names",
    "list_leases": "_leases",
    "list_names": "_names",
    "name_status": "_names",
    "pick_port": "_picker",
    "release": "_names",
    "release_lease": "_leases",
    "transfer_lease": "_leases",
    # the book: what a port number means
    "Book": "_book",
    "RegistryInfo": "_book",
    "Service": "_book",
    "ServiceSource": "_book",
    "ServiceStatus": "_book",
    "is_assigned": "_book",
    "lookup": "_book",
    "registry_info": "_book",
    "search": "_book",
    "service_name": "_book",
    "update_registry": "_book",
    # the live table
    "Exposure": "_sockets",
    "Socket": "_sockets",
    "SocketProcess": "_sockets",
    "SocketState": "_sockets",
    "list_sockets": "_live",
    "SocketChanges": "_live",
    "watch_sockets": "_live",
    "socket_backend": "_live",
    "sockets_on_port": "_live",
    "sockets_json": "_sockets",
    "NetlinkBackend": "_backends",
    "ProcfsBackend": "_backends",
    "PsutilBackend": "_backends",
    "SocketBackend": "_backends",
    # wait, kill, route, ephemeral
    "Endpoint": "_route",
    "Route": "_route",
    "RouteRule": "_route",
    "route": "_route",
    "route_packet": "_route",
    "WaitTarget": "_wait",
    "wait_for_free": "_wait",
    "wait_for_port": "_wait",
    "KillResult": "_kill",
    "PortHolder": "_kill",
    "kill_port": "_kill",
    "port_holders": "_kill",
    "DestinationUsage": "_ephemeral",
    "EphemeralUsage": "_ephemeral",
    "ephemeral_usage": "_ephemeral",
    # helpers the command line uses
    "bind_activation_socket": "_picker",
    "write_sockets_json": "_sockets",
    "holder_for": "_procinfo",
    "ipv6_available": "_picker",
    "parse_wait_target": "_wait",
    "parse_signal": "_kill",
    "parse_route_args": "_route",
}

__all__ = [
    "Assignment",
    "Book",
    "DestinationUsage",
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
    "NotFoundError",
    "PortClass",
    "PortHolder",
    "PortRange",
    "PortSpec",
    "PortUnavailableError",
    "PortbookError",
    "ProcessSignalError",
    "ProcfsBackend",
    "Protocol",
    "PsutilBackend",
    "RangeExhaustedError",
    "RegistryError",
    "RegistryInfo",
    "RegistryUpdateError",
    "Route",
    "RouteRule",
    "Service",
    "ServiceSource",
    "ServiceStatus",
    "Socket",
    "SocketBackend",
    "SocketChanges",
    "SocketProcess",
    "SocketState",
    "SocketTableError",
    "Store",
    "StoreCorruptError",
    "StoreError",
    "StoreLockedError",
    "StoreReadOnlyError",
    "StoreVersionError",
    "UsageError",
    "WaitTarget",
    "WaitTimeoutError",
    "__version__",
    "assign",
    "bind_activation_socket",
    "bind_free_port",
    "ephemeral_usage",
    "export_names",
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
    "port_holders",
    "registry_info",
    "release",
    "release_lease",
    "route",
    "route_packet",
    "search",
    "service_name",
    "socket_backend",
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
    from ._book import (
        Book,
        RegistryInfo,
        Service,
        ServiceSource,
        ServiceStatus,
        is_assigned,
        lookup,
        registry_info,
        search,
        service_name,
        update_registry,
    )
    from ._exceptions import (
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
        UsageError,
        WaitTimeoutError,
    )
    from ._model import (
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
    from ._system import LocalRanges, local_ranges

if TYPE_CHECKING:  # the live table
    from ._backends import NetlinkBackend, ProcfsBackend, PsutilBackend, SocketBackend
    from ._live import (
        SocketChanges,
        list_sockets,
        socket_backend,
        sockets_on_port,
        watch_sockets,
    )
    from ._sockets import Exposure, Socket, SocketProcess, SocketState, sockets_json

if TYPE_CHECKING:  # your names
    from ._leases import Lease, list_leases, release_lease, transfer_lease
    from ._names import (
        Assignment,
        NameStatus,
        assign,
        export_names,
        get,
        import_names,
        lease_name,
        list_names,
        name_status,
        release,
    )
    from ._picker import bind_free_port, pick_port
    from ._procinfo import Holder
    from ._store import Store


if TYPE_CHECKING:  # wait, kill, route, ephemeral
    from ._ephemeral import DestinationUsage, EphemeralUsage, ephemeral_usage
    from ._kill import KillResult, PortHolder, kill_port, port_holders
    from ._route import Endpoint, Route, RouteRule, route, route_packet
    from ._wait import WaitTarget, wait_for_free, wait_for_port

if TYPE_CHECKING:  # helpers the command line uses
    from ._kill import parse_signal
    from ._picker import bind_activation_socket, ipv6_available
    from ._procinfo import holder_for
    from ._route import parse_route_args
    from ._sockets import write_sockets_json
    from ._wait import parse_wait_target


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
