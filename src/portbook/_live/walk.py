"""The walk of ``/proc/*/fd``: every socket inode held by a process, with its pids.

The kernel keeps no map from a socket to the processes whose descriptor
tables point at it, so every tool (``ss -p``, ``lsof``, psutil) reads the
link of each descriptor of each process (``socket:[INODE]``). This module is
the one place that reads those links.

A walk can be shared by two processes, one from each end of the list of
processes (biggest first): a helper walks from the front
(:func:`walk_in_turn`), while this process does other work and then walks
from the back (:func:`walk_to_meet`); each side says which processes it has
taken before reading them, so they stop where they meet and neither needs to
guess the other's speed. Reading descriptor links is almost
all kernel time, and a second process lets it use the second core; a thread
cannot, because every link read must take the GIL back while the main
thread is busy building records.

It imports nothing from portbook, so that it can also run on its own as the
helper (``python -I -S walk.py --in-turn /proc PID:LO:HI,...``, with the claims
pipe on stdin and the progress pipe on descriptor 3), where forking is not safe;
the helper writes ``marshal.dumps(walk)`` to stdout. ``walk.py /proc
[PID,...]`` walks them all and writes the same.
"""

from __future__ import annotations

import os

#: (single, shared, refused): see :func:`walk`.
Walk = tuple[dict[int, int], dict[int, tuple[int, ...]], list[int]]
#: (pid, lo, hi): the descriptors lo to hi - 1 of a process (hi 0: to the last).
Unit = tuple[int, int, int]

SOCKET_LINK = "socket:["

# How many processes the helper has walked, as it tells the other side.
_COUNT_BYTES = 4
# Missing descriptor numbers after which a process is read from its listing.
_HOLES = 16
# A process with this many descriptors is shared walk work in two halves.
SPLIT_FROM = 2048


def socket_inode(link: str) -> int:
    """The inode of a ``socket:[INODE]`` descriptor link; 0 for any other kind of file."""
    return int(link[8:-1]) if link[:8] == SOCKET_LINK else 0


def all_pids(proc: str = "/proc") -> list[int]:
    """Every process id, newest first."""
    return sorted((int(n) for n in os.listdir(proc) if n.isdigit()), reverse=True)


def sizes_known(proc: str = "/proc") -> bool:
    """Whether ``stat`` of ``/proc/PID/fd`` gives the number of open descriptors.

    Linux 6.2 and later report it as the directory's size, one cheap call
    per process; older kernels say 0 for every process, and then a size
    tells nothing. This process has descriptors open, so its own directory
    tells which kernel this is.
    """
    try:
        return os.stat(f"{proc}/self/fd").st_size > 0
    except OSError:
        return False


def with_descriptors(proc: str = "/proc") -> list[tuple[int, int]]:
    """``(descriptors, pid)`` of every process that has any, most first where sizes are known.

    Kernel threads (half the processes of a small machine) have no
    descriptor table: with :func:`sizes_known` one ``stat`` each rules them
    out, where opening and listing their empty directory costs seven
    system calls. Without sizes every process is listed with weight 1.
    """
    pids = all_pids(proc)
    if not sizes_known(proc):
        return [(1, pid) for pid in pids]
    weighed = []
    stat = os.stat
    for pid in pids:
        try:
            size = stat(f"{proc}/{pid}/fd").st_size
        except PermissionError:
            size = 1  # not ours to count: the walk will say it was refused
        except OSError:
            continue  # gone
        if size:
            weighed.append((size, pid))
    weighed.sort(reverse=True)
    return weighed


