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

from portbook._live.walk import (
    in_parts,
    walk,
    walk_in_turn,
    walk_to_meet,
    walk_units,
    with_descriptors,
)
from portbook._proc import PROC
from portbook._record import record

# Not `from typing import TYPE_CHECKING`: see portbook._record (typing costs a
# quarter of an interpreter start, and `portbook who` must start fast).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    from portbook._live.walk import Unit, Walk

    _T = TypeVar("_T")

__all__ = [
    "BackgroundWalk",
    "OwnerScan",
    "a_core_is_free",
    "merge_scans",
    "scan_all",
    "split_walk",
    "walk_during",
]


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
    return _scan(walk(proc, pids))


def _scan(found: Walk) -> OwnerScan:
    single, shared, refused = found
    return OwnerScan(single, shared, tuple(refused))


def merge_scans(first: OwnerScan, second: OwnerScan, *, consume: bool = False) -> OwnerScan:
    """One scan from two walks (of disjoint sets of processes, or overlapping in a few).

    With ``consume`` the larger scan's mapping is reused rather than copied
    (the caller gives both scans up): at 50,000 sockets a copy is about
    5 MiB and a millisecond.
    """
    if len(first.single) < len(second.single):
        first, second = second, first
    single = first.single if consume else dict(first.single)
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
                if pids == (mine,):
                    continue  # one process walked by both (where two shared walks met)
                del single[inode]
                shared[inode] = [mine]
            shared[inode].extend(p for p in pids if p not in shared[inode])
    return OwnerScan(
        single,
        {inode: tuple(sorted(pids)) for inode, pids in shared.items()},
        tuple(sorted(set(first.refused + second.refused))),
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
    """A walk of ``pids`` (default: all) or of ``units``, in a helper process started now.

    :meth:`result` waits for the helper's whole walk; :meth:`share` walks
    from the other end of ``pids`` here, meets the helper, stops it and
    merges the two walks (see :func:`portbook._live.walk.walk_to_meet`).
    The helper is a fork of this process when that is safe (one thread:
    no lock of another thread can be held in the child), which costs about
    a millisecond; otherwise a fresh interpreter running ``walk.py``, about
    ten. Falls back to walking here when the helper cannot be started or
    fails, so the result is the same either way.
    """

    def __init__(
        self, proc: str = PROC, pids: list[int] | None = None, *, units: list[Unit] | None = None
    ) -> None:
        self._proc = proc
        if units is None:
            chosen = [p for _, p in with_descriptors(proc)] if pids is None else pids
            units = [(pid, 0, 0) for pid in chosen]
        self._units = units
        self._pid = 0
        self._read = self._claims = self._progress = -1
        pipes: list[tuple[int, int]] = []
        try:
            for _ in range(3):
                pipes.append(os.pipe())
        except OSError:  # out of descriptors: walk here instead
            for pair in pipes:
                os.close(pair[0])
                os.close(pair[1])
            return
        (result_r, result_w), (claims_r, claims_w), (progress_r, progress_w) = pipes
        ends = (result_w, claims_r, progress_w)
        try:
            self._pid = _fork_walker(proc, self._units, ends) if _may_fork() else 0
            if not self._pid:
                self._pid = _spawn_walker(proc, self._units, ends)
        except OSError:
            self._pid = 0
        finally:
            for fd in ends:
                os.close(fd)
        if self._pid:
            self._read, self._claims, self._progress = result_r, claims_w, progress_r
        else:
            for fd in (result_r, claims_w, progress_r):
                os.close(fd)

    def cancel(self) -> None:
        """Stop the helper (the caller gave up: an error or Ctrl-C)."""
        if not self._pid:
            return
        import signal

        try:  # noqa: SIM105 - contextlib is not otherwise imported by `portbook who`
            os.kill(self._pid, signal.SIGKILL)
        except OSError:
            pass
        self._reap()

    def result(self) -> OwnerScan:
        """The helper's walk of every one of ``pids``."""
        if not self._pid:
            return _scan(walk_units(self._proc, self._units))
        self._close_progress()  # not read here: the helper stops telling
        return self._collect(len(self._units))

    def share(self, first: tuple[int, ...] = ()) -> OwnerScan:
        """Walk ``pids`` from the last back here until the helper's walk is met; both, merged.

        ``first`` (pids not given to the helper) are walked here before the rest.
        """
        if not self._pid:
            return _scan(walk_units(self._proc, [(p, 0, 0) for p in first] + self._units))
        try:
            (single, shared, refused), left = walk_to_meet(
                self._proc, self._units, claims=self._claims, progress=self._progress, first=first
            )
        except BaseException:
            self.cancel()
            raise
        os.close(self._claims)  # the helper reads the end of this pipe as "stop"
        self._claims = -1
        self._close_progress()
        mine = OwnerScan(single, shared, tuple(refused))
        return merge_scans(self._collect(left), mine, consume=True)

    def _close_progress(self) -> None:
        if self._progress >= 0:
            os.close(self._progress)
            self._progress = -1

    def _collect(self, left: int) -> OwnerScan:
        """Read the helper's walk; if it failed, walk here the first ``left`` of ``pids``."""
        import marshal

        chunks = []
        try:
            while chunk := os.read(self._read, 1 << 20):
                chunks.append(chunk)
        except OSError:
            chunks = []
        status = self._reap()
        try:
            if status != 0:
                raise ValueError("the owner walk helper failed")
            single, shared, refused = marshal.loads(b"".join(chunks))
        except (ValueError, EOFError, TypeError):
            return _scan(walk_units(self._proc, self._units[:left]))
        return OwnerScan(single, shared, tuple(refused))

    def _reap(self) -> int:
        """Close this side's pipes and wait for the helper; its exit status."""
        for fd in (self._read, self._claims, self._progress):
            if fd >= 0:
                os.close(fd)
        self._read = self._claims = self._progress = -1
        try:
            _, status = os.waitpid(self._pid, 0)
        except ChildProcessError:
            status = -1
        self._pid = 0
        return status


def _may_fork() -> bool:
    """Whether this process has one thread, so that a forked child can run Python safely."""
    if not hasattr(os, "fork"):
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _fork_walker(proc: str, units: list[Unit], ends: tuple[int, int, int]) -> int:
    """Fork a helper that walks ``units`` in turn; its pid.

    The child closes every descriptor but its pipes (it must not keep this
    process's sockets open while it runs) and leaves with ``os._exit``:
    no atexit handler, no flush of buffers it shares with this process.
    """
    result_w, claims_r, progress_w = ends
    pid = os.fork()
    if pid:
        return pid
    status = 1
    try:
        keep = sorted(ends)
        low = 3
        for fd in keep:
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, 1 << 20)
        import marshal

        data = marshal.dumps(walk_in_turn(proc, units, claims=claims_r, progress=progress_w))
        view = memoryview(data)
        while view:
            view = view[os.write(result_w, view) :]
        status = 0
    except BaseException:
        pass  # the parent walks instead
    os._exit(status)


