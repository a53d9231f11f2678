"""The public face: ``__all__`` is exactly what the facade exports, lazily and statically."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import portbook


def test_all_matches_the_export_table_and_every_name_resolves() -> None:
    assert set(portbook.__all__) == {"__version__", *portbook._EXPORTS}
    for name in portbook.__all__:
        assert getattr(portbook, name) is not None
    assert sorted(dir(portbook)) == sorted(portbook.__all__)


def test_static_imports_match_the_export_table() -> None:
    """What type checkers see (the TYPE_CHECKING block) is what runs (the lazy table)."""
    tree = ast.parse(Path(portbook.__file__).read_text())
    seen: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom)
                for alias in stmt.names:
                    seen[alias.name] = (stmt.module or "").lstrip(".")
    assert seen == portbook._EXPORTS


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = portbook.no_such_thing


def test_core_imports_no_cli_or_rendering_code() -> None:
    code = (
        "import sys, portbook\n"
        "for n in portbook.__all__: getattr(portbook, n)\n"
        "bad = [m for m in sys.modules if m.startswith(('portbook._cli', 'portbook._serve')) "
        "or m in ('argparse', 'rich', 'click', 'textual', 'prometheus_client', 'http.server')]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_import_portbook_is_lazy() -> None:
    code = "import sys, portbook; print(sorted(m for m in sys.modules if m.startswith('portbook')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['portbook']"


def _imports_only_the_public_api(package_dir: Path, *, allowed: tuple[str, ...]) -> None:
    """Every module in ``package_dir`` imports portbook's public names or ``allowed`` modules."""
    for path in sorted(package_dir.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level >= 2 or (
                    module.startswith("portbook.") and not module.startswith(allowed)
                ):
                    raise AssertionError(f"{path.name}:{node.lineno} imports {module!r}")
                if module == "portbook" and node.level == 0:
                    private = [a.name for a in node.names if a.name not in portbook.__all__]
                    assert private == [], f"{path.name}:{node.lineno} imports {private}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("portbook._") or alias.name.startswith(
                        allowed
                    ), f"{path.name}:{node.lineno} imports {alias.name}"


def test_the_command_line_uses_only_the_public_api() -> None:
    """The CLI is a thin client: it imports portbook's public names, never its private modules.

    It may import the web layer (``portbook._serve``), itself a client of the public API.
    """
    import portbook._cli

    cli_dir = Path(portbook._cli.__file__).parent
    _imports_only_the_public_api(cli_dir, allowed=("portbook._cli", "portbook._serve"))


def test_the_server_and_metrics_use_only_the_public_api() -> None:
    """``portbook serve``/``metrics`` are thin clients too, and need nothing of the CLI."""
    import portbook._serve

    serve_dir = Path(portbook._serve.__file__).parent
    _imports_only_the_public_api(serve_dir, allowed=("portbook._serve",))
