"""Benchmark: collisions and latency of picking a free port under 16 concurrent processes.

    python bench/bench_pick.py [--workers 16] [--picks 40] [--rounds 3] [--json]

Compared, in the same run and on the same machine:

* ``portbook``: :func:`portbook.pick_port` on a fresh store (in a temporary
  directory), leased to the worker process;
* ``portpicker``: ``portpicker.pick_unused_port()`` without a portserver;
* ``portpicker+server``: the same, served by a ``portserver`` started here;
* ``bind0``: bind a socket to port 0, read the port the kernel chose, close.

Each of ``--workers`` processes waits at a common start line, then picks
``--picks`` ports one after another, and after each pick binds the port
(TCP, 0.0.0.0) and keeps it bound until the round ends, as a test fixture or
server would. A *collision* is a port returned to two workers while both
hold it (every port is held to the end of the round, so any duplicate is
one); a *bind failure* is a picked port the worker then could not bind.
Latency is the time of the pick call alone, in the worker. Separately, the
in-process latency of one process picking alone is measured (the target:
median below 0.5 ms). Needs ``pip install -e '.[bench]'`` for portpicker.
"""

from __future__ import annotations

import argparse  # noqa: TID251  (a bench script, not the library)
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

METHODS = ("portbook", "portpicker", "portpicker+server", "bind0")


def _pick_function(method: str, store_path: str) -> Any:
    if method == "portbook":
        from portbook import Store, pick_port

        store = Store(store_path)
        return lambda: pick_port(store=store).port
    if method.startswith("portpicker"):
        import portpicker

        return portpicker.pick_unused_port
    if method == "bind0":

        def bind0() -> int:
            with socket.socket() as s:
                s.bind(("0.0.0.0", 0))
                port: int = s.getsockname()[1]
                return port

        return bind0
    raise SystemExit(f"unknown method {method}")


def worker(method: str, picks: int, store_path: str) -> None:
    pick = _pick_function(method, store_path)
    pick_port = pick()  # warm-up: imports, store open, registry load
    held: list[socket.socket] = []
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()  # the common start line
    latencies: list[float] = []
    ports: list[int] = []
    failures = 0
    for _ in range(picks):
        t0 = time.perf_counter()
        pick_port = pick()
        latencies.append(time.perf_counter() - t0)
        ports.append(pick_port)
        s = socket.socket()
        try:
            s.bind(("0.0.0.0", pick_port))
            s.listen()
            held.append(s)
        except OSError:
            failures += 1
            s.close()
    sys.stdout.write(json.dumps({"latencies": latencies, "ports": ports, "failures": failures}))
    sys.stdout.write("\n")
    sys.stdout.flush()
    sys.stdin.readline()  # hold every port until the round ends
    for s in held:
        s.close()


