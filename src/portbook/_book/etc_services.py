"""This machine's services database (``/etc/services``).

Each line is ``name port/protocol [alias ...] [# comment]``; blank lines and
``#`` comments are skipped. The file is the system's own small, curated
subset of the IANA registry (plus a few local additions) and is what
``getservbyname(3)`` answers from, so portbook shows it as its own source.
"""

from __future__ import annotations

import os
import sys

from portbook._record import maker, record

__all__ = ["EtcServicesEntry", "default_services_path", "parse_etc_services", "read_etc_services"]


@record
class EtcServicesEntry:
    """One line of a services file; ``protocol`` is kept as written ("tcp", "ddp", ...).

    The book's public record for it is :class:`portbook.Service`.
    """

    name: str
    port: int
    protocol: str
    aliases: tuple[str, ...] = ()
    comment: str | None = None
    line: int = 0


_make_entry = maker(EtcServicesEntry)


def parse_etc_services(text: str) -> list[EtcServicesEntry]:
    """Parse a services file; lines that are not ``name port/proto ...`` are skipped.

    Skipping (rather than failing) matches what the C library does with a
    malformed line: the rest of the file still counts.
    """
    # Written for speed (this runs on every cold `portbook lookup`): a comment
    # or blank line costs one test, entries are built positionally.
    entries: list[EtcServicesEntry] = []
    append = entries.append
    make = _make_entry
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw or raw[0] == "#":
            continue
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
        append(
            make((fields[0], port, protocol.lower(), tuple(fields[2:]), comment or None, number))
        )
    return entries


def default_services_path() -> str | None:
    """Where this system keeps its services file, or ``None`` when it has none."""
    if sys.platform == "win32":
        root = os.environ.get("SYSTEMROOT", r"C:\Windows")
        candidate = os.path.join(root, "System32", "drivers", "etc", "services")
    else:
        candidate = "/etc/services"
    return candidate if os.path.isfile(candidate) else None


def read_etc_services(path: str | os.PathLike[str]) -> list[EtcServicesEntry]:
    """Entries of the services file at ``path``; an unreadable file gives ``[]``."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return []
    # The file is ASCII by convention; a stray Latin-1 comment must not lose the rest.
    return parse_etc_services(data.decode("utf-8", errors="replace"))
