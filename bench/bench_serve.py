"""The exporter's benchmark: a Prometheus scrape of `portbook serve` against `ss -tulnp`.

    python bench/bench_serve.py --sizes 1000,20000 --rounds 20

For each size, ``live_fixture.LiveFixture`` (the live table's fixture) opens that
many loopback sockets over 4 processes, and one `portbook serve` starts on
127.0.0.1 port 0. Then, in every round and in a fresh random order:

- one scrape of ``/metrics`` over a kept-alive connection, as Prometheus
  scrapes (the time from sending the request to the last byte of the answer);
- one ``GET /api/sockets`` over the same connection (what the dashboard polls);
- ``ss -tulnp`` run once as a whole process (every listening TCP and UDP
  socket with its processes: what ``portbook_listener_info`` reports), output
  to ``/dev/null``.

A scrape reads more than ``ss -tulnp`` does: the listeners with their owners,
every socket (counted by state) and the ephemeral ports in use, and the names
store. The ratio is taken inside each round and the median reported. The
server's memory is its resident set (``VmRSS``) after the warm-up and after the
last round, and its peak (``VmHWM``); ``ss``'s peak RSS comes from GNU time.

Run it as root on an installed (not editable) portbook: it then moves into a
network namespace of its own, so the table holds the fixture's sockets only.
``--portbook CMD`` names the portbook to run (default: the one beside this
Python). Only loopback traffic; the fixture and server are stopped whatever happens.
"""

from __future__ import annotations

import argparse  # noqa: TID251  (a bench script, not the library)
import http.client
import os
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    # Run as `python bench/bench_serve.py`: make `bench.live_fixture` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_live import (
    default_portbook,
    machine_facts,
    peak_rss_kib,
    run_once,
)
from bench.live_fixture import FixtureError, LiveFixture, enter_private_netns


@dataclass(slots=True)
class SizeResult:
    size: int
    scrape: list[float] = field(default_factory=list)
    api: list[float] = field(default_factory=list)
    ss: list[float] = field(default_factory=list)
    metrics_bytes: int = 0
    listener_series: int = 0
    rss_start_kib: int = 0
    rss_end_kib: int = 0
    hwm_kib: int = 0
    ss_rss_kib: float | None = None

    def ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.scrape, self.ss, strict=True)]


