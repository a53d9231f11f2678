"""Socket-table backends, and the one place that chooses between them.

Linux: netlink sock_diag (what ``ss`` uses), then ``/proc/net/*`` where
netlink is refused (some sandboxes filter it). Elsewhere: psutil.
"""

from __future__ import annotations

import sys

from .base import RawSocket, SocketBackend, TableQuery
from .netlink import NetlinkBackend
from .procfs import ProcfsBackend
from .psutil import PsutilBackend

__all__ = [
    "NetlinkBackend",
    "ProcfsBackend",
    "PsutilBackend",
    "RawSocket",
    "SocketBackend",
    "TableQuery",
    "choose_backend",
]

_chosen: SocketBackend | None = None


def choose_backend() -> SocketBackend:
    """The best backend that works here, chosen once per process."""
    global _chosen
    if _chosen is None:
        candidates: tuple[SocketBackend, ...]
        if sys.platform.startswith("linux"):
            candidates = (NetlinkBackend(), ProcfsBackend(), PsutilBackend())
        else:
            candidates = (PsutilBackend(),)
        _chosen = next((b for b in candidates if b.available()), candidates[-1])
    return _chosen
