"""What the live table shows of a process that holds a socket: its name, command line and user.

Read from ``/proc/PID/{comm,cmdline}`` and the owner of ``/proc/PID``, only
for the pids that own sockets being shown; through psutil where there is no
``/proc``. Unreadable fields are ``None``, never an error.
"""

from __future__ import annotations

import os

from portbook._proc import user_name
from portbook._record import record

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["ProcessInfo", "process_details"]

_PROC = "/proc"


@record
class ProcessInfo:
    """Raw details of one owning process (``None`` where unreadable)."""

    pid: int
    name: str | None
    cmdline: tuple[str, ...] | None
    user: str | None


def process_details(pids: Iterable[int], *, proc: str = _PROC) -> dict[int, ProcessInfo]:
    """Name, command line and user of each pid (fields ``None`` where unreadable)."""
    if not os.path.isdir(proc):
        return _psutil_details(pids)
    details: dict[int, ProcessInfo] = {}
    for pid in pids:
        base = f"{proc}/{pid}"
        name: str | None
        cmdline: tuple[str, ...] | None
        user: str | None
        try:
            with open(f"{base}/comm", "rb") as fh:
                name = fh.read().rstrip(b"\n").decode("utf-8", "replace")
        except OSError:
            name = None
        try:
            with open(f"{base}/cmdline", "rb") as fh:
                raw = fh.read()
            cmdline = (
                tuple(part.decode("utf-8", "replace") for part in raw.rstrip(b"\0").split(b"\0"))
                if raw
                else ()
            )
        except OSError:
            cmdline = None
        try:
            user = user_name(os.stat(base).st_uid)
        except OSError:
            user = None
        details[pid] = ProcessInfo(pid, name, cmdline, user)
    return details


def _psutil_details(pids: Iterable[int]) -> dict[int, ProcessInfo]:
    import psutil

    details: dict[int, ProcessInfo] = {}
    for pid in pids:
        try:
            proc = psutil.Process(pid)
        except (psutil.Error, OSError):
            details[pid] = ProcessInfo(pid, None, None, None)
            continue
        fields: list[object] = []
        for getter in (proc.name, proc.cmdline, proc.username):
            try:
                fields.append(getter())
            except (psutil.Error, OSError):
                fields.append(None)
        name, cmdline, user = fields
        details[pid] = ProcessInfo(
            pid,
            name if isinstance(name, str) else None,
            tuple(cmdline) if isinstance(cmdline, list) else None,
            user if isinstance(user, str) else None,
        )
    return details