class _Found:
    """What a walk has found so far; :meth:`read` adds one process."""

    __slots__ = ("prefix", "refused", "shared", "single", "sized")

    def __init__(self, proc: str) -> None:
        self.prefix = os.fsencode(proc)
        self.single: dict[int, int] = {}
        self.shared: dict[int, list[int]] = {}
        self.refused: list[int] = []
        self.sized = sizes_known(proc)

    def read(self, pid: int, lo: int = 0, hi: int = 0) -> None:
        """Every socket link of process ``pid``: its descriptors ``lo`` to ``hi - 1`` (0: all).

        The system calls per process are what a walk costs on a small
        machine, and one per descriptor what it costs on a large one. Names
        and links are bytes (no decoding); links are read with
        ``readlinkat`` relative to the open directory (cheaper than a whole
        path per link); a process whose first link is refused is not asked
        for the others, which the same rule refuses.

        Where the kernel gives the number of descriptors (:func:`sizes_known`),
        a process whose descriptors are 0 to N-1 (most are: the kernel hands
        out the lowest free number) is read by number, without listing its
        directory, which costs about a quarter of reading the links (1.2 us
        an entry against 4.5 us a link); the first numbers missing send it
        to the listing for the rest (see :meth:`_by_number`). A process can
        be read in parts (see :func:`in_parts`).
        """
        path = b"%s/%d/fd" % (self.prefix, pid)
        if self.sized:
            self._by_number(pid, path, lo, hi)
            return
        try:
            # By path: five calls; listing an open descriptor costs eight,
            # as Python duplicates it first.
            names = os.listdir(path)
            if not names:
                return
        except PermissionError:
            self.refused.append(pid)
            return
        except OSError:
            return  # exited while we looked, or a kernel thread
        if lo or hi:
            names = [n for n in names if lo <= int(n) and (not hi or int(n) < hi)]
        self._listed(pid, path, names)

    def _by_number(self, pid: int, path: bytes, lo: int, hi: int) -> None:
        """Descriptors ``lo`` to N-1 by number (N: the count now, or ``hi`` if lower); the
        listing past the first holes.

        The count is taken now, not when the walk was planned, so that a
        process that opened descriptors since is read as the listing would
        read it. When a number is missing, N descriptors are not all below
        N: after 16 holes the rest of the part is read from a listing, and
        after fewer, the listing's names from N on. Of a process read in
        two parts, each part that finds a hole reads the names from N on,
        so neither needs to know what the other found.
        """
        try:
            count = os.stat(path).st_size
        except OSError:
            return  # exited while we looked
        end = count if not hi else min(hi, count)
        dfd = self._open(pid, path) if lo < end or (hi and count > hi) else -1
        if dfd < 0:
            return
        setdefault = self.single.setdefault
        shared = self.shared
        readlink = os.readlink
        number, missing = lo, 0
        try:
            # (One loop over every descriptor of the machine: a call per
            # descriptor would cost more than the branches it would hide.)
            while number < end:
                try:
                    link = readlink(b"%d" % number, dir_fd=dfd)
                except FileNotFoundError:
                    missing += 1
                    if missing > _HOLES:
                        break
                    number += 1
                    continue
                except PermissionError:
                    self.refused.append(pid)
                    return
                except OSError:
                    number += 1
                    continue
                number += 1
                # The test of socket_inode(), inlined.
                if link[:8] == b"socket:[":
                    inode = int(link[8:-1])
                    first = setdefault(inode, pid)
                    if first != pid:
                        holders = shared.setdefault(inode, [first])
                        if pid not in holders:
                            holders.append(pid)
            if missing:
                self._rest(pid, dfd, path, (number, hi or count, count))
        finally:
            os.close(dfd)

    def _rest(self, pid: int, dfd: int, path: bytes, bounds: tuple[int, int, int]) -> None:
        """The listed descriptors from ``start`` to ``stop - 1``, and from ``count`` on."""
        start, stop, count = bounds
        try:
            numbers = [(int(n), n) for n in os.listdir(path)]
        except OSError:
            return
        self._links(pid, dfd, [n for i, n in numbers if start <= i < stop or i >= count])

    def _open(self, pid: int, path: bytes) -> int:
        """``path`` opened as a directory; -1 when refused (noted) or gone."""
        try:
            return os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except PermissionError:
            self.refused.append(pid)
        except OSError:
            pass  # exited while we looked
        return -1

    def _listed(self, pid: int, path: bytes, names: list[bytes]) -> None:
        dfd = self._open(pid, path)
        if dfd < 0:
            return
        try:
            self._links(pid, dfd, names)
        finally:
            os.close(dfd)

    def _links(self, pid: int, dfd: int, names: list[bytes]) -> None:
        """The socket links among ``names`` in the open directory ``dfd``."""
        setdefault = self.single.setdefault
        shared = self.shared
        readlink = os.readlink
        for name in names:
            try:
                link = readlink(name, dir_fd=dfd)
            except PermissionError:
                self.refused.append(pid)
                return
            except OSError:
                continue  # closed while we looked
            # The test of socket_inode(), inlined: this loop runs once per
            # descriptor of the processes read by listing.
            if link[:8] == b"socket:[":
                inode = int(link[8:-1])
                first = setdefault(inode, pid)
                if first != pid:
                    holders = shared.setdefault(inode, [first])
                    if pid not in holders:
                        holders.append(pid)

    def result(self) -> Walk:
        single = self.single
        for inode in self.shared:
            del single[inode]
        shared = {inode: tuple(sorted(holders)) for inode, holders in self.shared.items()}
        return single, shared, self.refused


