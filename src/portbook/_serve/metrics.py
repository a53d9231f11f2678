"""portbook's metrics for Prometheus, built with the official client library.

:class:`PortbookCollector` makes every metric family anew on each collection
from a fresh :class:`~portbook._serve.source.Snapshot`; nothing is kept between
scrapes but the error counts. It lives on a registry of its own
(:func:`make_registry`), without the client library's default process and
platform collectors: a scrape says what portbook knows about the machine and
nothing about the exporter's Python process.

Naming follows Prometheus's conventions: a ``portbook_`` prefix, snake case,
base units as suffixes (``_seconds``), ``_total`` on the counter only,
``_info`` on series whose value is always 1 and whose labels carry the facts,
``_ratio`` for a fraction from 0 to 1. No label is a pid: pids change with
every restart and would start a new series each time.

This module imports ``prometheus_client`` (about 60 ms, and ``http.server``,
``urllib``, ``inspect``...): only ``portbook serve`` and ``portbook metrics``
import it, never another command.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from importlib.resources import files

from prometheus_client import CollectorRegistry, generate_latest, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

import portbook
from portbook import EphemeralUsage, Socket
from portbook._serve.source import PARTS, Fresh, Snapshot, Source

__all__ = [
    "CONTENT_TYPE",
    "EPHEMERAL_FLOOR",
    "EPHEMERAL_MIN_RATIO",
    "EPHEMERAL_TOP",
    "PortbookCollector",
    "alert_rules",
    "exposition",
    "listener_labels",
    "make_registry",
    "write_textfile",
]

#: The text format 0.0.4: every Prometheus reads it, and it is what
#: ``promtool check metrics`` lints (it refuses the OpenMetrics ``info`` type).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Ephemeral-port series are per destination, and a busy client machine talks
# to thousands of them (every short-lived peer, every TIME-WAIT leftover), each
# one a new series. Only the destinations that matter for exhaustion are
# exported: the busiest few among those using a noticeable share of their
# ports, and every one at or above the floor, which the exhaustion alert (at
# 0.8) therefore always sees.
EPHEMERAL_TOP = 10
EPHEMERAL_MIN_RATIO = 0.01
EPHEMERAL_FLOOR = 0.5


def listener_labels(sock: Socket, names: dict[tuple[int, str], str]) -> dict[str, str]:
    """The labels of ``portbook_listener_info`` for one listening socket: made here only.

    ``names`` maps (port, protocol) to your name for it. A fact portbook does
    not know is an empty value, which Prometheus treats as no label at all.
    """
    programs = sorted({p.name for p in sock.processes if p.name})
    return {
        "protocol": sock.protocol.value,
        "family": str(int(sock.family)),
        # The address as `ls --json` writes it (IPv4-mapped IPv6 in dotted form).
        "address": str(sock.to_json()["local_address"]),
        "port": str(sock.local_port),
        "service": sock.service or "",
        "name": names.get((sock.local_port, sock.protocol.value), ""),
        "program": ",".join(programs),
        "user": sock.user or (str(sock.uid) if sock.uid >= 0 else ""),
        "exposure": sock.exposure.value,
        # The container behind the port (a published one's too), by name; its
        # systemd unit; the network namespace it was read in, when not this one.
        "container": (sock.container.name or sock.container.short_id) if sock.container else "",
        "unit": sock.unit.name if sock.unit is not None else "",
        "netns": sock.netns.name if sock.netns is not None else "",
    }


class PortbookCollector(Collector):
    """Collects portbook's metrics from ``snapshot()`` on every scrape.

    ``snapshot`` defaults to a :class:`Fresh` reading of ``source`` shared by
    overlapping scrapes. ``collect`` runs in each scraping thread, so the
    error counts (the only state kept) are guarded by a lock.
    """

    def __init__(
        self,
        source: Source | None = None,
        *,
        snapshot: Callable[[], Snapshot] | None = None,
    ) -> None:
        chosen = source if source is not None else Source()
        self._snapshot = snapshot or Fresh(lambda: Snapshot.read(chosen)).get
        self._errors = dict.fromkeys(PARTS, 0)
        self._counted = 0  # serial of the newest reading whose errors are counted
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        self._count_errors(snap)
        info = GaugeMetricFamily(
            "portbook_build_info",
            "The portbook version that serves these metrics (value always 1).",
            labels=["version"],
        )
        info.add_metric([portbook.__version__], 1)
        yield info
        yield from _listener_families(snap)
        yield _state_family(snap.state_counts)
        yield from _ephemeral_families(snap.ephemeral)
        yield from _name_families(snap)
        yield from _lease_families(snap)
        yield GaugeMetricFamily(
            "portbook_scrape_duration_seconds",
            "Seconds portbook took to read what these metrics report.",
            value=snap.seconds,
        )
        errors = CounterMetricFamily(
            "portbook_scrape_errors_total",
            "Readings of one part (sockets, ephemeral, names, leases) that failed.",
            labels=["part"],
        )
        with self._lock:
            for part in PARTS:
                errors.add_metric([part], self._errors[part])
        yield errors

    def _count_errors(self, snap: Snapshot) -> None:
        # Scrapes that shared one reading count its failures once.
        with self._lock:
            if snap.serial <= self._counted:
                return
            self._counted = snap.serial
            for part in snap.errors:
                self._errors[part] += 1


def _listener_families(snap: Snapshot) -> Iterator[Metric]:
    names: dict[tuple[int, str], str] = {}
    for status in snap.names or ():
        a = status.assignment
        names[(a.port, a.protocol.value)] = a.name
    family = InfoMetricFamily(
        "portbook_listener",
        "A listening TCP or bound UDP socket of this machine (value always 1).",
    )
    seen: set[tuple[tuple[str, str], ...]] = set()
    for sock in snap.listeners or ():
        labels = listener_labels(sock, names)
        key = tuple(labels.items())
        # Sockets that share every label (a SO_REUSEPORT group, workers of one
        # server) are one series: a duplicate would make the scrape invalid.
        if key not in seen:
            seen.add(key)
            family.add_metric([], labels)
    yield family


def _state_family(counts: dict[tuple[str, str], int] | None) -> Metric:
    family = GaugeMetricFamily(
        "portbook_sockets",
        "TCP and UDP sockets of this machine, by protocol and state (ss's state names).",
        labels=["protocol", "state"],
    )
    for (protocol, state), n in sorted((counts or {}).items()):
        family.add_metric([protocol, state], n)
    return family


def _ephemeral_families(usage: EphemeralUsage | None) -> Iterator[Metric]:
    labels = ["protocol", "remote_address", "remote_port"]
    in_use = GaugeMetricFamily(
        "portbook_ephemeral_ports_in_use",
        "Local ephemeral ports in use toward one destination (TCP; TIME-WAIT included), "
        "or by all UDP sockets (no destination labels).",
        labels=labels,
    )
    capacity = GaugeMetricFamily(
        "portbook_ephemeral_ports_capacity",
        "Local ephemeral ports that connections toward this destination may use.",
        labels=labels,
    )
    ratio = GaugeMetricFamily(
        "portbook_ephemeral_ports_usage_ratio",
        "Ephemeral ports in use over capacity, from 0 to 1.",
        labels=labels,
    )
    destinations = GaugeMetricFamily(
        "portbook_ephemeral_destinations",
        f"Destinations with ephemeral ports in use. Series of their own: the {EPHEMERAL_TOP} "
        f"busiest of those at {EPHEMERAL_MIN_RATIO:g} or more of capacity, and every one at "
        f"{EPHEMERAL_FLOOR:g} or more.",
    )
    if usage is not None:
        for i, d in enumerate(usage.destinations):  # busiest first
            if d.ratio < EPHEMERAL_FLOOR and (i >= EPHEMERAL_TOP or d.ratio < EPHEMERAL_MIN_RATIO):
                continue
            values = [d.protocol.value, str(d.remote_address), str(d.remote_port)]
            in_use.add_metric(values, d.in_use)
            capacity.add_metric(values, d.capacity)
            ratio.add_metric(values, d.ratio)
        udp = ["udp", "", ""]
        in_use.add_metric(udp, usage.udp_in_use)
        capacity.add_metric(udp, usage.capacity)
        ratio.add_metric(udp, usage.udp_ratio)
        destinations.add_metric([], len(usage.destinations))
    yield from (in_use, capacity, ratio, destinations)


def _name_families(snap: Snapshot) -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "portbook_name_listening",
        "Your names (portbook assign): 1 when a program listens on the name's port, else 0.",
        labels=["name", "protocol", "port"],
    )
    for status in snap.names or ():
        a = status.assignment
        family.add_metric([a.name, a.protocol.value, str(a.port)], 1 if status.listening else 0)
    yield family


def _lease_families(snap: Snapshot) -> Iterator[Metric]:
    count = GaugeMetricFamily("portbook_leases", "Live leases in the names store (portbook pick).")
    info = InfoMetricFamily(
        "portbook_lease",
        "A live lease: a port held for a process or a time (value always 1).",
        labels=["port", "protocol", "name"],
    )
    if snap.leases is not None:
        count.add_metric([], len(snap.leases))
        for lease in snap.leases:
            info.add_metric([str(lease.port), lease.protocol, lease.name or ""], {})
    yield count
    yield info


def make_registry(source: Source | None = None) -> CollectorRegistry:
    """A registry with portbook's collector alone (no process or platform metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PortbookCollector(source))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The metrics of ``registry`` in the text format 0.0.4 (:data:`CONTENT_TYPE`)."""
    return generate_latest(registry)


def write_textfile(path: str | os.PathLike[str], registry: CollectorRegistry) -> None:
    """Write the metrics for node_exporter's textfile collector, atomically.

    The client library writes a temporary file beside ``path`` and renames it
    into place, so the collector never reads half a file; the temporary name
    does not end in ``.prom``, so the collector ignores it meanwhile.
    """
    write_to_textfile(os.fspath(path), registry)


def alert_rules() -> str:
    """The Prometheus alert rules shipped with portbook (``alerts.yml``)."""
    return files("portbook._serve").joinpath("alerts.yml").read_text(encoding="utf-8")
