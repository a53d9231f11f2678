"""The live table as JSON text (the README's contract of ``ls --json``), fast for large tables.

``json.dumps([s.to_json() for s in sockets])`` gives the same text; this
module gives it several times faster: the pieces shared between sockets
(addresses, holder lists, names, notes) are encoded once, each socket is one
string format, and the text is written in pieces so that a table of
megabytes is never copied whole.
"""

from __future__ import annotations

from portbook._addresses import address_text
from portbook._live.records import Exposure, Socket, SocketState
from portbook._ports import Family, PortClass, Protocol
from portbook._record import values_of

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import TextIO

__all__ = ["sockets_json", "write_sockets_json"]

_JSON_CHUNK = 512  # sockets per piece: ~300 KB of text with long command lines


def sockets_json(sockets: Iterable[Socket], *, indent: int | None = None) -> str:
    """The JSON array of ``sockets`` (each as :meth:`Socket.to_json`), as text."""
    if indent is not None:
        import json

        return json.dumps([s.to_json() for s in sockets], indent=indent, ensure_ascii=False)
    return "".join(_json_chunks(sockets))


def write_sockets_json(
    sockets: Iterable[Socket], stream: TextIO, *, indent: int | None = None
) -> None:
    """Write :func:`sockets_json` of ``sockets`` to the text ``stream``, a piece at a time.

    A large table's JSON runs to megabytes (every socket repeats its owners'
    command lines); built whole, each copy of it (joining, adding a newline,
    encoding for the stream) costs milliseconds, mostly the kernel handing
    fresh pages to the new buffer. Pieces of ``_JSON_CHUNK`` sockets reuse
    the same memory instead.
    """
    if indent is not None:
        stream.write(sockets_json(sockets, indent=indent))
        return
    write = stream.write
    for chunk in _json_chunks(sockets):
        write(chunk)


class _Pieces:
    """JSON text of values many sockets share, each encoded once (by identity or value)."""

    def __init__(self) -> None:
        import json

        self._dumps = json.dumps
        self._by_id: dict[int, str] = {}
        self._keep: list[object] = []  # keeps the id() keys unique: the objects stay alive
        self._values: dict[object, str] = {None: "null"}
        # Enum members as plain strings: an f-string formats an exact str
        # directly, but a str or int subclass member through its __format__
        # and __str__ methods, which cost a third of the loop.
        self.protocols = {m: m.value for m in Protocol}
        self.families = {m: str(m.value) for m in Family}
        self.states = {m: m.value for m in SocketState}
        self.exposures = {m: m.value for m in Exposure}
        self.classes = {m: m.common_name for m in PortClass}

    def holders(self, procs: tuple[object, ...]) -> str:
        text = self._by_id.get(id(procs))
        if text is None:
            self._keep.append(procs)
            text = self._by_id[id(procs)] = self._dumps(
                [p.to_json() for p in procs],  # type: ignore[attr-defined]
                ensure_ascii=False,
            )
        return text

    def record(self, value: object) -> str:
        """A namespace, container, unit or published port (records shared between sockets)."""
        if value is None:
            return "null"
        text = self._by_id.get(id(value))
        if text is None:
            self._keep.append(value)
            text = self._by_id[id(value)] = self._dumps(
                value.to_json(),  # type: ignore[attr-defined]
                ensure_ascii=False,
            )
        return text

    def address(self, address: object) -> str:
        if address is None:
            return "null"
        text = self._by_id.get(id(address))
        if text is None:
            self._keep.append(address)
            text = self._by_id[id(address)] = f'"{address_text(address)}"'  # type: ignore[arg-type]
        return text

    def value(self, value: str | None) -> str:
        text = self._values.get(value)
        if text is None:
            text = self._values[value] = self._dumps(value, ensure_ascii=False)
        return text


def _json_chunks(sockets: Iterable[Socket]) -> Iterator[str]:
    """The compact JSON array of ``sockets`` in pieces (``"[" ... "]"`` once joined)."""
    pieces = _Pieces()
    protocols, families, states = pieces.protocols, pieces.families, pieces.states
    exposures, classes = pieces.exposures, pieces.classes
    holders, address, value, record = pieces.holders, pieces.address, pieces.value, pieces.record
    parts: list[str] = []
    append = parts.append
    separator = "["  # before the next piece: "[" first, then ", "
    # Each record unpacked at once, in Socket's field order (cheaper than
    # twenty attribute reads; tests compare the text with Socket.to_json).
    for (
        proto,
        fam,
        state,
        laddr,
        lport,
        raddr,
        rport,
        inode,
        uid,
        rq,
        sq,
        v6only,
        ifindex,
        procs,
        note,
        service,
        port_class,
        ephemeral,
        exposure,
        user,
        yours,
        source,
        netns,
        container,
        unit,
        published,
    ) in values_of(sockets):
        append(
            f'{{"protocol": "{protocols[proto]}", "family": {families[fam]}, '
            f'"state": "{states[state]}", "local_address": {address(laddr)}, '
            f'"local_port": {lport}, "remote_address": {address(raddr)}, '
            f'"remote_port": {"null" if rport is None else rport}, '
            f'"inode": {inode}, "uid": {uid}, "user": {value(user)}, '
            f'"processes": {holders(procs)}, "owner_note": {value(note)}, '
            f'"service": {value(service)}, "service_source": {value(source)}, '
            f'"name": {value(yours)}, "exposure": "{exposures[exposure]}", '
            f'"port_class": "{classes[port_class]}", '
            f'"ephemeral": {"true" if ephemeral else "false"}, '
            f'"recv_queue": {rq}, "send_queue": {sq}, '
            f'"v6only": {"null" if v6only is None else "true" if v6only else "false"}, '
            f'"interface": {"null" if ifindex is None else ifindex}, '
            f'"netns": {record(netns)}, "container": {record(container)}, '
            f'"unit": {record(unit)}, "published": {record(published)}}}'
        )
        if len(parts) == _JSON_CHUNK:
            yield separator
            yield ", ".join(parts)
            separator = ", "
            parts.clear()
    if parts:
        yield separator
        yield ", ".join(parts)
    elif separator == "[":
        yield "["  # no socket at all
    yield "]"
