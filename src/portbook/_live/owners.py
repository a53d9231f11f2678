"""Which processes hold which sockets: every process's descriptors, read once per listing.

A socket can be held by any process: one that inherited it (fork, pre-fork
servers), one it was handed to over a Unix socket (``SCM_RIGHTS``, as
systemd, supervisors and ``docker-proxy`` do), several at once. The only
exact answer is to read every descriptor of every process, so every listing
does, whichever question it answers: ``who``, ``kill`` and a filtered ``ls``
name the same holders as a whole ``ls`` (the walk itself is in
:mod:`portbook._live.walk`).

To keep that cheap on a machine with many open files, :func:`walk_during`
shares the walk with a short-lived helper process on the other core, which
starts before the kernel's socket table is read and walks while this process
reads and annotates it.
"""

from __future__ import annotations

import os

from portbook._live.walk import walk, with_descriptors
from portbook._proc import PROC
from portbook._record import record

# Not `from typing import TYPE_CHECKING`: see portbook._record (typing costs a
# quarter of an interpreter start, and `portbook who` must start fast).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    _T = TypeVar("_T")

__all__ = ["BackgroundWalk", "OwnerScan", "merge_scans", "scan_all", "split_walk", "walk_during"]


@record
class OwnerScan:
    """What the walk found: which pids hold each socket inode.

    ``single`` maps an inode held by one process to its pid, ``shared`` an
    inode held by several to their pids (ascending). ``refused`` lists the
    processes whose descriptors could not be read (another user's without
    root; some even root may not read).
    """

    single: dict[int, int]
    shared: dict[int, tuple[int, ...]]
    refused: tuple[int, ...] = ()

    @property
    def hidden(self) -> int:
        """How many processes' descriptors could not be read."""
        return len(self.refused)

    @property
    def owners(self) -> dict[int, list[int]]:
        """Every inode seen, with its pids, as one mapping."""
        merged = {inode: [pid] for inode, pid in self.single.items()}
        merged.update((inode, list(pids)) for inode, pids in self.shared.items())
        return merged


def scan_all(*, proc: str = PROC, pids: list[int] | None = None) -> OwnerScan:
    """Every socket inode held by any visible process (or by ``pids``), walked here."""
    single, shared, refused = walk(proc, pids)
    return OwnerScan(single, shared, tuple(refused))


def merge_scans(first: OwnerScan, second: OwnerScan) -> OwnerScan:
    """One scan from two walks over disjoint sets of processes."""
    if len(first.single) < len(second.single):
        first, second = second, first
    single = dict(first.single)
    shared = {inode: list(pids) for inode, pids in first.shared.items()}
    for source in (second.shared.items(), ((i, (p,)) for i, p in second.single.items())):
        for inode, pids in source:
            mine = single.get(inode)
            if mine is None and inode not in shared:
                if len(pids) == 1:
                    single[inode] = pids[0]
                else:
                    shared[inode] = list(pids)
                continue
            if mine is not None:
                del single[inode]
                shared[inode] = [mine]
            shared[inode].extend(p for p in pids if p not in shared[inode])
    return OwnerScan(
        single,
        {inode: tuple(sorted(pids)) for inode, pids in shared.items()},
        tuple(sorted(first.refused + second.refused)),
    )


def split_walk(proc: str = PROC, *, own_work: int = 0) -> tuple[list[int], list[int]]:
    """Share the whole walk between a helper and this process: ``(helper's, ours)``.

    Each process weighs its number of descriptors (since Linux 6.2 the size
    of ``/proc/PID/fd`` is its number of entries: one cheap ``stat``, which
    also leaves out the processes that have none). ``own_work`` is this
    process's other work in the same unit, so that both finish together:
    the helper takes half of the total, this process the rest of the walk.
    Biggest processes first, so the halves come out even.
    """
    weighed = with_descriptors(proc)
    total = sum(w for w, _ in weighed)
    target = (total + own_work) // 2
    helper: list[int] = []
    ours: list[int] = []
    taken = 0
    for weight, pid in weighed:
        if taken + weight <= target or not helper:
            helper.append(pid)
            taken += weight
        else:
            ours.append(pid)
    return helper, ours


class BackgroundWalk:
    """:func:`scan_all` in a helper process, started now and collected by :meth:`result`.

    Falls back to walking in this process when the helper cannot be started
    or fails, so the result is the same either way.
    """

    def __init__(self, proc: str = PROC, pids: list[int] | None = None) -> None:
        import sys

        self._proc = proc
        self._pids = pids
        self._pid = 0
        self._read = -1
        executable = sys.executable
        helper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "walk.py")
        if not executable or not hasattr(os, "posix_spawn"):
            return
        read, write = os.pipe()
        try:
            self._pid = os.posix_spawn(
                executable,
                [executable, "-I", "-S", helper, proc]
                + ([] if pids is None else [",".join(map(str, pids))]),
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, write, 1),
                    (os.POSIX_SPAWN_CLOSE, read),
                    # The helper never speaks: a Ctrl-C reaches it too, and it
                    # must not print a traceback of its own.
                    (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
                ],
            )
        except OSError:
            os.close(read)
            self._pid = 0
        else:
            self._read = read
        finally:
            os.close(write)

    def cancel(self) -> None:
        """Stop the helper (the caller gave up: an error or Ctrl-C)."""
        if not self._pid:
            return
        import contextlib  # only here: `portbook who` does not import it otherwise
        import signal

        with contextlib.suppress(OSError):
            os.kill(self._pid, signal.SIGKILL)
        os.close(self._read)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self._pid, 0)
        self._pid = 0

    def result(self) -> OwnerScan:
        if not self._pid:
            return scan_all(proc=self._proc, pids=self._pids)
        import marshal

        chunks = []
        try:
            while chunk := os.read(self._read, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(self._read)
            _, status = os.waitpid(self._pid, 0)
        try:
            if status != 0:
                raise ValueError("the owner walk helper failed")
            single, shared, refused = marshal.loads(b"".join(chunks))
        except (ValueError, EOFError, TypeError):
            return scan_all(proc=self._proc, pids=self._pids)
        return OwnerScan(single, shared, tuple(refused))


# Below this many open files on the machine the whole walk is short, and a
# helper process costs more to start than sharing the walk saves.
HELPER_FROM = 4000


def walk_during(work: Callable[[], _T], *, work_units: Callable[[], int]) -> tuple[_T, OwnerScan]:
    """``work()``'s result and the walk of every process, the two done side by side.

    On a machine with at least :data:`HELPER_FROM` open files a helper
    process walks part of the processes on the other core while this one
    runs ``work()`` and then walks the rest; ``work_units()`` estimates
    ``work()``'s cost in tenths of one descriptor read, which sets how much
    of the walk the helper takes. Elsewhere ``work()`` runs, then the walk.
    """
    if _open_files() < HELPER_FROM:
        return work(), scan_all()
    helper, ours = split_walk(own_work=work_units() // 10)
    walker = BackgroundWalk(pids=helper)
    try:
        result = work()
        mine = scan_all(pids=ours)
    except BaseException:
        walker.cancel()  # an error or Ctrl-C: leave no helper behind
        raise
    return result, merge_scans(walker.result(), mine)


def _open_files() -> int:
    """Open files on the whole machine (/proc/sys/fs/file-nr): what a whole walk reads."""
    try:
        with open("/proc/sys/fs/file-nr", "rb") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 1 << 30
