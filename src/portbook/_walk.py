"""The whole /proc walk: every socket inode held by any visible process, with its pids.

This module imports nothing from portbook, so that it can also run on its
own as a short-lived helper process (``python -I -S _walk.py /proc``): for a
whole-table listing portbook starts it first, reads the kernel's socket
table meanwhile, and collects the walk's result at the end. Reading
descriptor links is almost all kernel time, and a second process lets it use
the second core; a thread cannot, because every link read must take the GIL
back while the main thread is busy building records.

Run as a helper it writes ``marshal.dumps((owners, hidden))`` to stdout.
"""

from __future__ import annotations

import os


def walk(proc: str = "/proc") -> tuple[dict[int, list[int]], int]:
    """``({inode: [pid, ...]}, hidden)``; ``hidden`` counts processes whose fds were unreadable."""
    owners: dict[int, list[int]] = {}
    hidden = 0
    try:
        order = sorted((int(n) for n in os.listdir(proc) if n.isdigit()), reverse=True)
    except OSError:
        return owners, hidden
    get = owners.get
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
                    pids = get(inode)
                    if pids is None:
                        owners[inode] = [pid]
                    elif pid not in pids:
                        pids.append(pid)
        finally:
            os.close(dfd)
    for pids in owners.values():
        if len(pids) > 1:
            pids.sort()
    return owners, hidden


def _main(argv: list[str]) -> int:
    import marshal
    import sys

    try:
        data = marshal.dumps(walk(argv[1] if len(argv) > 1 else "/proc"))
        out = sys.stdout.buffer
        out.write(data)
        out.flush()
    except (KeyboardInterrupt, OSError):
        return 1
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv))
