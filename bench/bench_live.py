"""The live-table benchmark: portbook against ss and psutil on 1,000 to 50,000 sockets.

    python bench/bench_live.py --sizes 1000,20000,50000 --rounds 15,15,7

For each size, ``live_fixture.LiveFixture`` opens that many loopback sockets
over 4 processes; then, in every round and in a fresh random order, each of
these runs once as a whole process with its output going to ``/dev/null``:

- ``portbook ls --all --json``, against ``ss -tanup`` (every TCP and UDP
  socket with its owners),
- ``portbook who PORT``, against ``ss -tanp 'sport = :PORT'`` (PORT is one of
  the fixture's TCP listeners),
- ``psutil.net_connections(kind="inet")`` in a fresh Python process that
  writes the result as JSON, against ``portbook ls --all --json``.

Each comparison is a ratio taken inside one round (the two runs were seconds
apart, so they saw the same load on a shared machine); the report gives the
median time of each command and the median of the per-round ratios, the peak
RSS of each command (``ru_maxrss`` from ``wait4``), how the time grows with the
number of sockets, and PASS/FAIL against the targets.

As root the benchmark runs in a network namespace of its own, so the socket
table holds the fixture's sockets and nothing else, and the machine's table and
ephemeral ports are left alone; ``--host-netns`` (and any non-root run) uses the
machine's own namespace instead. Owner lookup reads every process's open files
either way, as it must.

One of the fixture's listeners is held by no process (a descriptor in flight
in a Unix socket message), so finding owners has to read every process's open
files, as it has on a real machine where some socket belongs to an old process;
``--all-owned`` leaves it out, which shows the best case of an owner walk that
stops once every socket has an owner.

``--output FILE`` also writes the markdown report to FILE, ``--json FILE`` the
raw samples, ``--profile DIR`` a cProfile summary of ``portbook ls --all --json``
and ``portbook who PORT`` at every size. Only loopback traffic; the fixture is
closed before the script exits, whatever happens.
"""

from __future__ import annotations

import argparse  # noqa: TID251  (a bench script, not the library)
import contextlib
import importlib.util
import io
import itertools
import json
import os
import platform
import pstats
import random
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    # Run as `python bench/bench_live.py`: make `bench.live_fixture` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.live_fixture import FixtureError, LiveFixture, enter_private_netns

PSUTIL_SNIPPET = (
    "import json, sys, psutil; "
    "json.dump([[c.fd, c.family, c.type, c.laddr, c.raddr, c.status, c.pid] "
    "for c in psutil.net_connections(kind='inet')], sys.stdout)"
)

# (what, size, limit): portbook's time over the peer's, median of per-round ratios.
TARGETS = (
    ("ls", 20_000, 0.6),
    ("ls", 50_000, 0.6),
    ("who", 20_000, 0.5),
)
# Peak RSS of `portbook ls --all --json` at most this many times `ss -tuanp`'s.
RSS_SIZE, RSS_LIMIT = 50_000, 2.0
# How far the cost per extra socket may rise from one size step to the next
# and still count as linear growth: by this factor, or by this many
# microseconds (1 us over a 30,000-socket step is 30 ms, inside the noise of
# a shared machine, so a rise of a cheap command from 1 to 2 us is not growth).
LINEAR_SLACK = 1.5
LINEAR_FLOOR_US = 1.0


@dataclass(frozen=True, slots=True)
class Sample:
    seconds: float
    cpu_seconds: float  # user + system, the command's child processes included
    status: int


@dataclass(slots=True)
class Command:
    key: str
    label: str
    argv: list[str]
    samples: list[Sample] = field(default_factory=list)
    rss_kib: float | None = None

    def seconds(self) -> list[float]:
        return [s.seconds for s in self.samples]


@dataclass(slots=True)
class SizeResult:
    size: int
    build_seconds: float
    port: int
    commands: dict[str, Command]
    rows: dict[str, int | None]
    ratios: dict[str, list[float]]
    other_files: tuple[int, int]  # as the size began, and as its last round ended
    holders: dict[str, int | None] = field(default_factory=dict)  # (socket, pid) pairs


