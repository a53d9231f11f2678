"""Real programs: Prometheus scrapes `portbook serve`, node_exporter reads `metrics --textfile`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import portbook
from portbook import Store
from tests.conftest import run_portbook
from tests.serve.conftest import Program, Prometheus, get, get_json, require

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]


def comm() -> str:
    return Path("/proc/self/comm").read_text().strip()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock
    sock.close()


def test_prometheus_scrapes_serve_and_knows_the_listener_the_test_opened(
    prometheus: Prometheus, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    found = prometheus.wait_for(f'portbook_listener_info{{port="{port}"}}')
    assert len(found) == 1, prometheus.program.output[-2000:]
    labels = found[0]["metric"]
    assert found[0]["value"][1] == "1"
    assert {k: labels[k] for k in ("job", "protocol", "family", "address", "exposure")} == {
        "job": "portbook",
        "protocol": "tcp",
        "family": "4",
        "address": "127.0.0.1",
        "exposure": "loopback",
    }
    assert labels["program"] == comm()
    up = prometheus.query('up{job="portbook"}')
    assert [r["value"][1] for r in up] == ["1"]


def test_prometheus_sees_a_closed_listener_go(prometheus: Prometheus) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    port = sock.getsockname()[1]
    query = f'portbook_listener_info{{port="{port}"}}'
    assert prometheus.wait_for(query)
    sock.close()
    # An instant query looks back 5 minutes; a series that was not in the last
    # scrape is marked stale at once, so it drops out of the result.
    deadline = time.monotonic() + 30
    while prometheus.query(query) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert prometheus.query(query) == []


def test_prometheus_gets_your_names_and_loads_the_alert_rules(
    prometheus: Prometheus, session_store: Path, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    with Store(session_store) as store:
        portbook.assign("promapi", port=port, store=store, listeners=lambda p, proto: (False, ()))
    found = prometheus.wait_for('portbook_name_listening{name="promapi"} == 1')
    assert [r["metric"]["port"] for r in found] == [str(port)]
    assert prometheus.wait_for(f'portbook_listener_info{{port="{port}",name="promapi"}}')
    groups = get_json(prometheus.base + "/api/v1/rules")["data"]["groups"]
    rules = {r["name"]: r["health"] for g in groups for r in g["rules"]}
    assert rules == {
        "PortbookNewListenerOnAllInterfaces": "ok",
        "PortbookEphemeralPortsNearExhaustion": "ok",
        "PortbookNamedServiceNotListening": "ok",
    }


def test_prometheus_scrape_has_no_errors(prometheus: Prometheus) -> None:
    assert prometheus.wait_for("portbook_scrape_duration_seconds")
    errors = prometheus.query("sum(portbook_scrape_errors_total)")
    assert [r["value"][1] for r in errors] == ["0"]


# -- node_exporter's textfile collector ---------------------------------------------------


@pytest.fixture
def node_exporter(tmp_path: Path) -> Iterator[tuple[Program, Path]]:
    binary = require("prometheus-node-exporter", "prometheus-node-exporter")
    folder = tmp_path / "textfile"
    folder.mkdir()
    program = Program(
        [
            binary,
            "--collector.disable-defaults",
            "--collector.textfile",
            f"--collector.textfile.directory={folder}",
            "--web.disable-exporter-metrics",
            "--web.listen-address=127.0.0.1:0",
        ],
        r'msg="Listening on" address=127\.0\.0\.1:(\d+)',
    )
    yield program, folder
    program.stop()


def _scrape_node(program: Program) -> str:
    status, _, body = get(f"http://127.0.0.1:{program.match.group(1)}/metrics")
    assert status == 200
    return body.decode()


def _value(text: str, name: str) -> str | None:
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return line.rsplit(" ", 1)[1]
    return None


def test_node_exporter_serves_what_metrics_textfile_wrote(
    node_exporter: tuple[Program, Path], listener: socket.socket, tmp_path: Path
) -> None:
    program, folder = node_exporter
    port = listener.getsockname()[1]
    target = folder / "portbook.prom"
    done = run_portbook(
        "metrics", "--textfile", str(target), "--store", str(tmp_path / "names.sqlite3")
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert sorted(p.name for p in folder.iterdir()) == ["portbook.prom"]  # no temporary left
    text = _scrape_node(program)
    mine = [
        line
        for line in text.splitlines()
        if line.startswith("portbook_listener_info{") and f'port="{port}"' in line
    ]
    assert len(mine) == 1 and 'address="127.0.0.1"' in mine[0] and mine[0].endswith(" 1")
    assert _value(text, "node_textfile_scrape_error") == "0"
    assert f'node_textfile_mtime_seconds{{file="{target}"}}' in text
    promtool = require("promtool", "prometheus")
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert (lint.returncode, lint.stderr) == (0, "")


def test_rewriting_the_textfile_never_shows_node_exporter_half_a_file(
    node_exporter: tuple[Program, Path],
) -> None:
    """Rename into place: scrapes during 15 rewrites always find a whole, valid file."""
    from portbook._serve.metrics import make_registry, write_textfile

    program, folder = node_exporter
    target = folder / "portbook.prom"
    registry = make_registry()
    write_textfile(target, registry)
    stop = threading.Event()
    errors: list[str] = []

    def scrape_all_the_time() -> None:
        while not stop.is_set():
            text = _scrape_node(program)
            if (
                _value(text, "node_textfile_scrape_error") != "0"
                or "portbook_build_info" not in text
            ):
                errors.append(text[-500:])

    scraper = threading.Thread(target=scrape_all_the_time)
    scraper.start()
    try:
        for _ in range(15):
            write_textfile(target, registry)
    finally:
        stop.set()
        scraper.join(30)
    assert errors == []
    assert sorted(p.name for p in folder.iterdir()) == ["portbook.prom"]


def test_metrics_textfile_errors_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "portbook.prom"
    done = run_portbook("metrics", "--textfile", str(missing))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("portbook: error: cannot write")
    done = run_portbook("metrics", "--textfile", str(tmp_path / "portbook.txt"))
    assert done.returncode == 0 and "only files whose names end in .prom" in done.stderr


def test_metrics_prints_the_exposition(listener: socket.socket) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "portbook", "metrics"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ},
    )
    assert done.returncode == 0 and done.stderr == ""
    assert f'port="{listener.getsockname()[1]}"' in done.stdout
