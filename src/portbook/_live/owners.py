"""Which processes hold which sockets: socket inodes -> processes, read from /proc/PID/fd.

The kernel keeps no reverse map from a socket to the processes whose
descriptor tables point at it, so every tool (``ss -p``, ``lsof``, psutil)
walks ``/proc/*/fd`` and reads each link (``socket:[INODE]``). Two walks:

* :func:`find_owners`, for some sockets (``who``, filtered listings): looks
  where the inodes most likely are first and stops early: once every inode
  has an owner it finishes only the *family* of the owners found (their
  parents and children, to closure), because a socket is shared across
  processes by inheritance (fork, pre-fork servers) or handed from a parent
  (socket activation). A socket passed to an unrelated process over a Unix
  socket is therefore seen with its first-found owners only, unless the
  walk had to cover every process anyway.
* :func:`scan_all`, for the whole table: every process, every link; for a
  large table shared with a :class:`BackgroundWalk` helper process
  (:func:`split_walk`, :func:`merge_scans`).

Process details (name, command line, user) are read by
:mod:`portbook._live.processes`, only for owners.
"""

from __future__ import annotations

import bisect
import os

# Not `from typing import TYPE_CHECKING`: see portbook._record (typing costs a
# quarter of an interpreter start, and `portbook who` must start fast).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Iterator

__all__ = [
    "BackgroundWalk",
    "OwnerScan",
    "find_owners",
    "merge_scans",
    "scan_all",
    "split_walk",
]

_PROC = "/proc"


class OwnerScan:
    """What the walk found: which pids hold each socket inode.

    ``single`` maps an inode held by one process to its pid, ``shared`` an
    inode held by several to their pids (ascending); :meth:`pids` reads
    both. ``hidden`` counts processes whose descriptors could not be read
    (another user's, without root); ``complete`` is False when the walk
    stopped early (every inode found, their owners' families covered).
    """

    __slots__ = ("complete", "hidden", "shared", "single")

    def __init__(
        self,
        single: dict[int, int] | None = None,
        shared: dict[int, tuple[int, ...]] | None = None,
        hidden: int = 0,
        complete: bool = True,
    ) -> None:
        self.single: dict[int, int] = {} if single is None else single
        self.shared: dict[int, tuple[int, ...]] = {} if shared is None else shared
        self.hidden = hidden
        self.complete = complete

    @classmethod
    def from_lists(
        cls, found: dict[int, list[int]], hidden: int = 0, complete: bool = True
    ) -> OwnerScan:
        single = {inode: pids[0] for inode, pids in found.items() if len(pids) == 1}
        shared = {inode: tuple(sorted(pids)) for inode, pids in found.items() if len(pids) > 1}
        return cls(single, shared, hidden, complete)

    def pids(self, inode: int) -> tuple[int, ...]:
        """The pids holding ``inode`` (empty when none was seen)."""
        pid = self.single.get(inode)
        if pid is not None:
            return (pid,)
        return self.shared.get(inode, ())

    @property
    def owners(self) -> dict[int, list[int]]:
        """Every inode seen, with its pids, as one mapping."""
        merged = {inode: [pid] for inode, pid in self.single.items()}
        merged.update((inode, list(pids)) for inode, pids in self.shared.items())
        return merged


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


def scan_all(*, proc: str = _PROC, pids: list[int] | None = None) -> OwnerScan:
    """Every socket inode held by any visible process (or by ``pids``), read here."""
    from portbook._live.walk import walk

    single, shared, hidden = walk(proc, pids)
    return OwnerScan(single, shared, hidden)


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
        first.hidden + second.hidden,
    )


def split_walk(proc: str = _PROC, *, own_work: int = 0) -> tuple[list[int], list[int]]:
    """Share the whole walk between a helper and this process: ``(helper's, ours)``.

    Each process weighs its number of descriptors (``stat`` of its fd
    directory: one cheap call). ``own_work`` is this process's other work
    in the same unit, so that both finish together: the helper takes half of
    the total, this process the rest of the walk. Biggest processes first,
    so the halves come out even.
    """
    from portbook._live.walk import all_pids

    weighed = []
    for pid in all_pids(proc):
        try:
            weight = os.stat(f"{proc}/{pid}/fd").st_size
        except OSError:
            weight = 0
        weighed.append((weight or 1, pid))
    weighed.sort(reverse=True)
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

    def __init__(self, proc: str = _PROC, pids: list[int] | None = None) -> None:
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
            single, shared, hidden = marshal.loads(b"".join(chunks))
        except (ValueError, EOFError, TypeError):
            return scan_all(proc=self._proc, pids=self._pids)
        return OwnerScan(single, shared, hidden)


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


# Links read from each large process before deciding where to look first.
_PROBE = 16


def _fd_count(proc: str, pid: int) -> int:
    """How many descriptors ``pid`` has, from ``stat`` of its fd directory.

    Since Linux 6.2 the size of ``/proc/PID/fd`` is its number of entries:
    one cheap call where listing the directory costs as much as reading
    every link. 0 where the kernel does not say (then the directory is
    listed), -1 where the process is gone.
    """
    try:
        return os.stat(f"{proc}/{pid}/fd").st_size
    except PermissionError:
        return 0
    except OSError:
        return -1


