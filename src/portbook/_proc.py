"""Small readers of ``/proc`` shared by the live table, your names and the tools.

Each piece is written once here: the fields of ``/proc/PID/stat`` (the
command name may hold spaces and ``)``, so fields are counted from the last
``)``), a process's parent, and the one rule that turns a uid into a user
name. The owner walk's own readers (``/proc/PID/fd`` links) live with it in
:mod:`portbook._live.walk`, which must stay free of imports.
"""

from __future__ import annotations

import os

__all__ = [
    "PROC",
    "ancestors",
    "descendants",
    "parent_pid",
    "process_uid",
    "read_stat",
    "stat_fields",
    "user_name",
]

PROC = "/proc"

# Field numbers of /proc/PID/stat (proc(5)), counted from 1 as the manual does.
STAT_STATE = 3
STAT_PPID = 4
STAT_STARTTIME = 22


def stat_fields(data: bytes) -> list[bytes]:
    """The fields of a ``/proc/PID/stat`` text from field 3 (state) on.

    Field *n* of proc(5) is ``stat_fields(data)[n - 3]``. The command name
    (field 2, in parentheses) may itself contain spaces and ``)``, so the
    fields are split after its *last* ``)``.
    """
    return data[data.rfind(b")") + 2 :].split()


def read_stat(pid: int, proc: str = PROC) -> list[bytes]:
    """:func:`stat_fields` of process ``pid``; raises ``OSError`` when it cannot be read."""
    with open(f"{proc}/{pid}/stat", "rb") as fh:
        return stat_fields(fh.read())


def parent_pid(pid: int, proc: str = PROC) -> int | None:
    """The parent of ``pid``, or ``None`` when ``pid`` is gone or unreadable."""
    try:
        return int(read_stat(pid, proc)[STAT_PPID - 3])
    except (OSError, ValueError, IndexError):
        return None


def ancestors(pid: int, proc: str = PROC) -> set[int]:
    """``pid`` and every parent up to init (Linux; elsewhere ``pid`` and this process's parent)."""
    import sys

    chain = {pid}
    if not sys.platform.startswith("linux"):
        chain.add(os.getppid())
        return chain
    current = pid
    for _ in range(4096):  # a loop guard; real chains are a few dozen long
        parent = parent_pid(current, proc)
        if parent is None or parent <= 0 or parent in chain:
            break
        chain.add(parent)
        current = parent
    return chain


def descendants(pid: int, proc: str = PROC) -> set[int]:
    """Every process below ``pid`` (children, their children, ...), from one read of /proc."""
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir(proc)
    except OSError:
        return set()
    for name in names:
        if name.isdigit():
            parent = parent_pid(int(name), proc)
            if parent is not None:
                children.setdefault(parent, []).append(int(name))
    found: set[int] = set()
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), ()):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def process_uid(pid: int, proc: str = PROC) -> int | None:
    """The real uid of ``pid`` (the owner of ``/proc/PID``), or ``None`` when it is gone."""
    try:
        return os.stat(f"{proc}/{pid}").st_uid
    except OSError:
        return None


_names: dict[int, str | None] = {}


def user_name(uid: int) -> str | None:
    """The name of ``uid``: the password database's, else the number itself; ``None`` if unknown.

    A uid without an entry (a container's user, a deleted account) is shown
    as its number, as ``ls -l`` and ``ss -e`` do; a negative uid means the
    backend could not tell.
    """
    if uid < 0:
        return None
    name = _names.get(uid)
    if name is None:
        import pwd  # only when a name is first needed

        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        _names[uid] = name
    return name
