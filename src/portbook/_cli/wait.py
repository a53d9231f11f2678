"""``portbook wait``: until ports accept connections (or are free), then run a command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from portbook._cli._args import seconds
from portbook._cli._output import Output

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from portbook import WaitTarget


class _CommandAfterDashes(argparse.ArgumentParser):
    """Takes everything after the first ``--`` as the command to run, untouched.

    argparse would otherwise mix the command's words into the positional
    targets (``wait 8080 -- sh -c 'exit 3'``).
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        words = list(sys.argv[1:] if args is None else args)
        command: list[str] = []
        if "--" in words:
            cut = words.index("--")
            words, command = words[:cut], words[cut + 1 :]
        ns, extras = super().parse_known_args(words, namespace)
        ns.command = command
        return ns, extras


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "wait",
        add_help=False,
        usage="portbook wait [options] [HOST:]PORT... [-- CMD ...]",
        help="wait until ports accept connections (or are free), then run a command",
        description=(
            "Wait until every [HOST:]PORT accepts connections, or with --closed until it is "
            "free to bind on this machine, then run CMD if given. Ports of this machine are "
            "watched in the kernel's socket table; other hosts are probed by connecting. "
            "Accepts wait-for-it's options (-h HOST -p PORT, -t, -s, -q, -- CMD)."
        ),
        epilog="Exit status: 0 when satisfied (or CMD's status), 1 on timeout, 2 on bad input.",
    )
    # Grafted on so that only this command splits at "--" (see the class).
    p.__class__ = type("WaitParser", (_CommandAfterDashes, type(p)), {})
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("targets", nargs="*", metavar="[HOST:]PORT", help="what to wait for")
    p.add_argument("-h", "--host", help="host for targets that name none (wait-for-it's -h)")
    p.add_argument(
        "-p", "--port", action="append", default=[], help="a port to wait for (wait-for-it's -p)"
    )
    p.add_argument(
        "-t",
        "--timeout",
        type=seconds(0, 10 * 366 * 86400),
        default=15.0,
        metavar="SECONDS",
        help="give up after this long (default 15; 0 waits forever)",
    )
    p.add_argument(
        "--closed",
        action="store_true",
        help="wait until free to bind on this machine (no listener, connection or TIME-WAIT)",
    )
    p.add_argument(
        "--reuseaddr",
        action="store_true",
        help="with --closed: TIME-WAIT does not count (for servers that set SO_REUSEADDR)",
    )
    p.add_argument(
        "--connect",
        action="store_true",
        help="probe this machine's ports by connecting too (ports published by NAT rules)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object for programs: each target, whether and when it was ready",
    )
    p.add_argument(
        "-s", "--strict", action="store_true", help="run CMD only if every target was satisfied"
    )
    p.set_defaults(handler=run_wait, command=[])


def run_wait(args: argparse.Namespace, out: Output) -> int:
    from portbook import (
        UsageError,
        WaitTimeoutError,
        parse_wait_target,
        wait_for_free,
        wait_for_port,
    )

    words = list(args.targets) + list(args.port)
    if not words:
        raise UsageError("give at least one [HOST:]PORT to wait for")
    if args.reuseaddr and not args.closed:
        raise UsageError("--reuseaddr only applies with --closed")
    targets = [parse_wait_target(w, host=args.host) for w in words]
    what = "free" if args.closed else "open"
    seen: dict[int, float] = {}  # id of a target -> seconds until it was ready

    def ready(target: WaitTarget, seconds: float) -> None:
        seen[id(target)] = seconds
        if not args.quiet and not args.json:
            out.info(f"{target} is {what} after {seconds:.3f}s")

    timeout = None if args.timeout == 0 else args.timeout
    waiter = wait_for_free if args.closed else wait_for_port
    kwargs: dict[str, Any] = {"timeout": timeout, "connect": args.connect, "on_ready": ready}
    if args.closed:
        kwargs["reuseaddr"] = args.reuseaddr
    satisfied = True
    try:
        waiter(*targets, **kwargs)
    except WaitTimeoutError as exc:
        satisfied = False
        out.error(str(exc))
    if args.json:
        out.json(_report(targets, seen, what, satisfied, timeout))
    if not args.command:
        return 0 if satisfied else 1
    if not satisfied and args.strict:
        out.error("strict mode: not running the command")
        return 1
    return _run_command(args.command, out)


def _report(
    targets: list[WaitTarget],
    seen: dict[int, float],
    what: str,
    satisfied: bool,
    timeout: float | None,
) -> dict[str, Any]:
    """What ``wait --json`` prints: the condition, and for each target whether it was met."""
    return {
        "condition": what,
        "satisfied": satisfied,
        "timeout": timeout,
        "targets": [
            {
                "target": t.text,
                "host": t.host,
                "port": t.port,
                "protocol": t.protocol.value,
                "ready": id(t) in seen,
                "seconds": round(seen[id(t)], 6) if id(t) in seen else None,
            }
            for t in targets
        ],
    }


def _run_command(command: list[str], out: Output) -> int:
    import os

    out.stream.flush()
    if out.err is not None:
        out.err.flush()
    try:
        if out.stream is sys.stdout and out.err is sys.stderr:
            # As the real command, become CMD (as wait-for-it does with exec):
            # in a container entrypoint, signals such as docker stop's SIGTERM
            # then reach CMD itself, and CMD's exit status is the command's.
            os.execvp(command[0], command)
        import subprocess

        done = subprocess.run(command, check=False)
    except FileNotFoundError:
        out.error(f"command not found: {command[0]}")
        return 127
    except OSError as exc:
        out.error(f"cannot run {command[0]}: {exc.strerror}")
        return 126
    # A command killed by a signal exits 128+N, as a shell reports it.
    return done.returncode if done.returncode >= 0 else 128 - done.returncode
