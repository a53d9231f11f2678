"""The tree tells the design: which part of portbook may import which, and who owns each table.

The book, the live table and your names know nothing of each other; where
they meet is ``portbook._joined`` (and your names reach the book and the live
table only through the pick policy's defaults). The tools around ports read
the live table; the command line reads only the public API. Imports under
``if TYPE_CHECKING:`` are for type checkers and are not counted.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import portbook

SRC = Path(portbook.__file__).parent
SHARED = {"_exceptions", "_record", "_ports", "_paths", "_machine", "_proc", "_addresses"}
# part -> the parts of portbook its modules may import at run time (besides itself)
ALLOWED = {
    "shared": SHARED,
    "_book": SHARED,
    "_live": SHARED,
    "_names": SHARED,
    "_tools": SHARED | {"_joined", "_live"},
    "_joined": SHARED | {"_book", "_live", "_names"},
}
# Where a part may reach another one, and why.
SEAMS = {
    # The pick policy's defaults: the book's IANA test, the live table's holders.
    ("_names/picker.py", "_book"),
    ("_names/picker.py", "_joined"),
}
MAX_FUNCTION_LINES = 80


def _part(path: Path) -> str:
    top = path.relative_to(SRC).parts[0]
    return "shared" if top.removesuffix(".py") in SHARED else top.removesuffix(".py")


def _runtime_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, portbook part) of every import of portbook outside TYPE_CHECKING blocks."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "portbook" and len(parts) > 1:
                found.append((getattr(node, "lineno", 0), parts[1]))
    return found


MODULES = sorted(p for p in SRC.rglob("*.py") if p != SRC / "__init__.py" and _part(p) in ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_each_part_imports_only_what_the_design_allows(path: Path) -> None:
    part = _part(path)
    where = str(path.relative_to(SRC))
    for line, target in _runtime_imports(ast.parse(path.read_text())):
        if target == part or target in ALLOWED[part] or (where, target) in SEAMS:
            continue
        if part == "shared" and target in SHARED:
            continue
        raise AssertionError(f"{where}:{line} imports portbook.{target} ({part} may not)")


def test_the_seams_are_still_used() -> None:
    for where, target in SEAMS:
        imports = {t for _, t in _runtime_imports(ast.parse((SRC / where).read_text()))}
        assert target in imports, f"{where} no longer reaches {target}: drop the seam"


def test_the_core_never_imports_the_command_line() -> None:
    for path in SRC.rglob("*.py"):
        if _part(path) in ("_cli",) or path.name in ("__main__.py",):
            continue
        for line, target in _runtime_imports(ast.parse(path.read_text())):
            assert target != "_cli", f"{path.relative_to(SRC)}:{line} imports the CLI"


@pytest.mark.parametrize(
    ("table", "owners"),
    [("names", {"_names/assignments.py"}), ("leases", {"_names/leases.py"})],
)
def test_one_module_owns_the_sql_of_each_table(table: str, owners: set[str]) -> None:
    # The store creates the tables (its migrations); every other statement on
    # a table is in the module that owns it.
    statement = re.compile(
        rf"\b(?:FROM|INTO|UPDATE|JOIN)\s+{table}\b|\bDELETE\s+FROM\s+{table}\b", re.IGNORECASE
    )
    users = {
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if statement.search(p.read_text()) and p.name != "store.py"
    }
    assert users == owners


def test_no_function_is_longer_than_a_screen() -> None:
    long = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({lines})")
    assert long == []
