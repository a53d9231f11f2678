"""The collector: what each metric says about real sockets, names and leases; naming; promtool."""

from __future__ import annotations

import ipaddress
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import portbook
from portbook import DestinationUsage, EphemeralUsage, Protocol, SocketTableError, Store
from portbook._serve.metrics import (
    EPHEMERAL_FLOOR,
    EPHEMERAL_TOP,
    exposition,
    make_registry,
)
from portbook._serve.source import Fresh, Source
from tests.serve.conftest import require

# Labels of portbook_listener_info (portbook._serve.metrics.listener_labels).
LISTENER_LABELS = {
    "protocol",
    "family",
    "address",
    "port",
    "service",
    "name",
    "program",
    "user",
    "exposure",
    "container",
    "unit",
    "netns",
}
METRICS = {
    # name: (type in the text format, label names)
    "portbook_build_info": ("gauge", {"version"}),
    "portbook_listener_info": ("gauge", LISTENER_LABELS),
    "portbook_sockets": ("gauge", {"protocol", "state"}),
    "portbook_ephemeral_ports_in_use": ("gauge", {"protocol", "remote_address", "remote_port"}),
    "portbook_ephemeral_ports_capacity": ("gauge", {"protocol", "remote_address", "remote_port"}),
    "portbook_ephemeral_ports_usage_ratio": (
        "gauge",
        {"protocol", "remote_address", "remote_port"},
    ),
    "portbook_ephemeral_destinations": ("gauge", set()),
    "portbook_name_listening": ("gauge", {"name", "protocol", "port"}),
    "portbook_leases": ("gauge", set()),
    "portbook_lease_info": ("gauge", {"port", "protocol", "name"}),
    "portbook_scrape_duration_seconds": ("gauge", set()),
    "portbook_scrape_errors_total": ("counter", {"part"}),
}


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of the exposition ``text`` by metric name (the client library's parser)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def scrape(source: Source | None = None) -> str:
    return exposition(make_registry(source)).decode()


def comm() -> str:
    return Path("/proc/self/comm").read_text().strip()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock
    sock.close()


def test_a_listener_the_test_opened_is_one_info_series_with_its_facts(
    listener: socket.socket,
) -> None:
    port = listener.getsockname()[1]
    found = [labels for labels, _ in samples(scrape())["portbook_listener_info"]]
    mine = [labels for labels in found if labels["port"] == str(port)]
    # This test's own unit, where systemd runs the machine (none here otherwise).
    (own,) = portbook.list_sockets(port=port, listening=True)
    assert mine == [
        {
            "protocol": "tcp",
            "family": "4",
            "address": "127.0.0.1",
            "port": str(port),
            "service": portbook.service_name(port, "tcp") or "",
            "name": "",
            "program": comm(),
            "user": __import__("pwd").getpwuid(__import__("os").geteuid()).pw_name,
            "exposure": "loopback",
            "container": "",
            "unit": own.unit.name if own.unit is not None else "",
            "netns": "",
        }
    ]


def test_listeners_sharing_every_label_are_one_series() -> None:
    """Four SO_REUSEPORT listeners on one port: one series, or the scrape would be invalid."""
    group: list[socket.socket] = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("127.0.0.1", group[0].getsockname()[1] if group else 0))
            s.listen(1)
            group.append(s)
        port = str(group[0].getsockname()[1])
        found = [
            v for labels, v in samples(scrape())["portbook_listener_info"] if labels["port"] == port
        ]
        assert found == [1.0]
    finally:
        for s in group:
            s.close()


def test_every_metric_has_its_type_labels_and_a_conventional_name(tmp_path: Path) -> None:
    store = tmp_path / "names.sqlite3"
    with Store(store) as s:
        portbook.assign("docs", store=s)
        portbook.pick_port(store=s, ttl=60)
    text = scrape(Source(str(store)))
    types = {
        m.group(1): m.group(2) for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE)
    }
    assert types == {name: kind for name, (kind, _) in METRICS.items()}
    found = samples(text)
    for name, (_, labels) in METRICS.items():
        assert name in found, name
        for sample_labels, _ in found[name]:
            assert set(sample_labels) == labels, name
    names = {*found, *(label for rows in found.values() for labels, _ in rows for label in labels)}
    for name in names:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
    assert all(n.startswith("portbook_") for n in found)


