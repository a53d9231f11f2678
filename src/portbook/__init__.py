"""portbook: the port-number naming system of one computer, made visible and usable.

A port has three names, and portbook joins them: what the number means (the
IANA registry, /etc/services, this machine's ranges), which program holds it
right now (the kernel's socket table), and your own names for your services.

The public API is exactly the names in ``__all__``; everything lives in
private modules and is imported on first use, so that ``import portbook`` (and
so the CLI) starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
    "socket_backend": "_live",
    "sockets_on_port": "_live",
    "sockets_json": "_sockets",
    "NetlinkBackend": "_backends",
    "ProcfsBackend": "_backends",
    "PsutilBackend": "_backends",
    "SocketBackend": "_backends",
}

__all__ = [
    "Book",
    "Exposure",
    "Family",
    "InvalidNameError",
    "InvalidPortSpecError",
    "LocalRanges",
    "NetlinkBackend",
    "NotFoundError",
    "PortClass",
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
    "Service",
    "ServiceSource",
    "ServiceStatus",
    "Socket",
    "SocketBackend",
    "SocketProcess",
    "SocketState",
    "SocketTableError",
    "StoreCorruptError",
    "StoreError",
    "StoreLockedError",
    "StoreReadOnlyError",
    "StoreVersionError",
    "UsageError",
    "WaitTimeoutError",
    "__version__",
    "is_assigned",
    "list_sockets",
    "local_ranges",
    "lookup",
    "parse_port",
    "parse_port_range",
    "parse_port_spec",
    "parse_protocol",
    "port_class",
    "registry_info",
    "search",
    "service_name",
    "socket_backend",
    "sockets_json",
    "sockets_on_port",
    "update_registry",
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
    from ._live import list_sockets, socket_backend, sockets_on_port
    from ._sockets import Exposure, Socket, SocketProcess, SocketState, sockets_json


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'portbook' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
