"""This machine's services database (``/etc/services``).

Each line is ``name port/protocol [alias ...] [# comment]``; blank lines and
``#`` comments are skipped. The file is the system's own small, curated
subset of the IANA registry (plus a few local additions) and is what
``getservbyname(3)`` answers from, so portbook shows it as its own source.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NamedTuple

__all__ = ["EtcServicesEntry", "default_services_path", "parse_etc_services", "read_etc_services"]


class EtcServicesEntry(NamedTuple):
    """One line of a services file. ``protocol`` is kept as written ("tcp", "ddp", ...).

    A named tuple rather than a dataclass: this private row type is made for
    every line on a cold ``portbook lookup``, and a dataclass costs about a
    millisecond to define at import. The public record is :class:`portbook.Service`.
    """

    name: str
    port: int
    protocol: str
    aliases: tuple[str, ...] = ()
    comment: str | None = None
    line: int = 0


def parse_etc_services(text: str) -> list[EtcServicesEntry]:
    """Parse a services file; lines that are not ``name port/proto ...`` are skipped.

    Skipping (rather than failing) matches what the C library does with a
    malformed line: the rest of the file still counts.
    """
    entries: list[EtcServicesEntry] = []
    for number, raw in enumerate(text.splitlines(), 1):
        body, hash_, comment_text = raw.partition("#")
        fields = body.split()
        if len(fields) < 2:
            continue
        port_text, slash, protocol = fields[1].partition("/")
        if not slash or not protocol or not port_text.isdigit() or not port_text.isascii():
            continue
        port = int(port_text)
        if port > 65535:
            continue
        comment = comment_text.strip() if hash_ else ""
        entries.append(
            EtcServicesEntry(
                name=fields[0],
                port=port,
                protocol=protocol.lower(),
                aliases=tuple(fields[2:]),
                comment=comment or None,
                line=number,
            )
        )
    return entries


def default_services_path() -> Path | None:
    """Where this system keeps its services file, or ``None`` when it has none."""
    if sys.platform == "win32":
        root = os.environ.get("SYSTEMROOT", r"C:\Windows")
        candidate = Path(root) / "System32" / "drivers" / "etc" / "services"
    else:
        candidate = Path("/etc/services")
    return candidate if candidate.is_file() else None


def read_etc_services(path: Path) -> list[EtcServicesEntry]:
    """Entries of the services file at ``path``; an unreadable file gives ``[]``."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    # The file is ASCII by convention; a stray Latin-1 comment must not lose the rest.
    return parse_etc_services(data.decode("utf-8", errors="replace"))
