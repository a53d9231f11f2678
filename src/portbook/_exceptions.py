"""The one exception hierarchy of portbook.

Every error portbook raises on purpose is a :class:`PortbookError`. Two branches
matter to callers: *misuse* (the caller asked for something that can never
work: a bad port, a bad name) and *the world* (the request was fine but the
machine said no: a port is taken, a store is locked, a file is corrupt)::

    PortbookError
    ├── UsageError (also ValueError)      the input can never be valid
    │   ├── InvalidPortSpecError          "70000", "tcp/", "foo:bar:baz"
    │   └── InvalidNameError              "", a 300-character name, control characters
    ├── NotFoundError (also LookupError)  nothing by that name or number
    ├── RegistryError                     packaged or user registry data unusable
    │   └── RegistryUpdateError           a new IANA file was refused; old data kept
    ├── SocketTableError                  the kernel's socket table could not be read
    ├── UnsupportedError                  this machine cannot do it (no IPv6, say)
    ├── PortUnavailableError              a port is taken (by a name, a lease, a program)
    │   └── RangeExhaustedError           no free port left in the range asked for
    ├── StoreError                        the names database
    │   ├── StoreLockedError              locked longer than the busy timeout
    │   ├── StoreReadOnlyError            cannot be written
    │   ├── StoreCorruptError             not a portbook database, or damaged
    │   └── StoreVersionError             written by a newer portbook
    ├── ProcessSignalError                a process could not be signalled
    ├── CommandError                      a command to run could not be started
    └── WaitTimeoutError (also TimeoutError)  a port did not open/close in time

OS errors are translated at the boundary (``raise ... from exc``) so that the
original cause stays on ``__cause__``. Every error pickles with its fields
(multiprocessing and pytest-xdist send them between processes).
"""

from __future__ import annotations

__all__ = [
    "CommandError",
    "InvalidNameError",
    "InvalidPortSpecError",
    "NotFoundError",
    "PortUnavailableError",
    "PortbookError",
    "ProcessSignalError",
    "RangeExhaustedError",
    "RegistryError",
    "RegistryUpdateError",
    "SocketTableError",
    "StoreCorruptError",
    "StoreError",
    "StoreLockedError",
    "StoreReadOnlyError",
    "StoreVersionError",
    "UnsupportedError",
    "UsageError",
    "WaitTimeoutError",
]


class PortbookError(Exception):
    """Base class of every error portbook raises on purpose."""

    def __reduce__(self) -> tuple[object, ...]:
        # Exception pickles as cls(*self.args), which the subclasses below,
        # whose __init__ takes other arguments than their message, cannot
        # take; rebuild from the message and the fields instead.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(
    cls: type[PortbookError], args: tuple[object, ...], state: dict[str, object]
) -> PortbookError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class UsageError(PortbookError, ValueError):
    """The caller's input can never be valid; fix the input, not the machine."""


class InvalidPortSpecError(UsageError):
    """A port, range, protocol or address as typed by a user does not parse.

    ``text`` is what was given, ``reason`` one line saying what is wrong.
    """

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        shown = text if len(text) <= 40 else text[:37] + "..."
        super().__init__(f"invalid port {shown!r}: {reason}")


class InvalidNameError(UsageError):
    """A service name given for a lease or assignment is not acceptable."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        shown = name if len(name) <= 40 else name[:37] + "..."
        super().__init__(f"invalid name {shown!r}: {reason}")


class NotFoundError(PortbookError, LookupError):
    """Nothing is known by that name or number."""


class RegistryError(PortbookError):
    """The registry data (packaged or user-installed) cannot be used."""


class RegistryUpdateError(RegistryError):
    """A new registry file was refused; the data in use was left as it was."""


class SocketTableError(PortbookError):
    """The kernel's socket table could not be read by any backend."""


class UnsupportedError(PortbookError):
    """This machine cannot do what was asked (no IPv6, no namespace it may enter)."""


class PortUnavailableError(PortbookError):
    """A port cannot be had: another name, a lease or a live program holds it."""

    def __init__(
        self,
        message: str,
        *,
        port: int | None = None,
        protocol: str | None = None,
        holder: str | None = None,
    ) -> None:
        self.port = port
        self.protocol = protocol
        self.holder = holder
        super().__init__(message)


class RangeExhaustedError(PortUnavailableError):
    """Every port of the range asked for is taken or excluded."""


class StoreError(PortbookError):
    """The names database cannot be used."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)


class StoreLockedError(StoreError):
    """Another process held the store's write lock longer than the busy timeout."""


class StoreReadOnlyError(StoreError):
    """The store (or its directory) cannot be written."""


class StoreCorruptError(StoreError):
    """The store file is damaged or is not a portbook database."""


class StoreVersionError(StoreError):
    """The store was written by a newer portbook with a schema this one does not know."""


class ProcessSignalError(PortbookError):
    """A process could not be signalled (no permission, or it must never be)."""

    def __init__(self, message: str, *, pid: int | None = None) -> None:
        self.pid = pid
        super().__init__(message)


class CommandError(PortbookError):
    """A command portbook was to run could not be started.

    ``status`` is what a shell would exit with: 127 not found, 126 not runnable.
    """

    def __init__(self, message: str, *, status: int = 127) -> None:
        self.status = status
        super().__init__(message)


class WaitTimeoutError(PortbookError, TimeoutError):
    """A port did not reach the awaited state in time; ``pending`` lists what was not ready."""

    def __init__(self, message: str, *, pending: tuple[str, ...] = ()) -> None:
        self.pending = pending
        super().__init__(message)


for _cls in list(globals().values()):
    if isinstance(_cls, type) and issubclass(_cls, PortbookError):
        _cls.__module__ = "portbook"
del _cls
