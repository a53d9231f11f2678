"""Benchmark of the book: cold CLI start, in-process lookup and search, peak memory.

Run from the repository root, in the environment portbook is installed in::

    python bench/bench_book.py

What it measures, all in one run so that the ratios compare like with like:

1. Cold ``portbook lookup 443`` against bare ``python -c pass`` (the same
   interpreter), as a paired run: each round runs both, in random order, and
   the ratio of the medians is reported (target: at most 2x). Peak RSS of the
   ``portbook`` child comes from ``wait4`` (target: under 30 MiB).
2. In-process ``Book.lookup(port)`` over many different ports (a new port on
   every call, so no answer is reused), next to the C library's
   ``socket.getservbyport`` on the same ports; ``service_name`` per call.
3. ``Book.search(text)`` per query over a fixed list of queries.

Byte-compiled files are written first (``compileall``), as an installed
package has them; otherwise every cold run would compile portbook's sources.
"""

from __future__ import annotations

import argparse  # noqa: TID251 - a benchmark script, not the library
import compileall
import contextlib
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import portbook
from portbook import Book

SEARCHES = (
    "http",
    "kerberos",
    "database",
    "X Window",
    "printer",
    "ssh",
    "mail",
    "time",
    "game",
    "vpn",
    "sql",
    "video",
    "backup",
    "unassigned",
    "network management",
    "zzzz-no-match",
)


def _portbook_command() -> list[str]:
    script = Path(sys.executable).with_name("portbook")
    if script.is_file():
        return [str(script)]
    found = shutil.which("portbook")
    return [found] if found else [sys.executable, "-m", "portbook"]


