"""The whole /proc walk: every socket inode held by any visible process, with its pids.

This module imports nothing from portbook, so that it can also run on its
own as a short-lived helper process (``python -I -S walk.py /proc``): for a
whole-table listing portbook starts it first, reads the kernel's socket
table meanwhile, and collects the walk's result at the end. Reading
descriptor links is almost all kernel time, and a second process lets it use
the second core; a thread cannot, because every link read must take the GIL
back while the main thread is busy building records.

Run as a helper (``walk.py PROC [PID,PID,...]``) it writes
``marshal.dumps((single, shared, hidden))`` to stdout.
"""

from __future__ import annotations

import os

Walk = tuple[dict[int, int], dict[int, tuple[int, ...]], int]


def all_pids(proc: str = "/proc") -> list[int]:
    """Every process id, newest first."""
    return sorted((int(n) for n in os.listdir(proc) if n.isdigit()), reverse=True)


def walk(proc: str = "/proc", pids: list[int] | None = None) -> Walk:
    """``(single, shared, hidden)`` for the processes ``pids`` (default: all).

    ``single`` maps the inode of each socket held by exactly one process to
    its pid (the common case, and the cheapest to send between processes);
    ``shared`` maps a socket held by several to their pids (ascending).
    ``hidden`` counts processes whose descriptors could not be read.
    """
    single: dict[int, int] = {}
    shared: dict[int, list[int]] = {}
    hidden = 0
    try:
        order = all_pids(proc) if pids is None else pids
    except OSError:
        return single, {}, hidden
    setdefault = single.setdefault
    readlink = os.readlink
    flags = os.O_RDONLY | os.O_DIRECTORY
    for pid in order:
        try:
            dfd = os.open(f"{proc}/{pid}/fd", flags)
        except PermissionError:
            hidden += 1
            continue
        except OSError:
            continue  # exited while we looked
        try:
            try:
                names = os.listdir(dfd)
            except PermissionError:
                hidden += 1
                continue
            except OSError:
                continue
            for name in names:
                try:
                    link = readlink(name, dir_fd=dfd)
                except OSError:
                    continue  # closed while we looked
                if link[:8] == "socket:[":
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
    return single, {inode: tuple(sorted(holders)) for inode, holders in shared.items()}, hidden


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