def in_parts(weighed: list[tuple[int, int]]) -> list[Unit]:
    """The units of a shared walk of ``weighed`` (``(descriptors, pid)``, most first).

    A process of :data:`SPLIT_FROM` descriptors or more is two units, its
    lower and upper halves by number, so that the two sides of a shared
    walk, which meet at a unit, wait for each other at most half a big
    process (on 20,000 sockets in 4 processes, 30 ms of a whole one).
    """
    units: list[Unit] = []
    for size, pid in weighed:
        if size >= SPLIT_FROM:
            units += [(pid, 0, size // 2), (pid, size // 2, 0)]
        else:
            units.append((pid, 0, 0))
    return units


def walk_units(proc: str, units: list[Unit]) -> Walk:
    """:func:`walk` of ``units`` (a process in parts is read part by part)."""
    found = _Found(proc)
    for pid, lo, hi in units:
        found.read(pid, lo, hi)
    return found.result()


def walk(proc: str = "/proc", pids: list[int] | None = None) -> Walk:
    """``(single, shared, refused)`` for the processes ``pids`` (default: all).

    ``single`` maps the inode of each socket held by exactly one process to
    its pid (the common case, and the cheapest to send between processes);
    ``shared`` maps a socket held by several to their pids (ascending).
    ``refused`` lists the processes whose descriptors could not be read
    (``EACCES``: another user's without root, or a process even root may
    not read, whose directory lists but whose links do not). A process that
    exits meanwhile is simply not there.
    """
    found = _Found(proc)
    try:
        order = [pid for _, pid in with_descriptors(proc)] if pids is None else pids
    except OSError:
        return found.result()
    for pid in order:
        found.read(pid)
    return found.result()


def _latest(fd: int, current: int) -> tuple[int, bool]:
    """The last count written to ``fd`` so far (``current`` if none), and whether it ended."""
    while True:
        try:
            said = os.read(fd, 4096)
        except BlockingIOError:
            return current, False
        if not said:
            return current, True
        end = len(said) - len(said) % _COUNT_BYTES  # 4-byte writes to a pipe are whole
        if end:
            current = int.from_bytes(said[end - _COUNT_BYTES : end], "little")
        if len(said) < 4096:
            return current, False


def _tell(fd: int, count: int) -> int:
    """Write ``count`` to ``fd`` without waiting; the descriptor to use next time.

    A full pipe (the other side has not read 16,384 counts) skips this one:
    the other side reads only the latest, and neither may wait for the
    other. Once nobody listens, -1.
    """
    if fd >= 0:
        try:
            os.write(fd, count.to_bytes(_COUNT_BYTES, "little"))
        except BlockingIOError:
            pass
        except OSError:
            return -1
    return fd


def walk_in_turn(proc: str, units: list[Unit], *, claims: int, progress: int) -> Walk:
    """The helper's side of a shared walk: ``units`` from the first on, until the sides meet.

    Before each process it reads ``claims`` without waiting: the other side
    writes there the lowest index it has taken, and closes it to say stop.
    Then it writes to ``progress`` how many processes it has started (4
    bytes, little-endian each), so that the other side does not take them.
    """
    os.set_blocking(claims, False)
    if progress >= 0:
        os.set_blocking(progress, False)
    found = _Found(proc)
    taken = len(units)
    for index, (pid, lo, hi) in enumerate(units):
        taken, stop = _latest(claims, taken)
        if stop or index >= taken:
            break
        progress = _tell(progress, index + 1)
        found.read(pid, lo, hi)
    return found.result()


def walk_to_meet(
    proc: str, units: list[Unit], *, claims: int, progress: int, first: tuple[int, ...] = ()
) -> tuple[Walk, int]:
    """This process's side of a shared walk: ``units`` from the last back, until the sides meet.

    The processes ``first`` (not among ``units``) are walked before any. Each
    unit is claimed on ``claims`` before it is read, and the walk stops
    at the first one the helper has started (``progress``, see
    :func:`walk_in_turn`), so no process is read twice but when both take
    the same one within the same microsecond (harmless: the walks merge).
    Returns the walk and how many units from the front are left to the
    helper (0 when this side walked them all, as it does if the helper
    stops reporting).
    """
    os.set_blocking(progress, False)
    os.set_blocking(claims, False)
    found = _Found(proc)
    for pid in first:
        found.read(pid)
    started = 0
    index = len(units) - 1
    while index >= 0:
        claims = _tell(claims, index)
        started = _latest(progress, started)[0]
        if index < started:
            break
        found.read(*units[index])
        index -= 1
    return found.result(), index + 1


def _main(argv: list[str]) -> int:
    import marshal
    import sys

    try:
        in_turn = argv[1:2] == ["--in-turn"]
        args = argv[2:] if in_turn else argv[1:]
        proc = args[0] if args else "/proc"
        given = [p for p in args[1].split(",") if p] if len(args) > 1 else None
        if in_turn:  # units PID:LO:HI, claims on stdin, progress on descriptor 3
            units = [(int(a), int(b), int(c)) for a, b, c in (u.split(":") for u in given or [])]
            result = walk_in_turn(proc, units, claims=0, progress=3)
        else:
            result = walk(proc, None if given is None else [int(p) for p in given])
        out = sys.stdout.buffer
        out.write(marshal.dumps(result))
        out.flush()
    except (KeyboardInterrupt, OSError):
        return 1
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv))
