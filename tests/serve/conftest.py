"""Fixtures for serve/metrics: the real programs (portbook serve, Prometheus, node_exporter,
promtool, Chromium), each started on 127.0.0.1 port 0 and stopped after.

A missing program skips its tests with the reason, or fails them when ``CI`` is set.
Screenshots go to ``$PORTBOOK_TEST_ARTIFACTS`` (default: ``screenshots/`` under
pytest's base temporary directory, printed at the end of the run).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/lib/chromium/chromium"  # Debian's binary behind the /usr/bin/chromium wrapper
ARTIFACTS_ENV = "PORTBOOK_TEST_ARTIFACTS"


def require(program: str, package: str) -> str:
    """The path of ``program``; skip without it (fail under CI, where it must be installed)."""
    found = shutil.which(program) if "/" not in program else program
    if found is None or not os.access(found, os.X_OK):
        message = f"{program} is not installed (Debian package {package})"
        if os.environ.get("CI"):
            pytest.fail(message + ": .ci/prepare should have installed it")
        pytest.skip(message)
    return found


class Program:
    """A child process whose merged output is collected in a thread; waits for a line."""

    def __init__(self, argv: list[str], ready: str, *, timeout: float = 30.0, **popen: Any) -> None:
        self.argv = argv
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **popen,
        )
        self._found: re.Match[str] | None = None
        self._ready = re.compile(ready)
        self._event = threading.Event()
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()
        deadline = time.monotonic() + timeout
        while not self._event.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"{argv[0]} not ready in {timeout} s:\n{self.output}")
        self.match: re.Match[str] = self._match()

    def _match(self) -> re.Match[str]:
        # A method of its own: mypy would take _found for None still, set by another thread.
        assert self._found is not None
        return self._found

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if self._found is None and (m := self._ready.search(line)):
                self._found = m
                self._event.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._pump.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def serve_child(store: Path, *extra: str, **popen: Any) -> Program:
    """``portbook serve --listen 127.0.0.1:0`` as a real child process; ``.url`` is its URL."""
    return Program(
        [
            sys.executable,
            "-m",
            "portbook",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            str(store),
            *list(extra),
        ],
        r"serving (http://127\.0\.0\.1:(\d+)/)",
        **popen,
    )


def url_of(program: Program) -> str:
    return program.match.group(1)


def get(
    url: str, timeout: float = 10.0, host: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """GET ``url``: (status, headers, body), whatever the status."""
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def get_json(url: str, timeout: float = 10.0) -> Any:
    status, _, body = get(url, timeout)
    assert status == 200, (url, status, body[:200])
    return json.loads(body)


# -- Prometheus -------------------------------------------------------------------


class Prometheus:
    """A real Prometheus on 127.0.0.1:0 scraping one target every second, with portbook's rules."""

    def __init__(self, target: str, rules: Path, workdir: Path) -> None:
        binary = require("prometheus", "prometheus")
        config = workdir / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
            f"rule_files: [{json.dumps(str(rules))}]\n"
            "scrape_configs:\n"
            "  - job_name: portbook\n"
            f"    static_configs: [{{targets: [{json.dumps(target)}]}}]\n"
        )
        self.program = Program(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                "--web.listen-address=127.0.0.1:0",
            ],
            r'msg="Listening on" address=127\.0\.0\.1:(\d+)',
        )
        self.base = f"http://127.0.0.1:{self.program.match.group(1)}"

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.base}/api/v1/query?query={urllib.parse.quote(promql)}"
        data = get_json(url)
        assert data["status"] == "success", data
        result: list[dict[str, Any]] = data["data"]["result"]
        return result

    def wait_for(self, promql: str, timeout: float = 45.0) -> list[dict[str, Any]]:
        """The first non-empty result of ``promql``; Prometheus 2.42 takes ~6 s to scrape first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = self.query(promql)
            except (AssertionError, OSError):
                result = []  # 503 until the TSDB is ready
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.25)


@pytest.fixture(scope="session")
def session_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The names store of the session's `portbook serve` (tests add names to it)."""
    return tmp_path_factory.mktemp("serve-store") / "names.sqlite3"


@pytest.fixture(scope="session")
def session_serve(session_store: Path) -> Iterator[Program]:
    """One `portbook serve` child for the session (the dashboard and Prometheus use it)."""
    program = serve_child(session_store)
    yield program
    program.stop()


@pytest.fixture(scope="session")
def prometheus(
    session_serve: Program, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    """One real Prometheus per session: its first scrape takes seconds, so tests share it."""
    from portbook._serve.metrics import alert_rules

    workdir = tmp_path_factory.mktemp("prometheus")
    rules = workdir / "portbook-alerts.yml"
    rules.write_text(alert_rules())
    target = url_of(session_serve).removeprefix("http://").rstrip("/")
    server = Prometheus(target, rules, workdir)
    yield server
    server.program.stop()


# -- artifacts and the browser ------------------------------------------------------


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $PORTBOOK_TEST_ARTIFACTS, else screenshots/ in pytest's temp dir."""
    chosen = os.environ.get(ARTIFACTS_ENV)
    path = Path(chosen) if chosen else tmp_path_factory.getbasetemp() / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    _used_artifacts.append(path)
    return path


BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # No DNS at all (Chromium looks up Google's hosts despite the flags above);
    # "*" matches IP literals too, hence the exclusions.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (no browser download)."""
    require(CHROMIUM, "chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("playwright is not installed (pip install -e '.[test]')")
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS
        )
        yield chromium
        chromium.close()


_used_artifacts: list[Path] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    # Under pytest-xdist the workers' fixtures ran elsewhere: only the variable is known here.
    chosen = [Path(os.environ[ARTIFACTS_ENV])] if os.environ.get(ARTIFACTS_ENV) else []
    for path in sorted({*chosen, *_used_artifacts}):
        terminalreporter.write_line(f"portbook: dashboard screenshots in {path}")