def run_once(argv: Sequence[str], stderr_path: str) -> Sample:
    """Run ``argv`` to completion, stdout to /dev/null; its wall and CPU time."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
    ]
    started = time.perf_counter()
    pid = os.posix_spawnp(argv[0], list(argv), os.environ, file_actions=actions)
    _, wait_status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - started
    # ru_utime/ru_stime of a waited child include the children it waited for.
    cpu = usage.ru_utime + usage.ru_stime
    return Sample(seconds, cpu, os.waitstatus_to_exitcode(wait_status))


def compile_portbook(portbook: list[str]) -> str:
    """Compile portbook's modules to bytecode, as ``pip install`` does; say what was done.

    A source checkout installed in editable mode has no ``__pycache__`` until
    an import writes it, and none is ever written under
    PYTHONDONTWRITEBYTECODE: every run would then compile every module again,
    a start-up cost no installed copy pays.
    """
    import compileall

    if portbook[:1] != [str(Path(sys.executable).parent / "portbook")] and portbook[:3] != [
        sys.executable,
        "-m",
        "portbook",
    ]:
        return "as given by --portbook"
    spec = importlib.util.find_spec("portbook")
    if spec is None or not spec.submodule_search_locations:
        return "not importable here"
    where = next(iter(spec.submodule_search_locations))
    ok = compileall.compile_dir(where, quiet=1)
    return "bytecode compiled ahead, as an installed copy has it" if ok else "bytecode not cached"


def peak_rss_kib(argv: Sequence[str], gnu_time: str | None, runs: int = 3) -> float | None:
    """Median peak RSS of ``argv`` over ``runs`` untimed runs, through GNU time.

    Not from this script's own ``wait4``: a child forked (or vforked) from a
    Python process starts out sharing or copying that process's pages, and
    Linux carries the high-water mark of that first address space over the
    ``exec``, so every direct child would report at least this script's RSS.
    GNU time is a small C program: its own child starts from a tiny address
    space, so the figure it reports is the command's own.
    """
    if gnu_time is None:
        return None
    figures = []
    with tempfile.NamedTemporaryFile(prefix="bench-live-rss-") as out:
        for _ in range(runs):
            done = subprocess.run(
                [gnu_time, "-f", "%M", "-o", out.name, *argv],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
                timeout=600,
            )
            if done.returncode != 0:
                return None
            figures.append(int(Path(out.name).read_text().split()[-1]))
    return statistics.median(figures)


def capture(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` and keep its output; a program that cannot start fails with status 127."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    except OSError as exc:
        return subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]}: {exc.strerror}\n")


def first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "(no message)"


def count_rows(key: str, argv: Sequence[str]) -> tuple[int | None, int | None]:
    """How many sockets one untimed run of ``argv`` reports, and how many holders in all
    (a socket held by three processes counts three): a check that every holder is found."""
    done = capture([*argv, "--json"] if key == "who" else argv)
    if done.returncode != 0:
        return None, None
    if key in ("ls", "who"):
        try:
            table = json.loads(done.stdout)
        except ValueError:
            return None, None
        return len(table), sum(len(s["processes"]) for s in table)
    if key == "psutil":
        try:
            return len(json.loads(done.stdout)), None
        except ValueError:
            return None, None
    lines = done.stdout.splitlines()[1:]  # ss: one heading line
    return len(lines), sum(line.count("pid=") for line in lines)


def default_portbook() -> list[str]:
    script = Path(sys.executable).parent / "portbook"
    return [str(script)] if script.exists() else [sys.executable, "-m", "portbook"]


def measure_size(
    *,
    size: int,
    rounds: int,
    warmup: int,
    portbook: list[str],
    ss: str,
    rng: random.Random,
    profile_dir: Path | None,
    skip: set[str],
    gnu_time: str | None,
    unowned: bool,
) -> SizeResult:
    _, files_before = open_files_on_machine()
    with LiveFixture(size, unowned=unowned) as fixture:
        port = fixture.tcp_listeners[0][1]
        commands = {
            "ls": Command("ls", "`portbook ls --all --json`", [*portbook, "ls", "--all", "--json"]),
            "ss_all": Command("ss_all", "`ss -tanup`", [ss, "-tanup"]),
            "who": Command("who", "`portbook who PORT`", [*portbook, "who", str(port)]),
            "ss_port": Command(
                "ss_port", "`ss -tanp 'sport = :PORT'`", [ss, "-tanp", f"sport = :{port}"]
            ),
            "psutil": Command(
                "psutil",
                "psutil `net_connections(kind='inet')`",
                [sys.executable, "-c", PSUTIL_SNIPPET],
            ),
        }
        for key in skip:
            commands.pop(key, None)
        counted = {key: count_rows(key, cmd.argv) for key, cmd in commands.items()}
        rows = {key: c[0] for key, c in counted.items()}
        holders = {key: c[1] for key, c in counted.items()}
        for cmd in commands.values():
            cmd.rss_kib = peak_rss_kib(cmd.argv, gnu_time)
        if profile_dir is not None:
            profile(portbook, size, port, profile_dir)
        with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
            errs = {key: str(Path(tmp) / f"{key}.err") for key in commands}
            for _ in range(warmup):
                for key, cmd in commands.items():
                    run_once(cmd.argv, errs[key])
            for number in range(rounds):
                order = list(commands)
                rng.shuffle(order)
                for key in order:
                    sample = run_once(commands[key].argv, errs[key])
                    if sample.status != 0:
                        message = first_line(Path(errs[key]).read_text())
                        raise SystemExit(
                            f"bench_live: {commands[key].label} failed "
                            f"(status {sample.status}): {message}"
                        )
                    commands[key].samples.append(sample)
                print(f"  {size}: round {number + 1}/{rounds}", file=sys.stderr, flush=True)
        _, files_after = open_files_on_machine(exclude=fixture.pids)
        ratios = {}
        for mine, peer in (("ls", "ss_all"), ("who", "ss_port"), ("ls", "psutil")):
            if mine in commands and peer in commands:
                ratios[f"{mine}/{peer}"] = [
                    a / b
                    for a, b in zip(commands[mine].seconds(), commands[peer].seconds(), strict=True)
                ]
        return SizeResult(
            size,
            fixture.build_seconds,
            port,
            commands,
            rows,
            ratios,
            (files_before, files_after),
            holders,
        )


def profile(portbook: list[str], size: int, port: int, out_dir: Path) -> None:
    """cProfile ``portbook ls --all --json`` and ``portbook who PORT`` at this size."""
    del portbook  # profiled through this interpreter, whatever --portbook says
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, args in (("ls", ["ls", "--all", "--json"]), ("who", ["who", str(port)])):
        stats_file = out_dir / f"profile-{name}-{size}.prof"
        argv = [sys.executable, "-m", "cProfile", "-o", str(stats_file), "-m", "portbook", *args]
        subprocess.run(argv, stdout=subprocess.DEVNULL, check=False, timeout=600)
        if not stats_file.exists():
            continue
        text = io.StringIO()
        stats = pstats.Stats(str(stats_file), stream=text)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(25)
        (out_dir / f"profile-{name}-{size}.txt").write_text(text.getvalue())


# ---------------------------------------------------------------------------
# Report


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def open_files_on_machine(exclude: Sequence[int] = ()) -> tuple[int, int]:
    """How many processes there are, and how many files they hold open."""
    procs = files = 0
    skip = {str(pid) for pid in exclude}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and entry.name not in skip:
            with contextlib.suppress(OSError):
                files += len(os.listdir(f"/proc/{entry.name}/fd"))
                procs += 1
    return procs, files


def machine_facts(ss: str, portbook: list[str], netns: bool, unowned: bool) -> list[str]:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ss_version = first_line(capture([ss, "--version"]).stdout)
    try:
        import psutil

        psutil_version = str(psutil.__version__)
    except ImportError:
        psutil_version = "not installed"
    pb_version = first_line(capture([*portbook, "--version"]).stdout)
    revision = capture(["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"])
    if revision.returncode == 0:
        pb_version += f" (commit {revision.stdout.strip()})"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    procs, files = open_files_on_machine()
    return [
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- CPU: {os.cpu_count()} cores ({cpu}), shared; load average at start {load}",
        f"- Besides the fixture: {procs} processes holding {files:,} open files at the start "
        "(finding owners reads them all, for portbook and ss alike)",
        f"- Kernel: Linux {platform.release()}",
        f"- Python: {platform.python_version()}; {pb_version}; psutil {psutil_version}",
        f"- ss: {ss_version}",
        "- Socket table: "
        + (
            "a network namespace of the benchmark's own (the fixture's sockets only)"
            if netns
            else "the machine's own namespace (other sockets on the machine are included)"
        ),
        "- Owners: "
        + (
            "one fixture listener is held by no process, so finding owners reads every "
            "process's open files (as on a machine where an old process holds a socket)"
            if unowned
            else "the fixture's processes, the newest on the machine, hold every socket "
            "(the best case for a walk that stops once every owner is found)"
        ),
    ]


def report(results: list[SizeResult], facts: list[str], argv: Sequence[str]) -> str:
    out = ["```", "python bench/bench_live.py " + shlex.join(argv), "```", "", *facts, ""]
    out += [
        "Whole-process wall time, median over the interleaved rounds (the rounds column); "
        "ratio = median "
        "of the per-round ratios (portbook / peer), and in brackets the ratio of the two "
        "fastest runs, the figure least touched by other load; CPU = median user + system "
        "time, child processes included; RSS = peak resident set size (median of 3 "
        "untimed runs).",
        "",
        "| sockets | rounds | command | median ms | min ms | CPU ms | peak RSS MiB | rows "
        "| ratio |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    peers = {"ls": ("ss_all", "psutil"), "who": ("ss_port",)}
    for result in results:
        for key, cmd in result.commands.items():
            times = cmd.seconds()
            cpu = statistics.median(s.cpu_seconds for s in cmd.samples)
            rss = "-" if cmd.rss_kib is None else f"{cmd.rss_kib / 1024:.1f}"
            ratio = ", ".join(
                f"{statistics.median(result.ratios[f'{key}/{peer}']):.2f}x "
                f"{'psutil' if peer == 'psutil' else 'ss'} "
                f"(min/min {min(times) / min(result.commands[peer].seconds()):.2f}x)"
                for peer in peers.get(key, ())
                if f"{key}/{peer}" in result.ratios
            )
            rows = result.rows.get(key)
            label = cmd.label.replace("PORT", str(result.port))
            out.append(
                f"| {result.size:,} | {len(times)} | {label} | {ms(statistics.median(times))} | "
                f"{ms(min(times))} | {ms(cpu)} | {rss} | {'-' if rows is None else f'{rows:,}'} "
                f"| {ratio} |"
            )
    for result in results:
        full = {k: result.rows.get(k) for k in ("ls", "ss_all", "psutil") if k in result.commands}
        if len(set(full.values())) > 1:
            counts = ", ".join(f"{k} {v}" for k, v in full.items())
            out += ["", f"**Row counts differ at {result.size:,} sockets**: {counts}."]
        port = {k: result.rows.get(k) for k in ("who", "ss_port") if k in result.commands}
        if len(set(port.values())) > 1:
            counts = ", ".join(f"{k} {v}" for k, v in port.items())
            out += ["", f"**Row counts differ for one port at {result.size:,}**: {counts}."]
        for mine, peer in (("ls", "ss_all"), ("who", "ss_port")):
            if mine in result.commands and peer in result.commands:
                a, b = result.holders.get(mine), result.holders.get(peer)
                same = "the same" if a == b else "**NOT the same**"
                out += [
                    "",
                    f"Holders at {result.size:,} sockets ({mine} / {peer}, every (socket, "
                    f"process) pair): {a} / {b}, {same}.",
                ]
    others = ", ".join(
        f"{r.other_files[0]:,} / {r.other_files[1]:,} at {r.size:,}" for r in results
    )
    out += ["", f"Open files besides the fixture's, as each size began / ended: {others}."]
    out += ["", *growth(results), "", *verdicts(results)]
    return "\n".join(out) + "\n"


def growth(results: list[SizeResult]) -> list[str]:
    """Time per socket at each size, and per extra socket between sizes: by wall time,
    and by CPU time, which another program's load on a shared machine disturbs less."""
    if len(results) < 2:
        return []
    ordered = sorted(results, key=lambda r: r.size)
    steps = list(itertools.pairwise(ordered))
    sizes = " | ".join(f"{r.size:,}" for r in ordered)
    marginal = " | ".join(f"{a.size:,} -> {b.size:,}" for a, b in steps)
    out = [
        "Growth: microseconds per socket at each size (whole-process time / sockets, fixed "
        "costs included), and per extra socket between two sizes (the marginal cost: equal "
        f"figures mean linear growth; 'linear' allows each step {LINEAR_SLACK}x the one "
        f"before, or {LINEAR_FLOOR_US:.0f} us more). First by wall time, then by CPU time "
        "(user + system, helper processes included).",
    ]
    for measure in ("wall", "cpu"):
        out += [
            "",
            f"| command ({measure}) | {sizes} | {marginal} | linear |",
            "|---|" + "---:|" * (len(ordered) + len(steps)) + "---|",
        ]
        for key, cmd in ordered[0].commands.items():
            medians = [
                statistics.median(
                    s.seconds if measure == "wall" else s.cpu_seconds
                    for s in r.commands[key].samples
                )
                for r in ordered
            ]
            out.append(f"| {cmd.label} | {_growth_cells(medians, ordered, steps)}")
    return out


