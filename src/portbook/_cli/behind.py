"""What is behind the sockets ls and who show: containers, units, namespaces, published ports.

Imported only when a table has any of them (or notes about them), so that the
common listing loads none of this.
"""

from __future__ import annotations

from portbook._cli._output import Output

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from portbook import Container, Netns, Published, Socket, SocketStream, SocketTable, Unit

__all__ = ["extra_columns", "forwarded", "lead", "notes"]


def notes(table: SocketTable | SocketStream, out: Output, command: str) -> None:
    """What the table could not read, and the other namespaces that hold more, on stderr."""
    for note in table.notes:
        out.note(note)
    if not table.elsewhere:
        return
    counted = [(ns, n) for ns, n in table.elsewhere if n is not None]
    if counted:
        where = ", ".join(f"{ns.name} ({n})" for ns, n in counted)
        out.note(f"more sockets in other network namespaces: {where}; see {command}")
    unread = [ns.name for ns, n in table.elsewhere if n is None]
    if unread:
        out.note(
            f"other network namespaces may hold sockets ({', '.join(unread)}); "
            f"entering them needs root: sudo {command}"
        )


def lead(sockets: Sequence[Socket], out: Output) -> None:
    """``who``'s first lines: the container behind the port, before the process that holds it."""
    said: set[object] = set()
    for s in sockets:
        where = f"{s.protocol.value} {_address(s)}"
        if s.published is not None and s.published not in said:
            said.add(s.published)
            out.line(f"{where} {_published_text(s.published, s)}")
        elif s.published is None and s.container is not None and s.container not in said:
            said.add(s.container)
            out.line(f"{where} is held in container {_container_text(s.container, ids=True)}")
    if said:
        out.line()


def _published_text(p: Published, s: Socket) -> str:
    """``leads into container web (docker 1a2b...): docker-proxy[12] forwards it to ...``."""
    head = (
        f"leads into container {_container_text(p.container, ids=True)}"
        if p.container is not None
        else "is published for a container this user cannot name"
    )
    holder = next((f"{q.name}[{q.pid}]" for q in s.processes if q.pid == p.holder), p.by)
    if p.target_port is None:
        return f"{head}: {holder} holds it"
    target = f"{p.target_address}:{p.target_port}" if p.target_address else f"port {p.target_port}"
    text = f"{head}: {holder} forwards it to {target}"
    if p.listeners:
        names = ", ".join(f"{q.name or '?'}[{q.pid}]" for q in p.listeners)
        text += f", where {names} listens"
    return text


def _container_text(c: Container, *, ids: bool = False) -> str:
    """``web (docker)``; with ``ids``, ``web (docker 1a2b3c4d5e6f, pod api-0 in default)``."""
    name = c.name or c.short_id
    facts = [c.runtime.value if c.runtime is not None else "container"]
    if ids and c.name:
        facts[0] += f" {c.short_id}"
    if c.pod:
        facts.append(f"pod {c.pod}" + (f" in {c.namespace}" if c.namespace else ""))
    if c.uid is not None:
        facts.append(f"rootless, uid {c.uid}")
    return f"{name} ({', '.join(facts)})"


def _address(s: Socket) -> str:
    from portbook import endpoint_text

    return endpoint_text(s.local_address, s.local_port)


def forwarded(query: Any, out: Output) -> None:
    """For a port no socket holds: the DNAT rules that forward it, and where to."""
    from portbook import UnsupportedError, port_forwards

    if len(query.ports) != 1 or not query.ports[0].single:
        return
    port = query.ports[0].first
    try:
        forwards = port_forwards(port, query.protocol.value if query.protocol else None)
    except UnsupportedError as exc:
        out.note(f"{exc} (a port may be forwarded by a DNAT rule with no socket)")
        return
    for p in forwards:
        rule = p.rule
        where = f"{p.protocol}/{port}"
        if rule is not None and rule.host_address:
            where += f" to {rule.host_address}"
        target = f"{p.target_address}:{p.target_port}"
        into = f" (container {_container_text(p.container, ids=True)})" if p.container else ""
        source = f" [{rule.source}: {rule.table} {rule.chain}]" if rule is not None else ""
        out.line(f"a DNAT rule forwards {where} to {target}{into}{source}")


def _unit_text(u: Unit) -> str:
    return u.name if u.manager == "system" else f"{u.name} (user {u.uid})"


def _behind_text(s: Socket, wide: bool) -> str:
    """The CONTAINER cell: the container, and for a published port where it leads."""
    if s.container is None:
        return ""
    text = _container_text(s.container)
    p = s.published
    if p is not None and p.target_port is not None:
        text += (
            f" -> {p.target_address}:{p.target_port}"
            if p.target_address
            else f" -> :{p.target_port}"
        )
        if wide and p.listeners:
            text += " " + " ".join(f"{q.name or '?'}[{q.pid}]" for q in p.listeners)
    return text


def _netns_text(ns: Netns | None) -> str:
    return "" if ns is None else ns.name


def extra_columns(
    sockets: Sequence[Socket], wide: bool
) -> list[tuple[str, Callable[[Socket], str]]]:
    """The columns only some tables have: namespace, container, unit (when any row has one)."""
    extra: list[tuple[str, Callable[[Socket], str]]] = []
    if any(s.netns is not None for s in sockets):
        extra.append(("NETNS", lambda s: _netns_text(s.netns)))
    if any(s.container is not None for s in sockets):
        extra.append(("CONTAINER", lambda s: _behind_text(s, wide)))
    if any(s.unit is not None for s in sockets):
        extra.append(("UNIT", lambda s: _unit_text(s.unit) if s.unit is not None else ""))
    return extra
