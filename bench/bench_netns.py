"""Many network namespaces: `portbook ls --netns all` against `ss -tuanp -N NAME` run for each.

    python bench/bench_netns.py --counts 1,2,5,10 --sockets 1000 --rounds 9

Needs root (it makes named namespaces with ``ip netns add``) and a portbook
whose ``ls`` has ``--netns``; without it the script says so and stops (exit
status 3). For each count N it makes N namespaces ``pbbench-PID-I``, starts
``bench/live_fixture.py --sockets 1000`` inside each (``ip netns exec``),
and then, once per round in a fresh random order, times

- ``portbook ls --netns all --all --json``,
- ``ss -tuanp -N NAME`` for each of the N namespaces, one process each, the
  peer being the sum of the N runs of the round.

The ratio (target: at most 0.5x) is taken inside each round and its median
reported, with the time per namespace at each count (linear growth: equal
figures). Other named namespaces on the machine are listed in the report,
since ``--netns all`` may include them. Everything the script made is
removed before it exits.
"""

from __future__ import annotations

import argparse  # noqa: TID251  (a bench script, not the library)
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET = 0.5
FIXTURE = Path(__file__).resolve().parent / "live_fixture.py"


def run_once(argv: list[str]) -> float:
    actions = [
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
    ]
    started = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions)
    _, status, _ = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench_netns: {argv} failed")
    return time.perf_counter() - started


def has_netns_option(portbook: list[str]) -> bool:
    done = subprocess.run(
        [*portbook, "ls", "--netns", "all", "--no-owners", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0


class Namespaces:
    """N named namespaces, each with a fixture of ``sockets`` sockets; removed on exit."""

    def __init__(self, count: int, sockets: int) -> None:
        self.names = [f"pbbench-{os.getpid()}-{i}" for i in range(count)]
        self.sockets = sockets
        self.fixtures: list[subprocess.Popen[str]] = []

    def __enter__(self) -> Namespaces:
        try:
            for name in self.names:
                subprocess.run(["ip", "netns", "add", name], check=True)
                subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
                fixture = subprocess.Popen(
                    [
                        *("ip", "netns", "exec", name, sys.executable, str(FIXTURE)),
                        *("--sockets", str(self.sockets)),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                self.fixtures.append(fixture)
                assert fixture.stdout is not None
                if "sockets held by" not in fixture.stdout.readline():
                    raise SystemExit(f"bench_netns: the fixture in {name} did not start")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for fixture in self.fixtures:
            assert fixture.stdin is not None
            fixture.stdin.close()
            fixture.wait(timeout=120)
        for name in self.names:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def measure(count: int, sockets: int, rounds: int, portbook: list[str], ss: str) -> list[float]:
    """Per-round (portbook seconds, ss seconds summed) pairs, flattened as ratios."""
    with Namespaces(count, sockets) as spaces:
        mine = [*portbook, "ls", "--netns", "all", "--all", "--json"]
        peers = [[ss, "-tuanp", "-N", name] for name in spaces.names]
        samples: list[tuple[float, float]] = []
        rng = random.Random(count)
        for number in range(rounds + 2):
            jobs: list[tuple[str, list[str]]] = [("mine", mine)] + [("ss", p) for p in peers]
            rng.shuffle(jobs)
            took = {"mine": 0.0, "ss": 0.0}
            for key, argv in jobs:
                took[key] += run_once(argv)
            if number >= 2:
                samples.append((took["mine"], took["ss"]))
    return [s for pair in samples for s in pair]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--counts", default="1,2,5,10", help="numbers of namespaces")
    parser.add_argument("--sockets", type=int, default=1000, help="sockets per namespace")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--portbook", help="the portbook command (default: this venv's)")
    args = parser.parse_args()
    script = Path(sys.executable).parent / "portbook"
    portbook = args.portbook.split() if args.portbook else [str(script)]
    ss = shutil.which("ss")
    if os.geteuid() != 0 or ss is None or shutil.which("ip") is None:
        print("bench_netns: needs root, ss and ip (iproute2)", file=sys.stderr)
        return 1
    if not has_netns_option(portbook):
        print("bench_netns: this portbook's ls has no --netns yet: not measured", file=sys.stderr)
        return 3
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    others = listed.stdout
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"named namespaces before: {others.split() or 'none'}")
    print()
    print(
        "| namespaces | sockets | portbook ms | ss -N per namespace, summed ms | ratio "
        "| portbook ms per namespace |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    verdict = None
    for count in [int(c) for c in args.counts.split(",") if c]:
        flat = measure(count, args.sockets, args.rounds, portbook, ss)
        mine, peer = flat[0::2], flat[1::2]
        ratio = statistics.median(a / b for a, b in zip(mine, peer, strict=True))
        med = statistics.median(mine)
        print(
            f"| {count} | {count * args.sockets:,} | {med * 1e3:.1f} | "
            f"{statistics.median(peer) * 1e3:.1f} | {ratio:.2f}x | {med / count * 1e3:.1f} |",
            flush=True,
        )
        if count == 10:
            verdict = ratio
    print()
    if verdict is not None:
        passed = "PASS" if verdict <= TARGET else "FAIL"
        print(f"- 10 namespaces <= {TARGET}x ss -N per namespace: {verdict:.2f}x, **{passed}**")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