def _growth_cells(
    medians: list[float],
    ordered: list[SizeResult],
    steps: list[tuple[SizeResult, SizeResult]],
) -> str:
    per_socket = [t / r.size * 1e6 for t, r in zip(medians, ordered, strict=True)]
    slopes = [
        (tb - ta) / (b.size - a.size) * 1e6
        for (ta, tb), (a, b) in zip(itertools.pairwise(medians), steps, strict=True)
    ]
    linear = all(
        later <= max(LINEAR_SLACK * earlier, earlier + LINEAR_FLOOR_US)
        for earlier, later in itertools.pairwise(slopes)
    )
    cells = " | ".join(f"{x:.1f}" for x in [*per_socket, *slopes])
    return f"{cells} | {'yes' if linear else 'NO'} |"


def verdicts(results: list[SizeResult]) -> list[str]:
    by_size = {r.size: r for r in results}
    out = ["Targets:", ""]
    names = {"ls": ("ss_all", "full table with owners"), "who": ("ss_port", "one-port query")}
    for key, size, limit in TARGETS:
        peer, what = names[key]
        result = by_size.get(size)
        ratios = result.ratios.get(f"{key}/{peer}") if result else None
        if not ratios:
            out.append(f"- {what} at {size:,} sockets <= {limit}x ss: not measured")
            continue
        got = statistics.median(ratios)
        verdict = "PASS" if got <= limit else "FAIL"
        out.append(f"- {what} at {size:,} sockets <= {limit}x ss: {got:.2f}x, **{verdict}**")
    sized = by_size.get(RSS_SIZE)
    if sized and "ls" in sized.commands and "ss_all" in sized.commands:
        mine_rss, peer_rss = sized.commands["ls"].rss_kib, sized.commands["ss_all"].rss_kib
        if mine_rss and peer_rss:
            got = mine_rss / peer_rss
            verdict = "PASS" if got <= RSS_LIMIT else "FAIL"
            out.append(
                f"- peak RSS at {RSS_SIZE:,} sockets <= {RSS_LIMIT}x `ss -tuanp`: "
                f"{mine_rss / 1024:.1f} MiB / {peer_rss / 1024:.1f} MiB = {got:.2f}x, **{verdict}**"
            )
    faster = [
        (r.size, statistics.median(r.ratios["ls/psutil"]))
        for r in results
        if r.ratios.get("ls/psutil")
    ]
    if faster:
        ok = all(ratio < 1 for _, ratio in faster)
        figures = ", ".join(f"{ratio:.2f}x at {size:,}" for size, ratio in faster)
        out.append(f"- always faster than psutil: {figures}, **{'PASS' if ok else 'FAIL'}**")
    else:
        out.append("- always faster than psutil: not measured")
    return out


