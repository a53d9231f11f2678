"""Who holds a lease: a process, named by its pid *and* its start time.

A pid alone does not name a process for long: when the holder dies, the
kernel hands its pid to some later process (sooner than one would think on a
busy machine, or straight away in a fresh container). A lease that recorded
only the pid would then be kept alive by a stranger. So a lease records the
holder's start time too, and the holder is alive only while a process with
that pid exists *and* started at that same moment.

On Linux the start time is field 22 of ``/proc/PID/stat``: clock ticks since
boot, an integer that never changes for the life of a process. Elsewhere
psutil's ``create_time`` (seconds since the epoch) serves, when installed;
without it portbook can only ask whether the pid exists at all.
"""

from __future__ import annotations

import os
import sys

from portbook._exceptions import NotFoundError, UsageError
from portbook._proc import STAT_STARTTIME, STAT_STATE, read_stat
from portbook._record import public, record

__all__ = ["Holder", "holder_alive", "holder_for", "process_start_time", "this_process"]

# A plain bool (not an inline sys.platform test) so that type checkers on
# one platform still check the other platform's branch.
_HAVE_PROC_STAT: bool = sys.platform.startswith("linux")

# The start time reported for a process that exists but whose start time
# cannot be read.
UNKNOWN_START = 0


@record
class Holder:
    """A process that holds a lease: its pid and its start time.

    ``start_time`` is opaque (clock ticks since boot on Linux, epoch
    milliseconds with psutil, 0 where nothing better is known); it is only
    ever compared for equality with a later reading for the same pid.
    """

    pid: int
    start_time: int

    def __post_init__(self) -> None:
        # pid 0 is the kernel's idle task and pid 1 is init: neither ever
        # exits, so a lease held by either would never come back. A pid <= 1
        # is almost always a mistake (an orphan's getppid(), a container's
        # init), and portbook refuses it rather than leak a port for good.
        if self.pid <= 1:
            raise UsageError(f"a lease cannot be held by pid {self.pid}: it never exits")


def process_start_time(pid: int) -> int | None:
    """The start time of process ``pid``, or ``None`` when there is no such process."""
    if pid <= 0:
        return None
    if _HAVE_PROC_STAT:
        return _linux_start_time(pid)
    return _portable_start_time(pid)


_this: Holder | None = None


def this_process() -> Holder:
    """The calling process as a lease holder (read once per process, re-read after fork)."""
    global _this
    pid = os.getpid()
    if _this is None or _this.pid != pid:
        start = process_start_time(pid)
        _this = Holder(pid, start if start is not None else UNKNOWN_START)
    return _this


def holder_for(pid: int) -> Holder:
    """The running process ``pid`` as a lease holder.

    Raises :class:`~portbook.UsageError` for pid <= 1 (it never exits) and
    :class:`~portbook.NotFoundError` for a pid that does not exist: a lease
    for a process that is not there would be reclaimed at once, which is
    never what the caller meant.
    """
    if pid <= 1:
        raise UsageError(f"a lease cannot be held by pid {pid}: it never exits")
    start = process_start_time(pid)
    if start is None:
        raise NotFoundError(f"no process with pid {pid} to hold a lease")
    return Holder(pid, start)


def holder_alive(pid: int, start_time: int) -> bool:
    """True while process ``pid`` exists and is the one that started at ``start_time``.

    A start time of 0 means "could not be read" (another user's process
    behind ``hidepid``, no psutil): then the pid alone decides, since
    declaring a living holder dead would hand its port to someone else.
    """
    now = process_start_time(pid)
    if now is None:
        return False
    return now == start_time or UNKNOWN_START in (now, start_time)


def _linux_start_time(pid: int) -> int | None:
    try:
        tail = read_stat(pid)
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        # /proc hidden (hidepid=2) or otherwise unreadable: fall back to
        # asking whether the pid exists, which is better than declaring a
        # living holder dead.
        return UNKNOWN_START if _pid_exists(pid) else None
    try:
        if tail[STAT_STATE - 3] == b"Z":
            # A zombie has exited; only its exit status is left for the
            # parent to collect. It holds no sockets, so it holds no lease.
            return None
        return int(tail[STAT_STARTTIME - 3])
    except (IndexError, ValueError):
        return UNKNOWN_START if _pid_exists(pid) else None


def _portable_start_time(pid: int) -> int | None:
    try:
        import psutil
    except ImportError:
        return UNKNOWN_START if _pid_exists(pid) else None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return int(proc.create_time() * 1000)
    except psutil.NoSuchProcess:
        return None
    except psutil.Error:
        return UNKNOWN_START if _pid_exists(pid) else None


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists; it just belongs to someone else
    except OSError:
        return False
    return True


public(Holder)
