"""Commands for Prometheus and the browser: ``serve`` (metrics and the dashboard) and ``metrics``.

Both import ``portbook._serve`` (and with it ``prometheus_client``) only inside
their handlers: no other command pays for it.
"""

from __future__ import annotations

from portbook._cli._output import Output, escape

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

_ROOT_NOTE = (
    "Without root, the programs holding other users' sockets cannot be seen: their "
    "program label stays empty. Run as root to see every owner."
)


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="serve Prometheus metrics and a live dashboard over HTTP",
        description=(
            "Serve /metrics for Prometheus and, at /, a page with the live table of "
            "listening sockets (JSON at /api/sockets and /api/names). Read-only. Bound to "
            "127.0.0.1 unless --listen says otherwise; anyone who can reach it sees every "
            "listener's program and command line. Ctrl-C or SIGTERM stops it. " + _ROOT_NOTE
        ),
    )
    serve.add_argument(
        "--listen",
        metavar="ADDR:PORT",
        default=None,
        help="address and port to listen on (default 127.0.0.1:8694; port 0: any free port)",
    )
    _store_option(serve)
    serve.set_defaults(handler=run_serve)

    metrics = subparsers.add_parser(
        "metrics",
        help="print the Prometheus metrics once, or write them for node_exporter",
        description=(
            "Print the metrics `portbook serve` serves at /metrics, in Prometheus's text "
            "format. --textfile writes them atomically (a temporary file, then a rename) for "
            "node_exporter's textfile collector. --rules prints the alert rules for "
            "Prometheus instead. " + _ROOT_NOTE
        ),
    )
    what = metrics.add_mutually_exclusive_group()
    what.add_argument(
        "--textfile", metavar="PATH", help="write to PATH (a .prom file in the collector's folder)"
    )
    what.add_argument(
        "--rules", action="store_true", help="print portbook's Prometheus alert rules (YAML)"
    )
    _store_option(metrics)
    metrics.set_defaults(handler=run_metrics)


def _store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="PATH",
        help="names database file (default: $PORTBOOK_STORE, else the user data directory)",
    )


def run_metrics(args: argparse.Namespace, out: Output) -> int:
    from portbook._serve.metrics import alert_rules, exposition, make_registry, write_textfile
    from portbook._serve.source import Source

    if args.rules:
        out.stream.write(alert_rules())
        return 0
    registry = make_registry(Source(args.store))
    if args.textfile is None:
        text = exposition(registry).decode()
        if out.tty:
            # Label values are other users' text (process names): the format escapes
            # quotes and newlines, but a terminal would obey other control characters.
            import re

            text = re.sub(r"[\x00-\x09\x0b-\x1f\x7f]", lambda m: f"\\x{ord(m[0]):02x}", text)
        out.stream.write(text)
        return 0
    if not args.textfile.endswith(".prom"):
        out.warn("node_exporter's textfile collector reads only files whose names end in .prom")
    try:
        write_textfile(args.textfile, registry)
    except OSError as exc:
        out.error(f"cannot write {args.textfile}: {exc.strerror or exc}")
        return 1
    return 0


def run_serve(args: argparse.Namespace, out: Output) -> int:
    import signal
    import threading

    from portbook._serve.server import (
        DEFAULT_LISTEN,
        DashboardServer,
        limit_malloc_arenas,
        parse_listen,
    )
    from portbook._serve.source import Source

    host, port = parse_listen(args.listen if args.listen is not None else DEFAULT_LISTEN)
    limit_malloc_arenas()  # this process is the server's alone

    def log(line: str) -> None:
        if out.err is not None:  # no stderr: the server goes on without its log
            out.err.write(escape(line) + "\n")
            out.err.flush()

    try:
        server = DashboardServer((host, port), source=Source(args.store), log=log)
    except OSError as exc:
        out.error(f"cannot listen on {args.listen or DEFAULT_LISTEN}: {exc.strerror or exc}")
        return 1
    if not server.loopback:
        out.warn(
            f"listening on {server.url} is not loopback only: anyone who can reach it sees "
            "every listener's program and command line"
        )
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    # SIGINT too: a parent may have started us with Ctrl-C ignored.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    thread = threading.Thread(target=server.serve_forever, name="portbook-serve", daemon=True)
    try:
        thread.start()
        out.line(f"serving {server.url} (Prometheus metrics at {server.url}metrics); Ctrl-C stops")
        out.stream.flush()
        while not stop.wait(1.0):
            if not thread.is_alive():
                out.error("the server stopped by itself")
                return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if thread.is_alive():
            server.shutdown()  # returns once serve_forever has finished its loop
        server.server_close()
    out.line("stopped")
    return 0
