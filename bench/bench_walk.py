"""The owner walk alone: walked here, or shared with a helper, from 500 to 32,000 descriptors.

    python bench/bench_walk.py --sizes 500,1000,2000,4000,8000,16000,32000 --rounds 15

For each size, holder processes open that many sockets (unbound UDP
sockets: a descriptor is what the walk reads, whatever it points at), and
each round times, in a fresh random order, the walk of every process of the
machine three ways:

- ``here``: one walk in this process (``scan_all``),
- ``fork``: shared with a forked helper (``BackgroundWalk.share``), which is
  what ``portbook`` does with one thread,
- ``spawn``: shared with a helper started as a fresh interpreter running
  ``walk.py`` (what it does in a process with several threads).

Nothing else runs beside the walk here (the caller's own work, which the
helper's walk overlaps in ``portbook``, is zero), so the figures show what
a helper costs and saves at each size: ``HELPER_FROM`` in
``portbook._live.owners`` is the size from which ``fork`` is faster than
``here``. Also reported: descriptors read (all processes), system calls per
walk (``strace -c``, when installed; of ``here``), and the machine's load.
"""

from __future__ import annotations

import argparse  # noqa: TID251  (a bench script, not the library)
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

from portbook._live import owners
from portbook._live.walk import with_descriptors

_HOLDER = textwrap.dedent(
    """
    import resource, socket, sys
    count = int(sys.argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 64), hard))
    keep = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    print("ready", flush=True)
    sys.stdin.read()
    """
)
PER_HOLDER = 10_000  # below the usual hard limit of descriptors per process


def hold(total: int) -> list[subprocess.Popen[bytes]]:
    holders = []
    while total > 0:
        count = min(total, PER_HOLDER)
        child = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert child.stdout is not None
        if child.stdout.readline().strip() != b"ready":
            raise SystemExit("bench_walk: a holder could not open its sockets")
        holders.append(child)
        total -= count
    return holders


def release(holders: list[subprocess.Popen[bytes]]) -> None:
    for child in holders:
        assert child.stdin is not None
        child.stdin.close()
        child.wait()


def walk_once(how: str) -> float:
    me = os.getpid()
    started = time.perf_counter()
    if how == "here":
        owners.scan_all()
    else:
        pids = [pid for _, pid in with_descriptors() if pid != me]
        owners._may_fork = lambda: how == "fork"
        owners.BackgroundWalk(pids=pids).share(first=(me,))
    return time.perf_counter() - started


def syscalls() -> int | None:
    strace = shutil.which("strace")
    if strace is None:
        return None
    with tempfile.NamedTemporaryFile(prefix="bench-walk-strace-") as out:
        code = "from portbook._live.owners import scan_all; scan_all()"
        base = "import portbook._live.owners"
        counts = []
        for snippet in (code, base):
            subprocess.run(
                [strace, "-c", "-o", out.name, sys.executable, "-c", snippet],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            with open(out.name) as fh:
                total = [line for line in fh.read().splitlines() if line.endswith("total")]
            # "100.00  seconds  usecs/call  calls  [errors]  total"
            counts.append(int(total[-1].split()[3]) if total else 0)
    return counts[0] - counts[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="500,1000,2000,4000,8000,16000,32000")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print(
        "| sockets held | descriptors read | syscalls (here) | here ms | fork ms | spawn ms |"
        " fork / here | spawn / here |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    rng = random.Random(1)
    for size in sizes:
        holders = hold(size)
        try:
            read = sum(weight for weight, _ in with_descriptors())
            calls = syscalls()
            times: dict[str, list[float]] = {"here": [], "fork": [], "spawn": []}
            for number in range(args.rounds + 2):
                order = list(times)
                rng.shuffle(order)
                for how in order:
                    seconds = walk_once(how)
                    if number >= 2:
                        times[how].append(seconds)
        finally:
            release(holders)
        med = {how: statistics.median(v) * 1e3 for how, v in times.items()}
        ratio = {
            how: statistics.median(a / b for a, b in zip(times[how], times["here"], strict=True))
            for how in ("fork", "spawn")
        }
        print(
            f"| {size:,} | {read:,} | {'-' if calls is None else f'{calls:,}'} | "
            f"{med['here']:.1f} | {med['fork']:.1f} | {med['spawn']:.1f} | "
            f"{ratio['fork']:.2f}x | {ratio['spawn']:.2f}x |",
            flush=True,
        )
    print()
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