def test_names_and_leases_are_reported(tmp_path: Path, listener: socket.socket) -> None:
    store = tmp_path / "names.sqlite3"
    port = listener.getsockname()[1]
    with Store(store) as s:
        # The test's own listener already holds the port: tell assign it is free.
        portbook.assign("web", port=port, store=s, listeners=lambda p, proto: (False, ()))
        silent = portbook.assign("silent", store=s)
        lease = portbook.pick_port(store=s, ttl=60)
    found = samples(scrape(Source(str(store))))
    assert sorted(found["portbook_name_listening"], key=lambda x: x[0]["name"]) == [
        ({"name": "silent", "protocol": "tcp", "port": str(silent.port)}, 0.0),
        ({"name": "web", "protocol": "tcp", "port": str(port)}, 1.0),
    ]
    mine = [labels for labels, _ in found["portbook_listener_info"] if labels["port"] == str(port)]
    assert [labels["name"] for labels in mine] == ["web"]
    assert found["portbook_leases"] == [({}, 1.0)]
    assert found["portbook_lease_info"] == [
        ({"port": str(lease.port), "protocol": "tcp", "name": ""}, 1.0)
    ]


def test_a_store_that_does_not_exist_is_not_created(tmp_path: Path) -> None:
    store = tmp_path / "nothing-here.sqlite3"
    found = samples(scrape(Source(str(store))))
    assert found["portbook_leases"] == [({}, 0.0)]
    assert "portbook_name_listening" not in found
    assert not store.exists()


def test_sockets_are_counted_by_protocol_and_state(listener: socket.socket) -> None:
    before = {tuple(labels.values()): v for labels, v in samples(scrape())["portbook_sockets"]}
    extra = [socket.socket() for _ in range(3)]
    try:
        for s in extra:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
        after = {tuple(labels.values()): v for labels, v in samples(scrape())["portbook_sockets"]}
    finally:
        for s in extra:
            s.close()
    # Other programs on the machine may open and close listeners meanwhile: a lower bound.
    assert after[("tcp", "LISTEN")] >= 4
    assert set(after) >= {("tcp", "LISTEN")} and before


def test_a_busy_destination_has_its_own_ephemeral_series(listener: socket.socket) -> None:
    """Real connections: more than 1% of the range toward one listener gives series of its own."""
    port = listener.getsockname()[1]
    wanted = len(portbook.local_ranges().ephemeral) // 100 + 20
    clients: list[socket.socket] = []
    accepted: list[socket.socket] = []
    try:
        listener.setblocking(True)
        for _ in range(wanted):
            c = socket.socket()
            c.connect(listener.getsockname())
            clients.append(c)
            accepted.append(listener.accept()[0])
        found = samples(scrape())
    finally:
        for s in clients:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
        for s in accepted:
            s.close()
    mine = [
        (labels, v)
        for labels, v in found["portbook_ephemeral_ports_in_use"]
        if labels.get("remote_port") == str(port)
    ]
    assert mine == [
        ({"protocol": "tcp", "remote_address": "127.0.0.1", "remote_port": str(port)}, wanted)
    ]
    ratio = [
        v for labels, v in found["portbook_ephemeral_ports_usage_ratio"] if labels == mine[0][0]
    ]
    cap = [v for labels, v in found["portbook_ephemeral_ports_capacity"] if labels == mine[0][0]]
    assert ratio == [pytest.approx(wanted / cap[0])]


class _Usage(Source):
    """A source whose ephemeral reading is made up (the designed seam), the rest real."""

    def __init__(self, usage: EphemeralUsage) -> None:
        super().__init__()
        self.usage = usage

    def ephemeral(self, sockets: list[portbook.Socket] | None = None) -> EphemeralUsage:
        return self.usage


def test_only_busy_or_nearly_full_destinations_get_series() -> None:
    ranges = portbook.local_ranges()
    capacity = 10_000

    def dest(i: int, in_use: int) -> DestinationUsage:
        return DestinationUsage(
            Protocol.TCP, ipaddress.ip_address(f"10.0.0.{i}"), 443, in_use, 0, capacity
        )

    # 3 destinations at or above the floor, 12 busy ones below it, 50 quiet ones.
    nearly_full = [dest(i, int(capacity * (EPHEMERAL_FLOOR + 0.01 * i))) for i in range(3)]
    busy = [dest(10 + i, 2_000 - i) for i in range(12)]
    quiet = [dest(100 + i, 3) for i in range(50)]
    usage = EphemeralUsage(
        ranges=ranges,
        capacity=capacity,
        bound=0,
        udp_in_use=7,
        threshold=0.8,
        tw_reuse=2,
        destinations=tuple(sorted([*nearly_full, *busy, *quiet], key=lambda d: -d.in_use)),
    )
    found = samples(scrape(_Usage(usage)))
    exported = {labels["remote_address"] for labels, _ in found["portbook_ephemeral_ports_in_use"]}
    expected = {str(d.remote_address) for d in nearly_full}
    expected |= {str(d.remote_address) for d in busy[: EPHEMERAL_TOP - len(nearly_full)]}
    assert exported == expected | {""}  # "" is UDP's machine-wide series
    assert found["portbook_ephemeral_destinations"] == [({}, 65.0)]
    udp = {"protocol": "udp", "remote_address": "", "remote_port": ""}
    assert (udp, 7.0) in found["portbook_ephemeral_ports_in_use"]