def _run_child(argv: list[str]) -> tuple[float, int]:
    """Wall time (s) and peak RSS (KiB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited with {proc.returncode}")
    return elapsed, usage.ru_maxrss


def bench_cold(rounds: int) -> dict[str, Any]:
    lookup = [*_portbook_command(), "lookup", "443"]
    bare = [sys.executable, "-c", "pass"]
    # `portbook --version` starts the CLI (argparse, the facade) without the book:
    # the floor that the book's own cost sits on.
    version = [*_portbook_command(), "--version"]
    for _ in range(3):  # warm the page cache
        _run_child(lookup)
        _run_child(bare)
        _run_child(version)
    times: dict[str, list[float]] = {"lookup": [], "bare": [], "version": []}
    rss: list[int] = []
    for _ in range(rounds):
        trio = [("lookup", lookup), ("bare", bare), ("version", version)]
        random.shuffle(trio)
        for key, argv in trio:
            elapsed, peak = _run_child(argv)
            times[key].append(elapsed)
            if key == "lookup":
                rss.append(peak)
    lookup_ms = statistics.median(times["lookup"]) * 1e3
    bare_ms = statistics.median(times["bare"]) * 1e3
    version_ms = statistics.median(times["version"]) * 1e3
    ratios = [a / b for a, b in zip(times["lookup"], times["bare"], strict=True)]
    return {
        "command": "portbook lookup 443",
        "rounds": rounds,
        "lookup_median_ms": round(lookup_ms, 2),
        "bare_median_ms": round(bare_ms, 2),
        "version_median_ms": round(version_ms, 2),
        "ratio_of_medians": round(lookup_ms / bare_ms, 2),
        "cli_floor_ratio": round(version_ms / bare_ms, 2),
        "median_of_paired_ratios": round(statistics.median(ratios), 2),
        "peak_rss_mib_max": round(max(rss) / 1024, 1),
        "peak_rss_mib_median": round(statistics.median(rss) / 1024, 1),
    }


def bench_breakdown(rounds: int) -> dict[str, Any]:
    """CPU time (user + system, from wait4) of the imports a cold lookup needs, each
    alone in a fresh interpreter, paired and interleaved like the cold run."""
    py = sys.executable
    cmds = {
        "python -c pass": [py, "-c", "pass"],
        "import re": [py, "-c", "import re"],
        "import argparse": [py, "-c", "import argparse"],
        "import typing": [py, "-c", "import typing"],
        "import dataclasses": [py, "-c", "import dataclasses"],
        "import pathlib": [py, "-c", "import pathlib"],
        "import sqlite3": [py, "-c", "import sqlite3"],
        "import portbook._cli": [py, "-c", "import portbook._cli"],
        "portbook --version": [*_portbook_command(), "--version"],
        "portbook lookup 443": [*_portbook_command(), "lookup", "443"],
    }
    cpu: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(rounds):
        items = list(cmds.items())
        random.shuffle(items)
        for key, argv in items:
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, _, usage = os.wait4(proc.pid, 0)
            cpu[key].append((usage.ru_utime + usage.ru_stime) * 1e3)
    base = statistics.median(cpu["python -c pass"])
    return {
        key: {
            "cpu_ms_median": round(statistics.median(v), 1),
            "ratio": round(statistics.median(v) / base, 2),
        }
        for key, v in cpu.items()
    }


def bench_in_process(calls: int, batches: int) -> dict[str, Any]:
    book = Book()
    book.lookup(443)  # open the database and read /etc/services once
    book.service_name(443, "tcp")
    rng = random.Random(1)
    ports = [rng.randrange(0, 49152) for _ in range(calls * batches)]

    def per_call(fn: Any, chunk: list[int]) -> float:
        start = time.perf_counter()
        for port in chunk:
            fn(port)
        return (time.perf_counter() - start) / len(chunk) * 1e6

    def getserv(port: int) -> None:
        with contextlib.suppress(OSError):
            socket.getservbyport(port, "tcp")

    lookup_us, libc_us, name_us = [], [], []
    for b in range(batches):
        chunk = ports[b * calls : (b + 1) * calls]
        lookup_us.append(per_call(book.lookup, chunk))
        libc_us.append(per_call(getserv, chunk))
        name_us.append(per_call(lambda p: book.service_name(p, "tcp"), chunk))

    search_ms = []
    for text in SEARCHES:
        start = time.perf_counter()
        book.search(text)
        search_ms.append((time.perf_counter() - start) * 1e3)
    book.close()
    lookup_med, libc_med = statistics.median(lookup_us), statistics.median(libc_us)
    return {
        "lookup_calls": calls * batches,
        "lookup_us_per_call_median": round(lookup_med, 2),
        "getservbyport_us_per_call_median": round(libc_med, 2),
        "lookup_vs_getservbyport": round(lookup_med / libc_med, 2),
        "service_name_us_per_call_median": round(statistics.median(name_us), 3),
        "search_queries": len(SEARCHES),
        "search_ms_per_query_median": round(statistics.median(search_ms), 2),
        "search_ms_per_query_max": round(max(search_ms), 2),
    }


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "portbook": portbook.__version__,
        # The machine is shared: the load average says how busy it was.
        "loadavg_1min": round(os.getloadavg()[0], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark of the book (lookup, search, info).")
    parser.add_argument("--rounds", type=int, default=40, help="paired cold-start rounds")
    parser.add_argument("--calls", type=int, default=2000, help="lookups per batch")
    parser.add_argument("--batches", type=int, default=5, help="batches of lookups")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--breakdown",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="also measure the CPU time of each import a cold lookup needs",
    )
    args = parser.parse_args()

    compileall.compile_dir(Path(portbook.__file__).parent, quiet=1)
    results: dict[str, Any] = {
        "machine": machine(),
        "cold": bench_cold(args.rounds),
        "in_process": bench_in_process(args.calls, args.batches),
    }
    if args.breakdown:
        results["breakdown"] = bench_breakdown(args.breakdown)
    print(json.dumps(results, indent=2))
    cold, hot = results["cold"], results["in_process"]
    print(
        f"\ncold `portbook lookup 443`: {cold['lookup_median_ms']} ms vs `python -c pass` "
        f"{cold['bare_median_ms']} ms = {cold['ratio_of_medians']}x (target <= 2x; "
        f"`portbook --version` {cold['version_median_ms']} ms = {cold['cli_floor_ratio']}x); "
        f"peak RSS {cold['peak_rss_mib_max']} MiB (target < 30)\n"
        f"lookup {hot['lookup_us_per_call_median']} us/call "
        f"(getservbyport {hot['getservbyport_us_per_call_median']} us); "
        f"service_name {hot['service_name_us_per_call_median']} us/call; "
        f"search {hot['search_ms_per_query_median']} ms/query "
        f"(max {hot['search_ms_per_query_max']})"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
