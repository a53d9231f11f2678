"""Make docs/dashboard.png: the dashboard over demo programs, in a network namespace of its own.

    sudo unshare --net python docs/dashboard_screenshot.py docs/dashboard.png

Inside a new network namespace (only ``lo``, brought up here) nothing of the
machine's own sockets shows: a few demo programs listen (each a copy of the
Python interpreter under a program's name), a names store gives some of them
names, `portbook serve` runs, and Debian's Chromium (through Playwright)
loads the page, sees one program start and one stop, opens the book's entry
for a port and takes the screenshot. Fixed ports are fine here: the namespace
is empty, nothing else can hold them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/lib/chromium/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
]
LISTEN = """
import socket, sys, time
kind, host, port = sys.argv[1].lstrip("-"), sys.argv[3], int(sys.argv[5])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                  socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
if kind == "tcp":
    s.listen(16)
time.sleep(3600)
"""
# (program name, protocol, address, port)
DEMO = [
    ("vite", "tcp", "127.0.0.1", 5173),
    ("api-server", "tcp", "0.0.0.0", 8080),
    ("postgres", "tcp", "127.0.0.1", 5432),
    ("redis-server", "tcp", "127.0.0.1", 6379),
    ("grafana", "tcp", "127.0.0.1", 3000),
    ("dnsmasq", "udp", "127.0.0.1", 53),
    ("sshd", "tcp", "::", 22),
]
NAMES = [("frontend", 5173), ("api", 8080), ("db", 5432), ("worker", 7311)]


def start(tmp: Path, base: Path, program: str, *, kind: str, host: str, port: int) -> Any:
    """``./PROGRAM -m demo --KIND --host HOST --port PORT``: the link's name is the process name."""
    if not (tmp / program).exists():
        (tmp / program).symlink_to(base)
    argv = [f"./{program}", "-m", "demo", f"--{kind}", "--host", host, "--port", str(port)]
    return subprocess.Popen(argv, cwd=tmp)


def main(out: str) -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    base = Path(getattr(sys, "_base_executable", sys.executable))
    tmp = Path(tempfile.mkdtemp(prefix="portbook-demo-"))
    (tmp / "demo.py").write_text(LISTEN)
    procs = []
    try:
        for program, kind, host, port in DEMO:
            procs.append(start(tmp, base, program, kind=kind, host=host, port=port))
        import prometheus_client

        import portbook

        with portbook.Store(tmp / "db") as s:
            for name, port in NAMES:
                portbook.assign(name, port=port, store=s, listeners=lambda p, q: (False, ()))
        time.sleep(0.5)
        (tmp / "portbook").symlink_to(base)
        where = {str(Path(m.__file__ or "").parent.parent) for m in (portbook, prometheus_client)}
        serve = subprocess.Popen(
            ["./portbook", "-m", "portbook", "serve", "--listen", "127.0.0.1:0", "--store", "db"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=tmp,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sorted(where))},
        )
        procs.append(serve)
        assert serve.stdout is not None
        url = re.search(r"(http://\S+/)", serve.stdout.readline())
        assert url is not None
        shoot(url.group(1) + "?refresh=0.5", out, tmp, base, procs)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
    return 0


def shoot(url: str, out: str, tmp: Path, base: Path, procs: list[Any]) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 760})
        page.goto(url)
        expect(page.locator("#sockets tbody tr")).to_have_count(len(DEMO) + 1)
        # One program stops and another starts while the page is open.
        procs[3].terminate()  # redis-server
        procs.append(start(tmp, base, "jupyter", kind="tcp", host="127.0.0.1", port=8888))
        expect(page.locator("#events li")).to_have_count(2)
        page.locator('#sockets tbody tr[data-port="5432"] td.port button').click()
        expect(page.locator("#details")).to_be_visible()
        page.wait_for_timeout(600)
        page.screenshot(path=out, full_page=True)
        browser.close()


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("run as root inside `unshare --net` (see the docstring)")
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/dashboard.png"))
