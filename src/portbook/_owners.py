"""Which processes hold which sockets: socket inodes -> processes, read from /proc/PID/fd.

The kernel keeps no reverse map from a socket to the processes whose
descriptor tables point at it, so every tool (``ss -p``, ``lsof``, psutil)
walks ``/proc/*/fd`` and reads each link (``socket:[INODE]``). portbook does
the same walk but only for the inodes asked for, and stops early: once every
inode has an owner it finishes only the *family* of the owners found (their
parents and children, to closure), because a socket is shared across
processes by inheritance (fork, pre-fork servers) or handed from a parent
(socket activation). A socket passed to an unrelated process over a Unix
socket is therefore seen with its first-found owners only, unless the walk
had to cover every process anyway.

Process details (name, command line, user) are read only for owners.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

__all__ = ["OwnerScan", "ProcessInfo", "find_owners", "process_details", "scan_all"]

_PROC = "/proc"


@dataclass
class OwnerScan:
    """What the walk found: ``owners[inode]`` lists pids (ascending)."""

    owners: dict[int, list[int]] = field(default_factory=dict)
    #: processes whose descriptors could not be read (another user's, without root)
    hidden: int = 0
    #: False when the walk stopped early (every inode found, family covered)
    complete: bool = True


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    pid: int
    name: str | None
    cmdline: tuple[str, ...] | None
    user: str | None


def _pids(proc: str) -> list[int]:
    # Newest first: the services a person asks about are usually younger than
    # the system's own daemons, so an early stop comes sooner on average.
    return sorted((int(n) for n in os.listdir(proc) if n.isdigit()), reverse=True)


def _scan_process(
    proc: str, pid: int, wanted: Collection[int], found: dict[int, list[int]]
) -> bool:
    """Record ``pid`` as owner of each wanted inode it holds; False if unreadable."""
    try:
        dfd = os.open(f"{proc}/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY)
    except PermissionError:
        return False
    except OSError:
        return True  # exited, or a kernel thread without descriptors
    try:
        try:
            names = os.listdir(dfd)
        except PermissionError:
            return False
        except OSError:
            return True
        readlink = os.readlink
        for name in names:
            try:
                link = readlink(name, dir_fd=dfd)
            except OSError:
                continue  # closed while we looked
            # "socket:[12345]"; anything else (files, pipes) is skipped on the
            # first character for speed.
            if link[0] == "s" and link.startswith("socket:["):
                inode = int(link[8:-1])
                if inode in wanted:
                    pids = found.setdefault(inode, [])
                    if not pids or pids[-1] != pid:
                        pids.append(pid)
    finally:
        os.close(dfd)
    return True


def scan_all(*, proc: str = _PROC) -> OwnerScan:
    """Every socket inode held by any visible process, with its pids.

    Used when the whole table is asked for: every descriptor must be read
    anyway, so the wanted set is not consulted (which lets the walk run in a
    thread while the socket table itself is being read).
    """
    scan = OwnerScan()
    try:
        order = _pids(proc)
    except OSError:
        return scan
    owners = scan.owners
    get = owners.get
    readlink = os.readlink
    for pid in order:
        try:
            dfd = os.open(f"{proc}/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY)
        except PermissionError:
            scan.hidden += 1
            continue
        except OSError:
            continue
        try:
            try:
                names = os.listdir(dfd)
            except PermissionError:
                scan.hidden += 1
                continue
            except OSError:
                continue
            for name in names:
                try:
                    link = readlink(name, dir_fd=dfd)
                except OSError:
                    continue
                if link[:8] == "socket:[":
                    inode = int(link[8:-1])
                    pids = get(inode)
                    if pids is None:
                        owners[inode] = [pid]
                    elif pid not in pids:
                        pids.append(pid)
        finally:
            os.close(dfd)
    for owner_pids in owners.values():
        if len(owner_pids) > 1:
            owner_pids.sort()
    return scan


def _ppid(proc: str, pid: int) -> int | None:
    try:
        with open(f"{proc}/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and ")", so split
    # after the last ")".
    try:
        return int(data[data.rindex(b")") + 2 :].split(None, 2)[1])
    except (ValueError, IndexError):
        return None


def find_owners(
    inodes: Iterable[int], *, pids: Iterable[int] | None = None, proc: str = _PROC
) -> OwnerScan:
    """Map each of ``inodes`` to the pids holding it (missing inodes: no owner seen).

    ``pids`` limits the walk to those processes (all of them are read).
    """
    wanted = {i for i in inodes if i}
    scan = OwnerScan()
    if not wanted:
        return scan
    if pids is not None:
        for pid in pids:
            if not _scan_process(proc, pid, wanted, scan.owners):
                scan.hidden += 1
        return scan
    try:
        order = _pids(proc)
    except OSError:
        return scan
    found = scan.owners
    remaining = len(wanted)
    for index, pid in enumerate(order):
        if not _scan_process(proc, pid, wanted, found):
            scan.hidden += 1
        if len(found) != remaining:
            continue
        # Every inode has an owner: cover the owners' families, then stop.
        rest = order[index + 1 :]
        if rest:
            scan.complete = False
            scan.hidden += _scan_family(proc, rest, wanted, found)
        break
    for owner_pids in found.values():
        owner_pids.sort()
    return scan


def _scan_family(
    proc: str, rest: list[int], wanted: Collection[int], found: dict[int, list[int]]
) -> int:
    owners = {pid for pids in found.values() for pid in pids}
    parents = {pid: _ppid(proc, pid) for pid in rest}
    owner_parents = {_ppid(proc, pid) for pid in owners}
    hidden = 0
    pending = set(rest)
    changed = True
    while changed:
        changed = False
        for pid in sorted(pending, reverse=True):
            if parents[pid] in owners or pid in owner_parents:
                pending.discard(pid)
                if not _scan_process(proc, pid, wanted, found):
                    hidden += 1
                new = {p for pids in found.values() for p in pids} - owners
                if new:
                    owners |= new
                    owner_parents |= {_ppid(proc, p) for p in new}
                    changed = True
    return hidden


_users: dict[int, str | None] = {}


def _user(uid: int) -> str | None:
    if uid not in _users:
        try:
            _users[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            _users[uid] = str(uid)
    return _users[uid]


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
            user = _user(os.stat(base).st_uid)
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