def _fd_table_size(proc: str, pid: int) -> int:
    """``FDSize`` of ``pid``: every descriptor number is below it (0 when unknown)."""
    try:
        with open(f"{proc}/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"FDSize:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _open_fd_dir(proc: str, pid: int) -> int | bool:
    try:
        return os.open(f"{proc}/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY)
    except PermissionError:
        return False
    except OSError:
        return True


def _socket_inode(dfd: int, name: str) -> int:
    try:
        link = os.readlink(name, dir_fd=dfd)
    except OSError:
        return 0  # closed while we looked, or no such descriptor
    return int(link[8:-1]) if link[:8] == "socket:[" else 0


def _outward(start: int, limit: int) -> Iterator[int]:
    """0..limit-1 ordered by distance from ``start``."""
    yield start
    for delta in range(1, limit):
        up, down = start + delta, start - delta
        if up >= limit and down < 0:
            return
        if up < limit:
            yield up
        if down >= 0:
            yield down


def find_owners(
    inodes: Iterable[int], *, pids: Iterable[int] | None = None, proc: str = _PROC
) -> OwnerScan:
    """Map each of ``inodes`` to the pids holding it (missing inodes: no owner seen).

    ``pids`` limits the walk to those processes (all of them are read).

    Otherwise the walk looks where the inodes most likely are first. The
    kernel numbers socket inodes from a counter, and a process's descriptors
    are numbered in the order it opened them, so the sockets a program opened
    around the same time have nearby inodes and nearby descriptors. A first
    pass reads every small process whole and a few evenly spaced links of
    each large one; large processes are then read whole, nearest guess
    first, starting at the descriptor whose inode came closest. The guess
    only orders the walk: the walk stops when every inode has an owner and
    the owners' families are covered, whichever order found them.
    """
    from portbook._live.walk import all_pids

    wanted = {i for i in inodes if i}
    found: dict[int, list[int]] = {}
    if not wanted:
        return OwnerScan()
    hidden = 0
    if pids is not None:
        for pid in pids:
            if not _scan_process(proc, pid, wanted, found):
                hidden += 1
        return OwnerScan.from_lists(found, hidden)
    try:
        order = all_pids(proc)
    except OSError:
        return OwnerScan()
    targets = sorted(wanted)
    remaining = len(wanted)
    done: set[int] = set()  # pids whose descriptors need no second look
    large: list[tuple[int, int, int, int]] = []  # (distance, pid, start descriptor, count)

    def record(inode: int, pid: int) -> None:
        owners = found.setdefault(inode, [])
        if pid not in owners:
            owners.append(pid)

    for pid in order:
        if len(found) == remaining:
            break
        count = _fd_count(proc, pid)
        if count < 0:
            done.add(pid)
            continue
        if count <= 2 * _PROBE:
            # Small (or the kernel does not tell): read it whole now.
            if not _scan_process(proc, pid, wanted, found):
                hidden += 1
            done.add(pid)
            continue
        dfd = _open_fd_dir(proc, pid)
        if isinstance(dfd, bool):
            hidden += not dfd
            done.add(pid)
            continue
        try:
            # Descriptors are mostly dense from 0: probe evenly spaced numbers
            # without listing the directory.
            best = (1 << 62, 0)
            for k in range(_PROBE):
                fd = k * count // _PROBE
                inode = _socket_inode(dfd, str(fd))
                if not inode:
                    continue
                if inode in wanted:
                    record(inode, pid)
                at = bisect.bisect_left(targets, inode)
                for near in targets[max(at - 1, 0) : at + 1]:
                    best = min(best, (abs(near - inode), fd))
            large.append((best[0], pid, best[1], count))
        finally:
            os.close(dfd)

    for _distance, pid, start, count in sorted(large):
        if len(found) == remaining:
            break
        if not _scan_outward(
            proc, pid, start=start, count=count, wanted=wanted, found=found, remaining=remaining
        ):
            hidden += 1
        done.add(pid)

    rest = [pid for pid in order if pid not in done]
    if rest:
        # Every inode has an owner: cover the owners' families, then stop.
        hidden += _scan_family(proc, rest, wanted, found)
    return OwnerScan.from_lists(found, hidden, complete=not rest)


def _scan_outward(
    proc: str,
    pid: int,
    *,
    start: int,
    count: int,
    wanted: Collection[int],
    found: dict[int, list[int]],
    remaining: int,
) -> bool:
    """Read ``pid``'s links nearest ``start`` first, until every wanted inode has an owner."""
    limit = _fd_table_size(proc, pid)
    dfd = _open_fd_dir(proc, pid)
    if isinstance(dfd, bool):
        return dfd
    try:
        if 0 < limit <= 4 * count + 64:
            numbers: Iterable[str] = map(str, _outward(min(start, limit - 1), limit))
        else:
            # Sparse descriptors: list them, then read nearest first.
            try:
                names = os.listdir(dfd)
            except OSError:
                return True
            names.sort(key=lambda n: abs(int(n) - start))
            numbers = names
        seen = 0
        for name in numbers:
            try:
                link = os.readlink(name, dir_fd=dfd)
            except OSError:
                continue
            seen += 1
            if link[:8] == "socket:[":
                inode = int(link[8:-1])
                if inode in wanted:
                    owners = found.setdefault(inode, [])
                    if pid not in owners:
                        owners.append(pid)
                    if len(found) == remaining:
                        break
            if seen >= count and limit:
                # Every descriptor counted has been read; the rest of the
                # range is empty (unless opened this instant).
                break
    finally:
        os.close(dfd)
    return True


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