def _unit_text(units: list[Unit]) -> str:
    """``units`` as ``walk.py --in-turn`` reads them: ``PID:LO:HI,...``."""
    return ",".join(f"{pid}:{lo}:{hi}" for pid, lo, hi in units)


def _spawn_walker(proc: str, units: list[Unit], ends: tuple[int, int, int]) -> int:
    """Start ``walk.py --in-turn`` in a fresh interpreter; its pid, or 0."""
    import sys

    result_w, claims_r, progress_w = ends
    executable = sys.executable
    if not executable or not hasattr(os, "posix_spawn"):
        return 0
    helper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "walk.py")
    return os.posix_spawn(
        executable,
        [executable, "-I", "-S", helper, "--in-turn", proc, _unit_text(units)],
        os.environ,
        file_actions=[
            (os.POSIX_SPAWN_DUP2, claims_r, 0),
            (os.POSIX_SPAWN_DUP2, result_w, 1),
            (os.POSIX_SPAWN_DUP2, progress_w, 3),
            # The helper never speaks: a Ctrl-C reaches it too, and it
            # must not print a traceback of its own.
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
        ],
    )


# Below this many descriptors in all processes the whole walk is short, and a
# helper costs more to start than sharing the walk saves (bench/bench_walk.py).
HELPER_FROM = 4000


def walk_during(work: Callable[[], _T], *, work_units: Callable[[], int]) -> tuple[_T, OwnerScan]:
    """``work()``'s result and the walk of every process, the two done side by side.

    When the processes hold at least :data:`HELPER_FROM` descriptors, a
    helper process starts walking them, biggest first, while this one runs
    ``work()`` and then walks from the smallest until the two meet
    (:meth:`BackgroundWalk.share`), so both finish together whatever
    ``work()`` costs. Elsewhere, or when no other processor is free for a
    helper (:func:`a_core_is_free`), ``work()`` runs, then the walk.
    ``work_units`` is no longer needed (it estimated ``work()``'s cost to
    split the walk ahead) and is not called.
    """
    del work_units
    weighed = with_descriptors()
    pids = [pid for _, pid in weighed]
    if _descriptors(weighed) < HELPER_FROM or not a_core_is_free():
        return work(), scan_all(pids=pids)
    # This process reads its own descriptors: after a setuid() it is not
    # dumpable, and then no other process of its user may read them.
    me = os.getpid()
    walker = BackgroundWalk(units=in_parts([(w, pid) for w, pid in weighed if pid != me]))
    try:
        result = work()
    except BaseException:
        walker.cancel()  # an error or Ctrl-C: leave no helper behind
        raise
    return result, walker.share(first=(me,))


def a_core_is_free(loadavg: str = "/proc/loadavg") -> bool:
    """Whether a processor this process may run on is free for a helper right now.

    A helper costs its start and then shares the walk only if it runs
    beside this process: on a machine whose other processors are busy it
    made the walk 10-60% slower (bench/bench_walk.py under load). The test
    is the kernel's count of runnable tasks at this instant (the fourth
    field of ``/proc/loadavg``, this process included) against the
    processors of this process's affinity (a container may have one).
    Where either is unknown, a helper is tried.
    """
    try:
        processors = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        processors = os.cpu_count() or 1
    if processors < 2:
        return False
    try:
        with open(loadavg, "rb") as fh:
            runnable = int(fh.read().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return True
    return runnable < processors


def _descriptors(weighed: list[tuple[int, int]]) -> int:
    """How many descriptors the walk will read: the sizes, or /proc/sys/fs/file-nr without them."""
    if weighed and weighed[0][0] > 1:
        return sum(size for size, _ in weighed)
    try:  # an old kernel: every size is 1, so count the machine's open files
        with open("/proc/sys/fs/file-nr", "rb") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 1 << 30
