"""Cold start of the everyday commands on a small machine, against an empty interpreter.

    python bench/bench_startup.py --rounds 40
    python bench/bench_startup.py --rounds 40 --against OTHER_VENV/bin/portbook

Times, as whole processes with their output going to ``/dev/null``, once per
round in a fresh random order:

- ``portbook`` (the default command, ``ls``),
- ``portbook who PORT`` (PORT: a TCP listener this script holds on loopback),
- ``portbook lookup 443``,
- ``python -c pass`` of the same interpreter and venv as the console script
  (read from its ``#!`` line: the pyenv interpreter outside a venv has a
  slower ``site``, so a bare ``python3`` from PATH is not the peer),
- ``ss -tulnp``, for reference.

Each ratio is taken inside one round (the commands ran moments apart, so they
saw the same load on a shared machine); the report gives medians, the median
of the per-round ratios and the load average at the start and the end.

The portbook timed must be installed (``pip install .`` into a venv), not
editable: an editable install finds its modules through a path hook and a
``.pth`` file, which a user's installed copy does not pay. The script refuses
an editable one unless ``--allow-editable`` is given.

``--against PATH`` adds a second installed ``portbook`` console script (for
example one of an older commit); its three commands and its own interpreter's
``python -c pass`` join the same rounds, and the report adds the ratio of
each command of the first against the second.

``--instructions`` also runs each command once under ``valgrind
--tool=callgrind`` and reports its user-space instruction count: a figure
that does not move with the machine's load (the kernel's work, such as
reading ``/proc``, is not in it). ``--breakdown`` counts the same way
where the instructions of a cold ``portbook`` go: the command's imports and
calls in its own order (``BREAKDOWN``), each prefix in a fresh interpreter,
each step the difference. The walk's and the names' steps read the machine
as it is at that moment: where other programs start and stop processes
meanwhile, those two move (even below zero), the others do not.

As root the script first moves into a network namespace of its own, so the
socket table holds its one listener and nothing else: the small machine of
the benchmark (the machine's processes are still all there, and ``portbook``
reads every one's descriptors, as it must). ``--host-netns`` keeps the
machine's own table.
"""

from __future__ import annotations

import argparse  # noqa: TID251  (a bench script, not the library)
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    # Run as `python bench/bench_startup.py`: make `bench.live_fixture` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.live_fixture import FixtureError, enter_private_netns

# (command key, limit): portbook's time over `python -c pass`, median of per-round ratios.
TARGETS = (("ls", 2.5), ("who", 2.5), ("lookup", 2.5))

_INSTALL_CHECK = """
import json, os, sys
import portbook
where = os.path.dirname(os.path.abspath(portbook.__file__))
editable = False
import importlib.metadata as md
try:
    dist = md.distribution("portbook")
    text = dist.read_text("direct_url.json")
    editable = bool(text and json.loads(text).get("dir_info", {}).get("editable"))
except md.PackageNotFoundError:
    editable = True
print(json.dumps({"where": where, "editable": editable, "version": portbook.__version__}))
"""


def interpreter_of(script: str) -> str:
    """The interpreter a console script runs under (its ``#!`` line)."""
    with open(script, "rb") as fh:
        first = fh.readline().decode()
    if not first.startswith("#!"):
        raise SystemExit(f"bench_startup: {script} has no #! line: not a console script")
    return first[2:].strip().split()[0]


def describe_install(python: str) -> dict[str, object]:
    done = subprocess.run(
        [python, "-c", _INSTALL_CHECK], capture_output=True, text=True, check=False, timeout=60
    )
    if done.returncode != 0:
        raise SystemExit(f"bench_startup: {python} cannot import portbook: {done.stderr.strip()}")
    info: dict[str, object] = json.loads(done.stdout)
    return info


def run_once(argv: list[str], stderr_path: str) -> tuple[float, float, int]:
    """Wall time, CPU time (user + system, waited children included) and exit status."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
    ]
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - started
    return seconds, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status)


def instructions(argv: list[str]) -> int | None:
    """User-space instructions of one run of ``argv`` (callgrind's Ir), or None."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    with tempfile.NamedTemporaryFile(prefix="bench-startup-cg-") as out:
        done = subprocess.run(
            [valgrind, "--tool=callgrind", f"--callgrind-out-file={out.name}", *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            timeout=600,
        )
    if done.returncode != 0:
        return None  # a failed run's count says nothing of the command's work
    for line in done.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1].strip())
    return None


