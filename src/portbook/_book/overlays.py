"""The book's two overlays on the registry: this machine's /etc/services and the unofficial list.

:class:`OverlayIndex` finds their entries by port and by name, and gives
the first name of each port (``/etc/services`` before the unofficial list),
the one rule every answer that needs a single overlay name uses.
"""

from __future__ import annotations

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from portbook._book.etc_services import EtcServicesEntry
    from portbook._book.records import Service

__all__ = ["INDEX_AFTER", "OverlayIndex", "overlay_rank"]

# Queries of the overlays answered by a scan before they are indexed.
INDEX_AFTER = 16


class OverlayIndex:
    """/etc/services and unofficial entries, found by port and by name.

    The first queries scan both lists (a few tens of microseconds); after
    ``INDEX_AFTER`` of them both are indexed by port and by name (about a
    millisecond, more than a whole cold ``portbook lookup`` spends on its one
    scan), so a long-lived process pays one dict probe per query. Records are
    built on first use and then shared (they are frozen).
    """

    def __init__(
        self,
        etc: list[EtcServicesEntry],
        unofficial: tuple[tuple[int, int, str, str, str, str], ...],
    ) -> None:
        # Positions 0..len(etc)-1 are /etc/services lines, the rest unofficial
        # entries; both kinds are tuples, so the position tells them apart.
        self._etc = etc
        self._unofficial = unofficial
        self._built: list[Service | None] = [None] * (len(etc) + len(unofficial))
        self._queries = 0
        self._by_port: dict[int, list[int]] | None = None
        self._by_name: dict[str, list[int]] | None = None

    def _indexed(self) -> bool:
        if self._by_port is not None:
            return True
        self._queries += 1
        if self._queries <= INDEX_AFTER:
            return False
        # Built into locals and published at the end: a thread that reads the
        # attributes meanwhile scans instead.
        by_port: dict[int, list[int]] = {}
        by_name: dict[str, list[int]] = {}
        for i, (first, last, names) in enumerate(self._entries()):
            for port in range(first, last + 1):
                by_port.setdefault(port, []).append(i)
            for name in names:
                by_name.setdefault(name, []).append(i)
        self._by_name = by_name
        self._by_port = by_port
        return True

    def _entries(self) -> list[tuple[int, int, frozenset[str]]]:
        """(first port, last port, lower-case names) of every entry, in position order."""
        entries = [
            (e.port, e.port, frozenset(n.lower() for n in (e.name, *e.aliases))) for e in self._etc
        ]
        entries.extend((u[0], u[1], frozenset((u[3].lower(),))) for u in self._unofficial)
        return entries

    def _port_hits(self, first: int, last: int) -> list[int]:
        if first == last and self._indexed():
            assert self._by_port is not None
            return self._by_port.get(first, [])
        hits = [i for i, e in enumerate(self._etc) if first <= e.port <= last]
        n_etc = len(self._etc)
        hits.extend(
            i for i, u in enumerate(self._unofficial, n_etc) if u[0] <= last and u[1] >= first
        )
        return hits

    def _service(self, i: int) -> Service:
        built = self._built[i]
        if built is None:
            # Records are made on first use: a listing's names need none.
            from portbook._book.records import etc_service, unofficial_service

            n_etc = len(self._etc)
            if i < n_etc:
                built = etc_service(self._etc[i])
            else:
                built = unofficial_service(self._unofficial[i - n_etc])
            self._built[i] = built
        return built

    def by_ports(self, first: int, last: int) -> list[Service]:
        hits = self._port_hits(first, last)
        return [self._service(i) for i in hits] if hits else []

    def by_name(self, name: str) -> list[Service]:
        """Entries called ``name`` (lower case) or with it as an alias."""
        if self._indexed():
            assert self._by_name is not None
            hits = self._by_name.get(name, [])
        else:
            hits = [
                i
                for i, e in enumerate(self._etc)
                if e.name.lower() == name or any(a.lower() == name for a in e.aliases)
            ]
            n_etc = len(self._etc)
            hits.extend(i for i, u in enumerate(self._unofficial, n_etc) if u[3].lower() == name)
        return [self._service(i) for i in hits]

    def first_name(self, port: int, protocol: str) -> str | None:
        """The first overlay name of ``port``/``protocol`` (see :meth:`first_names`)."""
        return self.first_names([port]).get((port, protocol))

    def first_names(self, ports: Iterable[int] | None = None) -> dict[tuple[int, str], str]:
        """(port, protocol) -> the name of its first entry: /etc/services before unofficial."""
        return {key: name for key, (name, _) in self.first_entries(ports).items()}

    def first_entries(
        self, ports: Iterable[int] | None = None
    ) -> dict[tuple[int, str], tuple[str, str]]:
        """(port, protocol) -> (name, source) of its first entry: /etc/services before unofficial.

        For ``ports`` (default: every port either overlay names). The one rule
        for "the overlays' name of a port", whatever asks; ``source`` is
        ``"etc-services"`` or ``"unofficial"``.
        """
        wanted = None if ports is None else set(ports)
        names: dict[tuple[int, str], tuple[str, str]] = {}
        setdefault = names.setdefault
        n_etc = len(self._etc)
        for i in self._positions(wanted):
            if i < n_etc:
                e = self._etc[i]
                setdefault((e.port, e.protocol), (e.name, "etc-services"))
                continue
            first, last, protocol, name, _, _ = self._unofficial[i - n_etc]
            span = range(first, last + 1)
            for port in span if wanted is None else wanted.intersection(span):
                setdefault((port, protocol), (name, "unofficial"))
        return names

    def _positions(self, ports: set[int] | None) -> list[int]:
        """Positions of the entries holding any of ``ports`` (all when ``None``), in order."""
        if ports is None:
            return list(range(len(self._etc) + len(self._unofficial)))
        if len(ports) == 1:
            (port,) = ports
            return self._port_hits(port, port)
        n_etc = len(self._etc)
        hits = [i for i, e in enumerate(self._etc) if e.port in ports]
        hits.extend(
            i
            for i, u in enumerate(self._unofficial, n_etc)
            if not ports.isdisjoint(range(u[0], u[1] + 1))
        )
        return hits


def overlay_rank(s: Service, low: str) -> int | None:
    names = [(s.name or "").lower(), *(a.lower() for a in s.aliases)]
    if low in names:
        return 0
    if any(n.startswith(low) for n in names):
        return 1
    if any(low in n for n in names):
        return 2
    text = " ".join(x for x in (s.description, s.software or "") if x).lower()
    if text == low:
        return 3
    if f" {text}".find(f" {low}") >= 0:
        return 4
    if low in text:
        return 5
    return None