def _round(method: str, workers: int, picks: int, env: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-pick-") as tmp:
        store_path = str(Path(tmp) / "store.sqlite3")
        cmd = [sys.executable, __file__, "--worker", method, "--picks", str(picks)]
        procs = [
            subprocess.Popen(
                [*cmd, "--store", store_path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(workers)
        ]
        try:
            for p in procs:
                assert p.stdout is not None
                if p.stdout.readline().strip() != "ready":
                    raise SystemExit(f"{method}: a worker failed to start")
            for p in procs:
                assert p.stdin is not None
                p.stdin.write("go\n")
                p.stdin.flush()
            reports = []
            for p in procs:
                assert p.stdout is not None
                reports.append(json.loads(p.stdout.readline()))
        finally:
            for p in procs:
                try:
                    p.communicate(input="done\n", timeout=60)
                except (subprocess.TimeoutExpired, ValueError, BrokenPipeError):
                    p.kill()
                    p.wait()
    ports = [port for r in reports for port in r["ports"]]
    return {
        "latencies": [x for r in reports for x in r["latencies"]],
        "picks": len(ports),
        "collisions": len(ports) - len(set(ports)),
        "bind_failures": sum(r["failures"] for r in reports),
    }


def _start_portserver() -> tuple[subprocess.Popen[bytes], str] | None:
    script = Path(sys.executable).parent / "portserver.py"
    found = str(script) if script.exists() else shutil.which("portserver.py")
    if found is None:
        return None
    address = f"@portbook-bench-{os.getpid()}"
    proc = subprocess.Popen(
        [sys.executable, found, "--portserver_address", address],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # it binds its socket at start-up
    return proc, address


def _in_process(picks: int) -> list[float]:
    from portbook import Store, pick_port

    with tempfile.TemporaryDirectory(prefix="bench-pick-") as tmp:
        store = Store(Path(tmp) / "store.sqlite3")
        pick_port(store=store)  # warm-up
        out = []
        for _ in range(picks):
            t0 = time.perf_counter()
            pick_port(store=store)
            out.append(time.perf_counter() - t0)
        store.close()
    return out


def _ms(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--picks", type=int, default=40, help="picks per worker per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.picks, args.store)
        return

    try:
        import portpicker  # noqa: F401
    except ImportError:
        raise SystemExit("needs portpicker: pip install -e '.[bench]'") from None
    src = str(Path(__file__).resolve().parents[1] / "src")
    base_env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    base_env.pop("PORTSERVER_ADDRESS", None)
    server = _start_portserver()
    results: dict[str, dict[str, Any]] = {
        m: {"latencies": [], "picks": 0, "collisions": 0, "bind_failures": 0} for m in METHODS
    }
    try:
        for _ in range(args.rounds):
            # Paired: every method runs once per round, in the same conditions.
            for method in METHODS:
                env = dict(base_env)
                if method == "portpicker+server":
                    if server is None:
                        continue
                    env["PORTSERVER_ADDRESS"] = server[1]
                r = _round(method, args.workers, args.picks, env)
                acc = results[method]
                acc["latencies"] += r["latencies"]
                for key in ("picks", "collisions", "bind_failures"):
                    acc[key] += r[key]
    finally:
        if server is not None:
            server[0].terminate()
            server[0].wait()
    solo = _in_process(500)

    summary = {
        "machine": {
            "cores": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "workers": args.workers,
        "picks_per_worker": args.picks,
        "rounds": args.rounds,
        "concurrent": {
            m: {
                "picks": r["picks"],
                "collisions": r["collisions"],
                "bind_failures": r["bind_failures"],
                "median_ms": round(_ms(r["latencies"], 0.5), 3),
                "p99_ms": round(_ms(r["latencies"], 0.99), 3),
            }
            for m, r in results.items()
            if r["picks"]
        },
        "in_process": {
            "picks": len(solo),
            "median_ms": round(statistics.median(solo) * 1000, 3),
            "p99_ms": round(_ms(solo, 0.99), 3),
        },
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    m = summary["machine"]
    print(f"{m['cores']} cores, Linux {m['kernel']}, Python {m['python']}")
    print(
        f"{args.workers} processes x {args.picks} picks x {args.rounds} rounds, "
        "each port bound and held after its pick"
    )
    head = ("method", "picks", "collisions", "bind fail", "median ms", "p99 ms")
    print(f"{head[0]:<20}{head[1]:>7}{head[2]:>12}{head[3]:>11}{head[4]:>11}{head[5]:>9}")
    for name, r in summary["concurrent"].items():
        print(
            f"{name:<20}{r['picks']:>7}{r['collisions']:>12}{r['bind_failures']:>11}"
            f"{r['median_ms']:>11.3f}{r['p99_ms']:>9.3f}"
        )
    solo_r = summary["in_process"]
    print(
        f"portbook in-process, one picker: median {solo_r['median_ms']:.3f} ms, "
        f"p99 {solo_r['p99_ms']:.3f} ms over {solo_r['picks']} picks (target: median < 0.5 ms)"
    )


if __name__ == "__main__":
    main()
