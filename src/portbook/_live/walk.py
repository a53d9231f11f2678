"""The walk of ``/proc/*/fd``: every socket inode held by a process, with its pids.

The kernel keeps no map from a socket to the processes whose descriptor
tables point at it, so every tool (``ss -p``, ``lsof``, psutil) reads the
link of each descriptor of each process (``socket:[INODE]``). This module is
the one place that reads those links.

It imports nothing from portbook, so that it can also run on its own as a
short-lived helper process (``python -I -S walk.py /proc [PID,...]``): for a
large table portbook starts it first, reads the kernel's socket table and
walks the other half of the processes meanwhile, and merges the two walks.
Reading descriptor links is almost all kernel time, and a second process
lets it use the second core; a thread cannot, because every link read must
take the GIL back while the main thread is busy building records. Run as a
helper it writes ``marshal.dumps(walk(...))`` to stdout.
"""

from __future__ import annotations

import os

#: (single, shared, refused): see :func:`walk`.
Walk = tuple[dict[int, int], dict[int, tuple[int, ...]], list[int]]

SOCKET_LINK = "socket:["


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


def walk(proc: str = "/proc", pids: list[int] | None = None) -> Walk:  # noqa: PLR0912
    # (One loop over every descriptor of the machine: a call per descriptor
    # for a helper would cost more than the branches it would hide.)
    """``(single, shared, refused)`` for the processes ``pids`` (default: all).

    ``single`` maps the inode of each socket held by exactly one process to
    its pid (the common case, and the cheapest to send between processes);
    ``shared`` maps a socket held by several to their pids (ascending).
    ``refused`` lists the processes whose descriptors could not be read
    (``EACCES``: another user's without root, or a process even root may
    not read, whose directory lists but whose links do not). A process that
    exits meanwhile is simply not there.

    The system calls per process are what a walk costs on a small machine,
    and one per descriptor what it costs on a large one: names and links
    are bytes (no decoding), each directory is listed by path (five calls;
    listing an open descriptor costs eight, as Python duplicates it first)
    and opened only when it has entries, for ``readlinkat`` relative to it
    (cheaper than a whole path per link); a process whose first link is
    refused is not asked for the others, which the same rule refuses.
    """
    single: dict[int, int] = {}
    shared: dict[int, list[int]] = {}
    refused: list[int] = []
    try:
        order = [pid for _, pid in with_descriptors(proc)] if pids is None else pids
    except OSError:
        return single, {}, refused
    setdefault = single.setdefault
    readlink = os.readlink
    listdir = os.listdir
    flags = os.O_RDONLY | os.O_DIRECTORY
    prefix = os.fsencode(proc)
    for pid in order:
        path = b"%s/%d/fd" % (prefix, pid)
        try:
            names = listdir(path)
            if not names:
                continue
            dfd = os.open(path, flags)
        except PermissionError:
            refused.append(pid)
            continue
        except OSError:
            continue  # exited while we looked, or a kernel thread
        try:
            for name in names:
                try:
                    link = readlink(name, dir_fd=dfd)
                except PermissionError:
                    refused.append(pid)
                    break
                except OSError:
                    continue  # closed while we looked
                # The test of socket_inode(), inlined: this loop runs once
                # per descriptor of the machine.
                if link[:8] == b"socket:[":
                    inode = int(link[8:-1])
                    first = setdefault(inode, pid)
                    if first != pid:
                        holders = shared.setdefault(inode, [first])
                        if pid not in holders:
                            holders.append(pid)
        finally:
            os.close(dfd)
    for inode in shared:
        del single[inode]
    return single, {inode: tuple(sorted(holders)) for inode, holders in shared.items()}, refused


def _main(argv: list[str]) -> int:
    import marshal
    import sys

    try:
        proc = argv[1] if len(argv) > 1 else "/proc"
        pids = [int(p) for p in argv[2].split(",") if p] if len(argv) > 2 else None
        data = marshal.dumps(walk(proc, pids))
        out = sys.stdout.buffer
        out.write(data)
        out.flush()
    except (KeyboardInterrupt, OSError):
        return 1
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv))