# ---------------------------------------------------------------------------
# Command line


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def parse_args(args_list: list[str]) -> argparse.Namespace:
    """The options, checked; ``sizes`` and ``rounds`` as lists of numbers, one per size."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1000,20000,50000", help="socket counts")
    parser.add_argument(
        "--rounds", default="15,15,7", help="timed rounds: one number, or one per size"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds per size")
    parser.add_argument("--seed", type=int, default=1, help="seed of the run order")
    parser.add_argument("--portbook", help="the portbook command (default: this venv's)")
    parser.add_argument("--peers-only", action="store_true", help="time ss and psutil only")
    parser.add_argument("--host-netns", action="store_true", help="use the machine's namespace")
    parser.add_argument(
        "--all-owned", action="store_true", help="no unowned listener (the owner walk's best case)"
    )
    parser.add_argument("--output", type=Path, help="also write the markdown report here")
    parser.add_argument("--json", type=Path, help="write the raw samples here")
    parser.add_argument("--no-rss", dest="rss", action="store_false", help="skip the peak RSS runs")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="cProfile portbook into DIR")
    args = parser.parse_args(args_list)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s]
    except ValueError:
        parser.error(f"--sizes: not a list of numbers: {args.sizes!r}")
    try:
        rounds = [int(r) for r in args.rounds.split(",") if r]
    except ValueError:
        parser.error(f"--rounds: not a list of numbers: {args.rounds!r}")
    if len(rounds) == 1:
        rounds *= len(sizes)
    if len(rounds) != len(sizes) or min(rounds) < 1:
        parser.error("--rounds: one number of at least 1, or one per size")
    args.size_list, args.round_list = sizes, rounds
    return args


def unavailable(portbook: list[str], peers_only: bool) -> set[str]:
    """The commands to leave out: portbook's when it lacks them, psutil when absent."""
    skip: set[str] = set()
    if peers_only:
        skip = {"ls", "who"}
    else:
        for key, sub in (("ls", ["ls", "--all", "--json"]), ("who", ["who", "1"])):
            done = capture([*portbook, *sub])
            # `who` on an unused port may well say "nothing found" (status 1).
            if done.returncode not in (0, 1) or "invalid choice" in done.stderr:
                print(
                    f"bench_live: portbook {sub[0]} unavailable, skipped: "
                    f"{first_line(done.stderr)}",
                    file=sys.stderr,
                )
                skip.add(key)
    if importlib.util.find_spec("psutil") is None:
        print(
            "bench_live: psutil is not installed (pip install -e '.[bench]'), skipped",
            file=sys.stderr,
        )
        skip.add("psutil")
    return skip


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    args = parse_args(args_list)
    sizes, rounds = args.size_list, args.round_list
    ss = shutil.which("ss")
    if ss is None:
        print("bench_live: ss (iproute2) is not installed", file=sys.stderr)
        return 1
    portbook = shlex.split(args.portbook) if args.portbook else default_portbook()
    signal.signal(signal.SIGTERM, _on_sigterm)
    netns = os.geteuid() == 0 and not args.host_netns
    if netns:
        enter_private_netns()
    skip = unavailable(portbook, args.peers_only)
    rng = random.Random(args.seed)
    gnu_time = shutil.which("time") if args.rss else None
    bytecode = compile_portbook(portbook)
    facts = machine_facts(ss, portbook, netns, not args.all_owned)
    facts.insert(4, f"- portbook's modules: {bytecode}")
    results = []
    try:
        for size, count in zip(sizes, rounds, strict=True):
            print(f"bench_live: {size} sockets", file=sys.stderr, flush=True)
            results.append(
                measure_size(
                    size=size,
                    rounds=count,
                    warmup=args.warmup,
                    portbook=portbook,
                    ss=ss,
                    rng=rng,
                    profile_dir=args.profile,
                    skip=skip,
                    gnu_time=gnu_time,
                    unowned=not args.all_owned,
                )
            )
    except FixtureError as exc:
        print(f"bench_live: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    text = report(results, facts, args_list)
    sys.stdout.write(text)
    if args.output:
        args.output.write_text(text)
    if args.json:
        raw = {
            str(r.size): {
                key: {
                    "seconds": [s.seconds for s in cmd.samples],
                    "cpu_seconds": [s.cpu_seconds for s in cmd.samples],
                    "rss_kib": cmd.rss_kib,
                }
                for key, cmd in r.commands.items()
            }
            for r in results
        }
        args.json.write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
