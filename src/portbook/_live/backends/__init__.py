"""Socket-table backends, and the one place that chooses between them.

Linux: netlink sock_diag (what ``ss`` uses), then ``/proc/net/*`` where
netlink is refused (some sandboxes filter it). Elsewhere: psutil. Each
backend module is imported only when it is tried.
"""

from __future__ import annotations

import sys

from portbook._live.backends.base import RawSocket, SocketBackend, TableQuery

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portbook._live.backends.netlink import NetlinkBackend
    from portbook._live.backends.procfs import ProcfsBackend
    from portbook._live.backends.psutil import PsutilBackend

__all__ = [
    "NetlinkBackend",
    "ProcfsBackend",
    "PsutilBackend",
    "RawSocket",
    "SocketBackend",
    "TableQuery",
    "choose_backend",
]

_MODULES = {"NetlinkBackend": "netlink", "ProcfsBackend": "procfs", "PsutilBackend": "psutil"}
_chosen: SocketBackend | None = None


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # A non-empty fromlist makes __import__ return the submodule itself
    # (importlib.import_module would import importlib and warnings).
    return getattr(__import__(f"{__name__}.{module}", fromlist=(name,)), name)


def choose_backend() -> SocketBackend:
    """The best backend that works here, chosen once per process."""
    global _chosen
    if _chosen is None:
        names = (
            ("NetlinkBackend", "ProcfsBackend", "PsutilBackend")
            if sys.platform.startswith("linux")
            else ("PsutilBackend",)
        )
        backend: SocketBackend | None = None
        for name in names:
            backend = __getattr__(name)()
            assert backend is not None
            if backend.available():
                break
        assert backend is not None
        _chosen = backend
    return _chosen
