"""This machine's services database (``/etc/services``).

Each line is ``name port/protocol [alias ...] [# comment]``; blank lines and
``#`` comments are skipped. The file is the system's own small, curated
subset of the IANA registry (plus a few local additions) and is what
``getservbyname(3)`` answers from, so portbook shows it as its own source.
"""

from __future__ import annotations

import os
import sys
from collections import namedtuple

__all__ = ["EtcServicesEntry", "default_services_path", "parse_etc_services", "read_etc_services"]

# Not `from typing import TYPE_CHECKING, NamedTuple`: typing costs about a
# quarter of an interpreter start to import, and this module is loaded by
# every cold `portbook lookup`. Type checkers read the typed class below and
# treat any name TYPE_CHECKING as true; at run time the same named tuple is
# made by collections.namedtuple (collections is loaded anyway). The field
# names, order and defaults must stay the same in both.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple

    class EtcServicesEntry(NamedTuple):
        name: str
        port: int
        protocol: str
        aliases: tuple[str, ...] = ()
        comment: str | None = None
        line: int = 0

else:
    EtcServicesEntry = namedtuple(
        "EtcServicesEntry",
        ("name", "port", "protocol", "aliases", "comment", "line"),
        defaults=((), None, 0),
    )
EtcServicesEntry.__doc__ = """One line of a services file.

``protocol`` is kept as written ("tcp", "ddp", ...). A named tuple rather
than a record class: this private row type is made for every line on a cold
``portbook lookup``. The public record is :class:`portbook.Service`.
"""


def parse_etc_services(text: str) -> list[EtcServicesEntry]:
    """Parse a services file; lines that are not ``name port/proto ...`` are skipped.

    Skipping (rather than failing) matches what the C library does with a
    malformed line: the rest of the file still counts.
    """
    # Written for speed (this runs on every cold `portbook lookup`): a comment
    # or blank line costs one test, entries are built positionally.
    entries: list[EtcServicesEntry] = []
    append = entries.append
    make = EtcServicesEntry
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
        append(make(fields[0], port, protocol.lower(), tuple(fields[2:]), comment or None, number))
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
