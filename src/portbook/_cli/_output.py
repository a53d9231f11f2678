"""Rendering for the CLI: tables for a terminal, plain columns for a pipe, JSON for programs.

Kept apart from the data: handlers build rows of strings (or JSON-ready
values) from public records, and ``Output`` writes them. Tests render into a
``StringIO``.
"""

from __future__ import annotations

import os
import sys

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any, TextIO

__all__ = ["Output"]


class Output:
    """Where and how the CLI writes.

    ``tty`` decides between a table for people (header, colour, fitted to
    ``width``) and plain tab-free aligned columns with no colour for pipes.
    A plain class rather than a dataclass: it is created on every run, and the
    dataclasses module alone costs a third of an interpreter start.
    """

    __slots__ = ("color", "err", "stream", "tty", "width")

    def __init__(
        self,
        stream: TextIO,
        err: TextIO,
        tty: bool = False,
        width: int = 100,
        color: bool = False,
    ) -> None:
        self.stream = stream
        self.err = err
        self.tty = tty
        self.width = width
        self.color = color

    @classmethod
    def for_stdout(cls) -> Output:
        tty = sys.stdout.isatty()
        width = 10_000
        if tty:
            width = terminal_columns(100)
        color = tty and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"
        return cls(stream=sys.stdout, err=sys.stderr, tty=tty, width=width, color=color)

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")

    def json(self, value: Any) -> None:
        import json

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


def terminal_columns(fallback: int) -> int:
    """Width of the terminal: ``$COLUMNS`` when set, else the size of stdout's terminal.

    The rule of ``shutil.get_terminal_size``, without importing shutil (which
    brings fnmatch and the zlib, bz2 and lzma modules: about a fifth of an
    interpreter start, paid by every command that prints a table or help).
    """
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    try:
        # sys.__stdout__ is None under pythonw: AttributeError, like shutil.
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or fallback  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return fallback


def _clean(cell: str) -> str:
    # A command line or description may hold tabs and newlines; one row stays one line.
    if "\n" in cell or "\t" in cell or "\r" in cell:
        return " ".join(cell.split())
    return cell