def _memory(pid: int) -> tuple[int, int]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def _timed_get(conn: http.client.HTTPConnection, path: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    seconds = time.perf_counter() - started
    if response.status != 200:
        raise SystemExit(f"bench_serve: GET {path} answered {response.status}")
    return seconds, body


def start_server(portbook: list[str], store: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [*portbook, "serve", "--listen", "127.0.0.1:0", "--store", str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if match is None:
        proc.kill()
        raise SystemExit(f"bench_serve: portbook serve did not start: {line!r}")
    return proc, int(match.group(1))


def measure_size(
    size: int,
    *,
    rounds: int,
    portbook: list[str],
    ss: str,
    rng: random.Random,
    gnu_time: str | None,
) -> SizeResult:
    result = SizeResult(size)
    with LiveFixture(size) as _, tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        proc, port = start_server(portbook, Path(tmp) / "names.sqlite3")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            for _ in range(3):  # warm-up: imports, the book, first readings
                _, body = _timed_get(conn, "/metrics")
                _timed_get(conn, "/api/sockets")
                run_once([ss, "-tulnp"], os.devnull)
            result.metrics_bytes = len(body)
            result.listener_series = body.count(b"\nportbook_listener_info{")
            result.rss_start_kib, _ = _memory(proc.pid)
            for number in range(rounds):
                steps = ["scrape", "api", "ss"]
                rng.shuffle(steps)
                for step in steps:
                    if step == "scrape":
                        result.scrape.append(_timed_get(conn, "/metrics")[0])
                    elif step == "api":
                        # The answer is kept one second: wait it out for a fresh reading.
                        time.sleep(1.05)
                        result.api.append(_timed_get(conn, "/api/sockets")[0])
                    else:
                        result.ss.append(run_once([ss, "-tulnp"], os.devnull).seconds)
                print(f"  {size}: round {number + 1}/{rounds}", file=sys.stderr, flush=True)
            result.rss_end_kib, result.hwm_kib = _memory(proc.pid)
            result.ss_rss_kib = peak_rss_kib([ss, "-tulnp"], gnu_time)
        finally:
            conn.close()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return result


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def mib(kib: float | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f}"


def report(results: list[SizeResult], facts: list[str], argv: list[str]) -> str:
    out = ["```", "python bench/bench_serve.py " + shlex.join(argv), "```", "", *facts, ""]
    out += [
        "Median over the interleaved rounds (min in brackets); ratio = median of the per-round "
        "ratios scrape / `ss -tulnp`. Memory: the server's resident set after the warm-up and "
        "after the last round, and its peak (VmHWM); `ss -tulnp`'s peak RSS (GNU time, median "
        "of 3 runs).",
        "",
        "| sockets | rounds | scrape `/metrics` ms | `GET /api/sockets` ms | `ss -tulnp` ms "
        "| scrape / ss | server RSS MiB (start -> end, peak) | `ss` peak RSS MiB "
        "| listener series | `/metrics` bytes |",
        "|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in results:
        out.append(
            f"| {r.size:,} | {len(r.scrape)} | {ms(statistics.median(r.scrape))} "
            f"({ms(min(r.scrape))}) | {ms(statistics.median(r.api))} ({ms(min(r.api))}) | "
            f"{ms(statistics.median(r.ss))} ({ms(min(r.ss))}) | "
            f"{statistics.median(r.ratios()):.2f}x | {mib(r.rss_start_kib)} -> "
            f"{mib(r.rss_end_kib)}, {mib(r.hwm_kib)} | {mib(r.ss_rss_kib)} | "
            f"{r.listener_series} | {r.metrics_bytes:,} |"
        )
    out.append("")
    return "\n".join(out)


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1000,20000", help="comma-separated socket counts")
    parser.add_argument("--rounds", type=int, default=20, help="rounds per size")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random order")
    parser.add_argument("--portbook", help="command that runs portbook (default: beside python)")
    parser.add_argument("--host-netns", action="store_true", help="stay in the machine's netns")
    parser.add_argument("--output", type=Path, help="also write the markdown report here")
    args = parser.parse_args(args_list)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s]
    except ValueError:
        parser.error(f"--sizes: not a list of numbers: {args.sizes!r}")
    if args.rounds < 1:
        parser.error("--rounds: at least 1")
    ss = shutil.which("ss")
    if ss is None:
        print("bench_serve: ss (iproute2) is not installed", file=sys.stderr)
        return 1
    portbook = shlex.split(args.portbook) if args.portbook else default_portbook()
    signal.signal(signal.SIGTERM, _on_sigterm)
    netns = os.geteuid() == 0 and not args.host_netns
    if netns:
        enter_private_netns()
    facts = machine_facts(ss, portbook, netns, unowned=False)
    facts = [f for f in facts if not f.startswith("- Owners:")]
    facts.append(
        "- Owners: the fixture's processes hold every socket; a scrape reads every "
        "process's open files anyway (portbook_listener_info names each listener's programs)"
    )
    rng = random.Random(args.seed)
    gnu_time = shutil.which("time")
    results = []
    try:
        for size in sizes:
            print(f"bench_serve: {size} sockets", file=sys.stderr, flush=True)
            results.append(
                measure_size(
                    size, rounds=args.rounds, portbook=portbook, ss=ss, rng=rng, gnu_time=gnu_time
                )
            )
    except FixtureError as exc:
        print(f"bench_serve: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    text = report(results, facts, args_list)
    sys.stdout.write(text)
    if args.output:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
