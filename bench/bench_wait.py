"""How fast ``portbook wait`` notices a port opening and closing, against portend and wait-for-it.

Run (from a checkout with the bench extra installed, wait-for-it on PATH)::

    python bench/bench_wait.py --trials 15           # this machine's namespace
    python bench/bench_wait.py --trials 15 --netns   # a new, empty one (root)

Each trial reserves a loopback port the kernel picks (bound, not listening),
starts every waiter as a real child process, lets them settle into polling,
then at a random moment calls ``listen()`` (open) or ``close()`` (close).
Two delays are timed from that moment: *noticed*, when the tool writes its
"ready" line on stderr (each tool writes one as it notices), and *exited*,
when the child process is reaped (what a script waiting on it sees, the
interpreter's shutdown included). The tools run side by side in the same trial, on the
same port and event, so machine noise hits them alike; results are medians
over trials and ratios against portbook from the same trials.

Waiters:
  portbook     python -m portbook wait -t 30 127.0.0.1:PORT  (--closed for close)
  portend      portend.occupied / portend.free (polls every 100 ms)
  wait-for-it  wait-for-it -t 30 127.0.0.1:PORT (open only: it has no close mode)
"""

from __future__ import annotations

import argparse  # noqa: TID251  (a bench script, not the library)
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

PORTEND_OPEN = (
    "import portend, sys; portend.occupied('127.0.0.1', int(sys.argv[1]), timeout=30); "
    "sys.stderr.write('ready\\n'); sys.stderr.flush()"
)
PORTEND_FREE = (
    "import portend, sys; portend.free('127.0.0.1', int(sys.argv[1]), timeout=30); "
    "sys.stderr.write('ready\\n'); sys.stderr.flush()"
)
# The line each tool writes on stderr at the moment it notices the change.
MARKERS = {"portbook": " after ", "portend": "ready", "wait-for-it": "available"}
# Long enough for every waiter to start, import and settle into its polling loop.
SETTLE = 1.2
# The event comes at a random phase within this window after SETTLE, so that
# fixed poll intervals are sampled fairly.
JITTER = 1.0


def waiters(port: int, mode: str) -> dict[str, list[str]]:
    py = sys.executable
    out: dict[str, list[str]] = {}
    pb = [py, "-m", "portbook", "wait", "-t", "30"]
    if mode == "close":
        pb.append("--closed")
    out["portbook"] = [*pb, f"127.0.0.1:{port}"]
    if _has_portend():
        out["portend"] = [py, "-c", PORTEND_OPEN if mode == "open" else PORTEND_FREE, str(port)]
    wfi = shutil.which("wait-for-it")
    if wfi and mode == "open":
        out["wait-for-it"] = [wfi, "-t", "30", f"127.0.0.1:{port}"]
    return out


def _has_portend() -> bool:
    try:
        import portend  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class Exit:
    noticed: float = 0.0
    at: float = 0.0
    status: int | None = None
    done: threading.Event = field(default_factory=threading.Event)


def _watch(proc: subprocess.Popen[str], marker: str, exit_: Exit) -> None:
    # One thread per child, so that no waiter is timed late because another
    # was being read: the stamp is taken as the tool's line arrives, and again
    # when the child is reaped (what a script waiting on its exit sees).
    assert proc.stderr is not None
    for line in proc.stderr:
        if marker in line:
            exit_.noticed = time.perf_counter()
            break
    exit_.status = proc.wait()
    exit_.at = time.perf_counter()
    exit_.done.set()