# The work of a cold `portbook` (= ls) in steps: each prefix of this list runs
# in a fresh interpreter under callgrind, and a step costs the difference.
# Modules are imported in the order the command imports them, then its work
# is done by the same calls the command makes.
BREAKDOWN: tuple[tuple[str, str], ...] = (
    ("the interpreter (`python -c pass`)", "pass"),
    ("the facade and the CLI modules", "import portbook, portbook._cli, portbook._cli.live"),
    (
        "the quick form of the command line (no argparse)",
        "from portbook._cli import quick_args; a = quick_args(['ls'])",
    ),
    ("the handler pauses the collector", "import gc; gc.disable()"),
    (
        "port model, records, errors",
        "import portbook._record, portbook._ports, portbook._exceptions",
    ),
    (
        "the live table's modules",
        "import portbook._live.records, portbook._live.build, portbook._live.table, "
        "portbook._joined",
    ),
    ("the netlink backend", "import portbook._live.backends.netlink, portbook._live.backends"),
    (
        "owners, processes, this machine's ranges",
        "import portbook._live.owners, portbook._live.processes, portbook._machine",
    ),
    (
        "the book's modules",
        "import portbook._book.book, portbook._book.registry, portbook._book.etc_services, "
        "portbook._book.unofficial",
    ),
    ("`ipaddress`", "import ipaddress"),
    (
        "reading the table over netlink",
        "from portbook._live.table import socket_filter, _rows, socket_backend; "
        "f = socket_filter(listening=True); rows = _rows(f, socket_backend(), fallback=True)",
    ),
    (
        "the owner walk",
        "from portbook._live.owners import walk_during; "
        "_, scan = walk_during(lambda: None, work_units=lambda: 0)",
    ),
    (
        "names: /etc/services and the common list",
        "from portbook._book.book import default_book; b = default_book(); "
        "pairs = {(r.local_port, r.protocol) for r in rows}; "
        "ov = b._overlays().first_entries({p for p, _ in pairs})",
    ),
    ("names: IANA's registry (SQLite opened, one query)", "n0 = b.display_names(pairs)"),
    (
        "names: your names (the names store)",
        "from portbook._joined import _your_names; y = _your_names(); nobody = (None, None)\n"
        "def n(port, protocol):\n"
        "    f = n0.get((port, protocol)) or nobody\n"
        "    return f[0], f[1], y.get((port, protocol.value))",
    ),
    (
        "holders' details; containers, units, other namespaces looked for",
        "from portbook._live.table import _owning_pids, behind_wanted, _has_entries, "
        "_NAMESPACE_DIRS, _listening; "
        "from portbook._live.processes import process_details; "
        "details = process_details(_owning_pids([(None, rows)], scan)); "
        "w = behind_wanted(details, False)\n"
        "if w != (False, False):\n"
        "    raise SystemExit(f'containers or units would be looked behind here: {w}')\n"
        "if any(map(_has_entries, _NAMESPACE_DIRS)):\n"
        "    from portbook._live.spaces import elsewhere\n"
        "    elsewhere(_listening(f), named_dirs=_NAMESPACE_DIRS, skip=frozenset())",
    ),
    (
        "the records, the table (to a pipe)",
        "import io, sys; from portbook._machine import local_ranges; "
        "from portbook._live.build import build_sockets; "
        "from portbook._cli.live import _render; from portbook._cli._output import Output; "
        "socks = build_sockets(rows, scan=scan, processes=details, ranges=local_ranges(), "
        "names=n, viewer_uid=0); "
        "_render(socks, Output(io.StringIO(), sys.stderr), a, show_peer=False)",
    ),
)


def breakdown(python: str) -> list[str]:
    """Where the instructions of a cold `portbook` go, step by step (see BREAKDOWN)."""
    rows = ["| part | Ir (M) | x `pass` |", "| --- | ---: | ---: |"]
    code: list[str] = []
    previous = 0
    bare = None
    for label, statement in BREAKDOWN:
        code.append(statement)
        total = instructions([python, "-c", "\n".join(code)])
        if total is None:
            # A step that fails on this tree has no count (instructions() says
            # None rather than count its traceback): run it plainly for why.
            plain = subprocess.run(
                [python, "-c", "\n".join(code)], capture_output=True, text=True, check=False
            )
            why = (plain.stderr.strip().splitlines() or ["callgrind could not run it"])[-1]
            return [f"(the step {label!r} fails on this tree: {why})"]
        bare = bare or total
        rows.append(
            f"| {label} | {(total - previous) / 1e6:.1f} | {(total - previous) / bare:.2f} |"
        )
        previous = total
    if bare:
        rows.append(f"| **total** | **{previous / 1e6:.1f}** | **{previous / bare:.2f}** |")
    return rows


