"""Reading other network namespaces and naming containers: what each piece costs.

    sudo python bench/bench_netns_parts.py --namespaces 10 --rounds 15

Needs root (it makes namespaces with ``ip netns add``). Makes N namespaces,
each with a TCP listener and a bound UDP socket on its loopback, then in
every round, in a fresh random order, runs as whole processes with output to
``/dev/null``:

- portbook: a fresh interpreter that finds every namespace
  (``find_namespaces``) and reads every one's TCP and UDP table
  (``read_namespace_tables``: one worker thread, ``setns`` into each, netlink;
  TCP LISTEN and UDP unconnected, as ``portbook ls`` asks),
- the peer: ``ss -N NAME -tuln`` once per namespace (N processes).

It reports the median of each and of the per-round ratio, and, measured in
this process: finding the namespaces, reading the N tables, naming the
container of every process (``ContainerIndex.container_of``), and reading the
DNAT rules (``read_dnat_rules``: the ``nft``/``iptables-save`` processes).
The namespaces are deleted before the script exits, whatever happens.
"""

from __future__ import annotations

import argparse  # noqa: TID251  (a bench script, not the library)
import contextlib
import os
import random
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

LISTENER = (
    "import socket, time\n"
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
    "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 0))\n"
    "print('ready', flush=True); time.sleep(3600)\n"
)
PORTBOOK = (
    "from portbook._live.backends.base import TableQuery\n"
    "from portbook._live.netns import find_namespaces, read_namespace_tables\n"
    "queries = [TableQuery(frozenset({'tcp'}), state_mask=1 << 10),\n"
    "           TableQuery(frozenset({'udp'}), state_mask=1 << 7)]\n"
    "tables = read_namespace_tables(find_namespaces(), queries)\n"
    "print(sum(len(t.rows) for t in tables))\n"
)


@contextlib.contextmanager
def namespaces(count: int) -> Iterator[list[str]]:
    tag = secrets.token_hex(2)
    names = [f"portbook-bench-{tag}-{i}" for i in range(count)]
    children: list[subprocess.Popen[str]] = []
    try:
        for name in names:
            subprocess.run(["ip", "netns", "add", name], check=True)
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
            child = subprocess.Popen(
                ["ip", "netns", "exec", name, sys.executable, "-c", LISTENER],
                stdout=subprocess.PIPE,
                text=True,
            )
            children.append(child)
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        yield names
    finally:
        for child in children:
            child.kill()
            child.wait()
            if child.stdout is not None:
                child.stdout.close()
        for name in names:
            subprocess.run(["ip", "netns", "delete", name], check=False)


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def timed_many(argvs: list[list[str]]) -> float:
    start = time.perf_counter()
    for argv in argvs:
        subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def in_process(repeat: int) -> dict[str, float]:
    from portbook._live.backends.base import TableQuery
    from portbook._live.containers import ContainerIndex
    from portbook._live.nat import read_dnat_rules
    from portbook._live.netns import find_namespaces, read_namespace_tables
    from portbook._live.walk import all_pids

    def best(fn: object) -> float:
        samples = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()  # type: ignore[operator]
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    found = find_namespaces()
    # As the live table asks for listening sockets: TCP LISTEN, UDP unconnected.
    listening = [
        TableQuery(frozenset({"tcp"}), state_mask=1 << 10),
        TableQuery(frozenset({"udp"}), state_mask=1 << 7),
    ]

    def every_container() -> None:
        index = ContainerIndex()
        for pid in all_pids():
            index.container_of(pid)

    return {
        "find_namespaces": best(find_namespaces),
        "find_namespaces(containers=index)": best(
            lambda: find_namespaces(containers=ContainerIndex())
        ),
        f"read_namespace_tables, listening ({len(found)} namespaces)": best(
            lambda: read_namespace_tables(found, listening)
        ),
        f"read_namespace_tables, every state ({len(found)} namespaces)": best(
            lambda: read_namespace_tables(found, TableQuery())
        ),
        f"container_of every process ({len(all_pids())})": best(every_container),
        "read_dnat_rules": best(read_dnat_rules),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_netns_parts: needs root (ip netns add)", file=sys.stderr)
        return 2
    with namespaces(args.namespaces) as names:
        ours: list[float] = []
        theirs: list[float] = []
        ratios: list[float] = []
        for _ in range(args.rounds):
            runs = [("portbook", [sys.executable, "-c", PORTBOOK]), ("ss", None)]
            random.shuffle(runs)
            got: dict[str, float] = {}
            for label, argv in runs:
                if argv is None:
                    got[label] = timed_many([["ss", "-N", n, "-tuln"] for n in names])
                else:
                    got[label] = timed(argv)
            ours.append(got["portbook"])
            theirs.append(got["ss"])
            ratios.append(got["portbook"] / got["ss"])
        print(f"{args.namespaces} namespaces, {args.rounds} rounds (whole processes)")
        print(f"  portbook (find + read all): median {statistics.median(ours) * 1000:.1f} ms")
        print(
            f"  ss -N NAME -tuln x{len(names)}:    median {statistics.median(theirs) * 1000:.1f} ms"
        )
        print(f"  ratio portbook/ss:          median {statistics.median(ratios):.2f}")
        print("in this process (median of 20):")
        for label, seconds in in_process(20).items():
            print(f"  {label}: {seconds * 1000:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