class _Broken(Source):
    def sockets(self) -> list[portbook.Socket]:
        raise SocketTableError("the socket table could not be read")


def test_a_part_that_fails_is_counted_and_the_rest_still_reported() -> None:
    registry = make_registry(_Broken())
    for expected in (1.0, 2.0):
        found = samples(exposition(registry).decode())
        errors = {labels["part"]: v for labels, v in found["portbook_scrape_errors_total"]}
        assert errors == {"sockets": expected, "ephemeral": 0, "names": 0, "leases": 0}
        assert "portbook_listener_info" not in found and "portbook_sockets" not in found
        assert found["portbook_ephemeral_ports_in_use"] and found["portbook_leases"]


class _Slow(Source):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.lock = threading.Lock()

    def sockets(self) -> list[portbook.Socket]:
        with self.lock:
            self.calls += 1
        time.sleep(0.5)
        return super().sockets()


def test_overlapping_scrapes_share_one_reading() -> None:
    source = _Slow()
    registry = make_registry(source)
    texts: list[str] = []
    threads = [
        threading.Thread(target=lambda: texts.append(exposition(registry).decode()))
        for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(texts) == 6 and source.calls == 1
    exposition(registry)  # a scrape after them reads afresh
    assert source.calls == 2


def test_fresh_keeps_a_value_for_max_age_and_retries_after_a_failure() -> None:
    made = []

    def produce() -> int:
        made.append(1)
        if len(made) == 1:
            raise OSError("first one fails")
        return len(made)

    fresh = Fresh(produce, max_age=60)
    with pytest.raises(OSError, match="first one fails"):
        fresh.get()
    assert fresh.get() == 2 and fresh.get() == 2 and fresh.produced == 1


@pytest.mark.prometheus
def test_promtool_accepts_the_metrics(tmp_path: Path, listener: socket.socket) -> None:
    promtool = require("promtool", "prometheus")
    store = tmp_path / "names.sqlite3"
    with Store(store) as s:
        portbook.assign("docs", store=s)
        portbook.pick_port(store=s, ttl=60)
    text = scrape(Source(str(store)))
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


@pytest.mark.prometheus
def test_promtool_would_notice_a_bad_name() -> None:
    """The oracle is awake: promtool does refuse what breaks the conventions."""
    promtool = require("promtool", "prometheus")
    bad = (
        "# HELP portbook_scrape_errors Bad.\n"
        "# TYPE portbook_scrape_errors counter\n"
        "portbook_scrape_errors 1\n"
    )
    done = subprocess.run(
        [promtool, "check", "metrics"], input=bad, capture_output=True, text=True, check=False
    )
    assert done.returncode != 0 and '"_total" suffix' in done.stderr


def test_metrics_on_a_terminal_escapes_control_characters_in_names() -> None:
    """A process may call itself ESC[2J; the terminal that shows its label must not obey."""
    from tests.conftest import run_cli

    code = (
        "import ctypes, socket, sys, time\n"
        "ctypes.CDLL(None).prctl(15, b'evil\\x1b[2Jx', 0, 0, 0)\n"  # PR_SET_NAME
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)\n"
        "print(s.getsockname()[1], flush=True); time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        port = child.stdout.readline().strip()
        shown = run_cli("metrics", tty=True).stdout
        piped = run_cli("metrics").stdout
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    mine = [line for line in shown.splitlines() if f'port="{port}"' in line]
    assert len(mine) == 1 and 'program="evil\\x1b[2Jx"' in mine[0]
    assert "\x1b" not in shown
    assert 'program="evil\x1b[2Jx"' in piped  # a pipe or file gets the metrics as they are