def machine_load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def processes_and_files() -> tuple[int, int]:
    procs = files = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                files += len(os.listdir(f"/proc/{name}/fd"))
            except OSError:
                continue
            procs += 1
    return procs, files


def listeners_in_table(ss: str | None) -> int | None:
    if ss is None:
        return None
    done = subprocess.run([ss, "-Htuln"], capture_output=True, text=True, check=False)
    return len(done.stdout.splitlines()) if done.returncode == 0 else None


def build_commands(
    scripts: list[str], port: int, ss: str | None
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """argv and label of every timed command; keys ``ls``, ``who``, ``lookup``, ``pass``
    for the first portbook, the same with ``@2`` for the one of ``--against``."""
    commands: dict[str, list[str]] = {}
    labels: dict[str, str] = {}
    for number, script in enumerate(scripts):
        tag = "" if number == 0 else "@2"
        python = interpreter_of(script)
        for key, argv, label in (
            ("ls", [script], "`portbook`"),
            ("who", [script, "who", str(port)], "`portbook who PORT`"),
            ("lookup", [script, "lookup", "443"], "`portbook lookup 443`"),
            ("pass", [python, "-c", "pass"], "`python -c pass`"),
        ):
            commands[key + tag] = argv
            labels[key + tag] = label + (" (against)" if tag else "")
    if ss is not None:
        commands["ss"] = [ss, "-tulnp"]
        labels["ss"] = "`ss -tulnp`"
    return commands, labels


def measure(
    commands: dict[str, list[str]], rounds: int, warmup: int, rng: random.Random
) -> dict[str, list[tuple[float, float]]]:
    samples: dict[str, list[tuple[float, float]]] = {key: [] for key in commands}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        err = str(Path(tmp) / "stderr")
        for number in range(warmup + rounds):
            order = list(commands)
            rng.shuffle(order)
            for key in order:
                seconds, cpu, status = run_once(commands[key], err)
                # `who` of a port with no socket would say so with status 1;
                # here the port is held, so every command must succeed.
                if status != 0:
                    message = Path(err).read_text().strip()
                    raise SystemExit(
                        f"bench_startup: {commands[key]} failed (status {status}): {message}"
                    )
                if number >= warmup:
                    samples[key].append((seconds, cpu))
    return samples


def paired(samples: dict[str, list[tuple[float, float]]], mine: str, peer: str) -> float:
    return statistics.median(a[0] / b[0] for a, b in zip(samples[mine], samples[peer], strict=True))


def report(
    samples: dict[str, list[tuple[float, float]]],
    labels: dict[str, str],
    counts: dict[str, int | None],
    facts: list[str],
    argv: list[str],
) -> str:
    out = ["```", "python bench/bench_startup.py " + " ".join(argv), "```", "", *facts, ""]
    out += [
        "Whole-process wall time: median, fastest and median CPU (user + system) over the "
        "interleaved rounds; ratio = median of the per-round ratios against `python -c pass` "
        "of the same interpreter (and, for `--against`, against the same command of the other "
        "portbook); Ir = user-space instructions of one run (callgrind), and their ratio.",
        "",
        "| command | median ms | min ms | CPU ms | x `python -c pass` | Ir (M) | Ir x pass "
        "| x against |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, rows in samples.items():
        tag = "@2" if key.endswith("@2") else ""
        base = key.removesuffix("@2")
        bare = "pass" + tag
        wall = [s[0] for s in rows]
        cpu = [s[1] for s in rows]
        ratio = f"{paired(samples, key, bare):.2f}x" if base not in ("pass", "ss") else ""
        if base == "ss":
            ratio = f"{paired(samples, key, 'pass'):.2f}x"
        against = ""
        if not tag and base in ("ls", "who", "lookup", "pass") and f"{key}@2" in samples:
            against = f"{paired(samples, key, key + '@2'):.2f}x"
        ir = counts.get(key)
        ir_bare = counts.get(bare)
        ir_text = "" if ir is None else f"{ir / 1e6:.1f}"
        ir_ratio = "" if ir is None or not ir_bare or base == "pass" else f"{ir / ir_bare:.2f}x"
        out.append(
            f"| {labels[key]} | {statistics.median(wall) * 1e3:.1f} | {min(wall) * 1e3:.1f} | "
            f"{statistics.median(cpu) * 1e3:.1f} | {ratio} | {ir_text} | {ir_ratio} | {against} |"
        )
    out += ["", "Targets (median of per-round ratios against `python -c pass`):", ""]
    for key, limit in TARGETS:
        got = paired(samples, key, "pass")
        verdict = "PASS" if got <= limit else "FAIL"
        out.append(f"- {labels[key]} <= {limit}x: {got:.2f}x, **{verdict}**")
    if "ls@2" in samples:
        out += ["", "Against the other portbook (median of per-round ratios; <= 1 is no slower):"]
        out += [""]
        for key in ("ls", "who", "lookup"):
            got = paired(samples, key, key + "@2")
            verdict = "PASS" if got <= 1.0 else "FAIL"
            out.append(f"- {labels[key]}: {got:.2f}x, **{verdict}**")
    return "\n".join(out) + "\n"


def parse_args(args_list: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=40, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--seed", type=int, default=1, help="seed of the run order")
    parser.add_argument(
        "--portbook", help="the installed portbook console script (default: this venv's)"
    )
    parser.add_argument("--against", help="a second installed portbook console script to pair")
    parser.add_argument("--allow-editable", action="store_true", help="time an editable install")
    parser.add_argument("--host-netns", action="store_true", help="use the machine's namespace")
    parser.add_argument(
        "--instructions", action="store_true", help="also count instructions with callgrind"
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also count, with callgrind, the instructions of each step of a cold `portbook`",
    )
    parser.add_argument("--output", type=Path, help="also write the markdown report here")
    parser.add_argument("--json", type=Path, help="write the raw samples here")
    args = parser.parse_args(args_list)
    if args.rounds < 1:
        parser.error("--rounds: at least 1")
    first = args.portbook or str(Path(sys.executable).parent / "portbook")
    args.scripts = [first] + ([args.against] if args.against else [])
    args.installs = []
    for script in args.scripts:
        if not os.access(script, os.X_OK):
            parser.error(f"not an executable console script: {script}")
        info = describe_install(interpreter_of(script))
        if info["editable"] and not args.allow_editable:
            parser.error(
                f"{script} runs an editable install ({info['where']}); time an installed copy "
                "(pip install . into a fresh venv), or say --allow-editable"
            )
        args.installs.append(info)
    return args


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    args = parse_args(args_list)
    scripts = args.scripts
    netns = os.geteuid() == 0 and not args.host_netns
    try:
        if netns:
            enter_private_netns()
    except FixtureError as exc:
        print(f"bench_startup: {exc}", file=sys.stderr)
        return 1
    ss = shutil.which("ss")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        commands, labels = build_commands(scripts, listener.getsockname()[1], ss)
        load_start = machine_load()
        procs, files = processes_and_files()
        listening = listeners_in_table(ss)
        samples = measure(commands, args.rounds, args.warmup, random.Random(args.seed))
        load_end = machine_load()
        counts: dict[str, int | None] = {}
        if args.instructions:
            counts = {key: instructions(argv) for key, argv in commands.items()}
    facts = [
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- CPU: {os.cpu_count()} cores, shared; load average {load_start} at the start, "
        f"{load_end} at the end",
        f"- Kernel: Linux {platform.release()}; Python {platform.python_version()}",
        f"- Machine: {procs} processes holding {files:,} open files; socket table: "
        + ("a network namespace of the benchmark's own" if netns else "the machine's own namespace")
        + ("" if listening is None else f", {listening} listening socket(s)"),
    ]
    for script, info in zip(scripts, args.installs, strict=True):
        kind = "editable" if info["editable"] else "installed"
        facts.append(
            f"- portbook {info['version']} ({kind}, {info['where']}): {script}, "
            f"python {interpreter_of(script)}"
        )
    text = report(samples, labels, counts, facts, args_list)
    if args.breakdown:
        steps = breakdown(interpreter_of(scripts[0]))
        text += (
            "\nWhere the instructions of a cold `portbook` go (callgrind, cumulative steps):\n\n"
        )
        text += "\n".join(steps) + "\n"
    sys.stdout.write(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    if args.json:
        raw: dict[str, object] = {
            key: {"seconds": [s[0] for s in rows], "cpu_seconds": [s[1] for s in rows]}
            for key, rows in samples.items()
        }
        raw["instructions"] = counts
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