def trial(mode: str, rng: random.Random) -> dict[str, tuple[float, float]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    if mode == "close":
        sock.listen(64)
    procs: dict[str, tuple[subprocess.Popen[str], Exit]] = {}
    try:
        names = list(waiters(port, mode).items())
        rng.shuffle(names)  # start order varies, so no tool always starts first
        for name, argv in names:
            proc = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, bufsize=1
            )
            ex = Exit()
            threading.Thread(target=_watch, args=(proc, MARKERS[name], ex), daemon=True).start()
            procs[name] = (proc, ex)
        time.sleep(SETTLE + rng.uniform(0, JITTER))
        early = [n for n, (_, ex) in procs.items() if ex.done.is_set()]
        if early:
            raise RuntimeError(f"exited before the event: {', '.join(early)}")
        event = time.perf_counter()
        if mode == "open":
            sock.listen(64)
        else:
            sock.close()
        delays: dict[str, tuple[float, float]] = {}
        for name, (_, ex) in procs.items():
            if not ex.done.wait(30):
                raise RuntimeError(f"{name} did not notice within 30 s")
            if ex.status != 0 or not ex.noticed:
                raise RuntimeError(f"{name} exited with status {ex.status}")
            delays[name] = (ex.noticed - event, ex.at - event)
        return delays
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
        sock.close()


def _tcp_sockets() -> int:
    # Dumping the table for --closed costs time in proportion to its size.
    total = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name, encoding="ascii") as fh:
                total += sum(1 for _ in fh) - 1
        except OSError:
            pass
    return total


def exit_cost() -> dict[str, float]:
    """Median time from start to exit when the port is already open: each tool's fixed cost."""
    costs: dict[str, list[float]] = {}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        port = sock.getsockname()[1]
        for _ in range(5):
            for name, argv in waiters(port, "open").items():
                t0 = time.perf_counter()
                subprocess.run(
                    argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
                )
                costs.setdefault(name, []).append(time.perf_counter() - t0)
    return {n: statistics.median(v) for n, v in costs.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=15, help="trials per mode (default 15)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--netns",
        action="store_true",
        help="run inside a new, empty network namespace (needs root and unshare)",
    )
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.netns and not args.inside:
        # A private loopback with no other sockets: the figures then show
        # portbook's own mechanism, not the size of this machine's table.
        script = "ip link set lo up && exec " + " ".join(
            [sys.executable, os.path.abspath(__file__), "--inside", "--netns"]
            + ["--trials", str(args.trials)]
            + (["--seed", str(args.seed)] if args.seed is not None else [])
        )
        return subprocess.call(["unshare", "--net", "--", "sh", "-c", script])
    rng = random.Random(args.seed)

    where = "a new, empty network namespace" if args.netns else "this machine's network namespace"
    print(f"# bench_wait: {args.trials} trials per mode, in {where}")
    print(
        f"machine: {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}, "
        f"{_tcp_sockets()} TCP sockets in the table"
    )
    noticed: dict[str, dict[str, list[float]]] = {"open": {}, "close": {}}
    exited: dict[str, dict[str, list[float]]] = {"open": {}, "close": {}}
    for mode in ("open", "close"):
        for _ in range(args.trials):
            for name, (seen, gone) in trial(mode, rng).items():
                noticed[mode].setdefault(name, []).append(seen)
                exited[mode].setdefault(name, []).append(gone)
    print()
    print(
        "| event | tool | noticed: median (ms) | min-max (ms) | ratio vs portbook "
        "| exited: median (ms) | ratio vs portbook |"
    )
    print("|---|---|---|---|---|---|---|")
    for mode, per_tool in noticed.items():
        base = statistics.median(per_tool["portbook"])
        base_exit = statistics.median(exited[mode]["portbook"])
        for name in sorted(per_tool, key=lambda n: (n != "portbook", n)):
            values = per_tool[name]
            med = statistics.median(values)
            med_exit = statistics.median(exited[mode][name])
            print(
                f"| {mode} | {name} | {med * 1000:.1f} | "
                f"{min(values) * 1000:.1f}-{max(values) * 1000:.1f} | {med / base:.1f}x "
                f"| {med_exit * 1000:.1f} | {med_exit / base_exit:.1f}x |"
            )
    print()
    print("Start-to-exit on an already open port (fixed start-up cost, not part of the delay):")
    for name, cost in exit_cost().items():
        print(f"  {name}: {cost * 1000:.0f} ms")
    target_ok = all(statistics.median(noticed[m]["portbook"]) <= 0.020 for m in noticed)
    print()
    verdict = "met" if target_ok else "NOT met"
    print(f"target (portbook notices within 20 ms, median, open and close): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
