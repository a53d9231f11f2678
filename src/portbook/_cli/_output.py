"""Rendering for the CLI: tables for a terminal, plain columns for a pipe, JSON for programs.

Kept apart from the data: handlers build rows of strings (or JSON-ready
values) from public records, and ``Output`` writes them. Tests render into a
``StringIO``. Three promises are kept here, for every command at once:

* **Text from other users is shown escaped.** Process names, command lines,
  /etc/services comments and registry fields are written by others; a control
  character in them (``ESC [ 2 J`` clears a screen and can draw a fake table
  above a ``[y/N]`` prompt) is shown as ``\\x1b``, in tables, lines, prompts
  and errors alike. JSON keeps the exact text (the encoder escapes what it
  must; on a terminal, or where the output cannot hold UTF-8, every
  non-ASCII character is written as ``\\uXXXX``).
* **Any encoding works.** A character the output cannot encode is written as
  a backslash escape (``\\xe9``) instead of failing; the truncation mark is
  ``…`` only where it can be written, else ``...``.
* **Any stdout works.** A closed stdout, a full disk or a reader that went
  away ends the command with one line on stderr (or, for a closed pipe, with
  none), never a traceback.
"""

from __future__ import annotations

import os
import sys

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any, TextIO

__all__ = [
    "ClosedStream",
    "Output",
    "count",
    "escape",
    "says_registry_warning",
    "terminal_columns",
]

