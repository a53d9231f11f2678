"""Rendering for the CLI: tables for a terminal, plain columns for a pipe, JSON for programs.

Kept apart from the data: handlers build rows of strings (or JSON-ready
values) from public records, and ``Output`` writes them. Tests render into a
``StringIO``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

__all__ = ["Output"]


@dataclass
class Output:
    """Where and how the CLI writes.

    ``tty`` decides between a table for people (header, colour, fitted to
    ``width``) and plain tab-free aligned columns with no colour for pipes.
    """

    stream: TextIO
    err: TextIO
    tty: bool = False
    width: int = 100
    color: bool = False
    _rows_written: int = field(default=0, repr=False)

    @classmethod
    def for_stdout(cls) -> Output:
        tty = sys.stdout.isatty()
        width = shutil.get_terminal_size((100, 24)).columns if tty else 10_000
        color = tty and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"
        return cls(stream=sys.stdout, err=sys.stderr, tty=tty, width=width, color=color)

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")

    def json(self, value: Any) -> None:
        # dumps + one write: json.dump streams through many small writes, which
        # costs more than the encoding itself for a 50,000-socket table.
        self.stream.write(
            json.dumps(value, indent=2 if self.tty else None, ensure_ascii=False) + "\n"
        )

    def error(self, message: str) -> None:
        """One line on stderr, never a traceback."""
        self.err.write(f"portbook: error: {message.splitlines()[0] if message else 'failed'}\n")

    def warn(self, message: str) -> None:
        self.err.write(f"portbook: warning: {message}\n")

    def heading(self, text: str) -> None:
        self.line(self._bold(text) if self.color else text)

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
        """Aligned columns; the last column is cut to fit a terminal, never a pipe."""
        # Written for tables of tens of thousands of rows (the live table):
        # column widths with max() over each column, one write at the end.
        materialised = [[_clean(cell) for cell in row] for row in rows]
        widths = [len(h) for h in headers]
        for i in range(len(widths)):
            longest = max((len(row[i]) for row in materialised if len(row) > i), default=0)
            widths[i] = max(widths[i], longest)
        head = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()
        lines = [self._bold(head) if self.color else head]
        cut = max(self.width - 1, 10)
        for row in materialised:
            text = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
            if self.tty and len(text) > self.width:
                text = text[:cut] + "…"
            lines.append(text)
        lines.append("")
        self.stream.write("\n".join(lines))

    @staticmethod
    def _bold(text: str) -> str:
        return f"\x1b[1m{text}\x1b[0m"


def _clean(cell: str) -> str:
    # A command line or description may hold tabs and newlines; one row stays one line.
    if "\n" in cell or "\t" in cell or "\r" in cell:
        return " ".join(cell.split())
    return cell