# C0 controls, DEL and C1 controls, plus the invisible characters that
# reorder or hide text on a terminal (bidi overrides and isolates, zero-width
# joiners, the BOM): none of them belongs in one cell of a table.
_INVISIBLE = frozenset(
    [*range(0x20), *range(0x7F, 0xA0), 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2028,
     0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0xFEFF]
)  # fmt: skip
_ESCAPES = {c: (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in _INVISIBLE}


def count(n: int, noun: str) -> str:
    """``1 port``, ``2 ports``: ``n`` and ``noun``, plural unless ``n`` is 1 (nouns take an s)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def escape(text: str) -> str:
    """``text`` with every control or invisible character written as an escape (``\\x1b``)."""
    if text.isprintable():  # the common case, checked in C
        return text
    return text.translate(_ESCAPES)


class ClosedStream:
    """Where output goes when there is no stdout (``portbook ls >&-``): every write fails."""

    encoding = "utf-8"

    def write(self, text: str) -> int:
        raise OSError(9, "standard output is closed")

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class Output:
    """Where and how the CLI writes.

    ``tty`` decides between a table for people (header, colour, fitted to
    ``width``) and plain aligned columns with no colour for pipes. A plain
    class rather than a record: it is created on every run.
    """

    __slots__ = ("color", "err", "json_ascii", "mark", "stream", "tty", "width")

    def __init__(
        self,
        stream: TextIO,
        err: TextIO | None,
        tty: bool = False,
        width: int = 100,
        color: bool = False,
    ) -> None:
        self.stream = stream
        self.err = err
        self.tty = tty
        self.width = width
        self.color = color
        unicode = _can_encode(stream, "…")
        self.mark = "…" if unicode else "..."
        self.json_ascii = tty or not unicode

    @classmethod
    def for_stdout(cls) -> Output:
        stream: Any = sys.stdout if sys.stdout is not None else ClosedStream()
        err: Any = sys.stderr
        for text in (stream, err):
            # An unencodable character becomes an escape, never an exception.
            reconfigure = getattr(text, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(errors="backslashreplace")
        tty = stream.isatty()
        width = terminal_columns(100) if tty else 10_000
        color = tty and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"
        return cls(stream=stream, err=err, tty=tty, width=width, color=color)

    def line(self, text: str = "") -> None:
        self.stream.write(escape(text) + "\n")

    def json(self, value: Any) -> None:
        import json

        # dumps + one write: json.dump streams through many small writes, which
        # costs more than the encoding itself for a 50,000-socket table.
        text = json.dumps(value, indent=2 if self.tty else None, ensure_ascii=self.json_ascii)
        self.stream.write(text + "\n")

    def error(self, message: str) -> None:
        """One line on stderr, never a traceback: a line break inside ``message``
        (which may quote text the user gave) is shown escaped like any other."""
        self._err(f"portbook: error: {escape(message or 'failed')}\n")

    def warn(self, message: str) -> None:
        self._err(f"portbook: warning: {escape(message)}\n")

    def note(self, message: str) -> None:
        self._err(f"portbook: note: {escape(message)}\n")

    def info(self, message: str) -> None:
        """A line of progress on stderr (``portbook: 8080 is open after 0.003s``)."""
        self._err(f"portbook: {escape(message)}\n")

    def _err(self, text: str) -> None:
        if self.err is None:
            return  # no stderr at all: nowhere to say it
        try:
            self.err.write(text)
            self.err.flush()
        except (OSError, ValueError):
            pass  # stderr itself is broken; the exit status still says it

    def heading(self, text: str) -> None:
        shown = escape(text)
        self.stream.write((self._bold(shown) if self.color else shown) + "\n")

    def table(
        self,
        headers: Sequence[str],
        rows: Iterable[Sequence[str]],
        *,
        drop: Sequence[int] = (),
    ) -> None:
        """Aligned columns; on a terminal fitted to its width.

        ``drop`` lists the columns that may be left out, least useful first,
        when the table is wider than the terminal; what is still too wide is
        cut (the header like the rows) with a truncation mark. A pipe gets
        every column, uncut.
        """
        # Written for tables of tens of thousands of rows (the live table):
        # column widths with max() over each column, one write at the end.
        cells = [[escape(_one_line(c)) for c in row] for row in rows]
        head = list(headers)
        widths = _widths(head, cells)
        if self.tty:
            keep = _fit(widths, drop, self.width)
            head = [head[i] for i in keep]
            cells = [[row[i] for i in keep if i < len(row)] for row in cells]
            widths = [widths[i] for i in keep]
        lines = [self._fitted("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))]
        if self.color:
            lines[0] = self._bold(lines[0])
        lines.extend(
            self._fitted("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)))
            for row in cells
        )
        lines.append("")
        self.stream.write("\n".join(lines))

    def _fitted(self, text: str) -> str:
        text = text.rstrip()
        if self.tty and len(text) > self.width:
            return text[: max(self.width - len(self.mark), 10)] + self.mark
        return text

    @staticmethod
    def _bold(text: str) -> str:
        return f"\x1b[1m{text}\x1b[0m"


def _widths(headers: Sequence[str], cells: list[list[str]]) -> list[int]:
    widths = [len(h) for h in headers]
    for i in range(len(widths)):
        longest = max((len(row[i]) for row in cells if len(row) > i), default=0)
        widths[i] = max(widths[i], longest)
    return widths


def _fit(widths: list[int], drop: Sequence[int], width: int) -> list[int]:
    """The columns kept: leave out those in ``drop``, in order, until the rest fit ``width``."""
    keep = list(range(len(widths)))
    for column in drop:
        if sum(widths[i] for i in keep) + 2 * (len(keep) - 1) <= width:
            break
        if column in keep and len(keep) > 1:
            keep.remove(column)
    return keep


def _can_encode(stream: Any, text: str) -> bool:
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


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
    if 0 < columns < 100_000:
        return columns
    try:
        # sys.__stdout__ is None under pythonw: AttributeError, like shutil.
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or fallback  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return fallback


def _one_line(cell: str) -> str:
    # A command line or description may hold tabs and newlines; one row stays one line.
    if "\n" in cell or "\t" in cell or "\r" in cell:
        return " ".join(cell.split())
    return cell


def says_registry_warning(handler: Callable[[Any, Output], int]) -> Callable[[Any, Output], int]:
    """A handler that reads the book, which then says once, after its own output,
    that the user's updated registry could not be used (the packaged one was)."""

    def run(args: Any, out: Output) -> int:
        try:
            return handler(args, out)
        finally:
            from portbook import registry_warning

            warning = registry_warning()
            if warning:
                out.warn(warning)

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run
