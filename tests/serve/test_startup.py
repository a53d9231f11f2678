"""Only `serve` and `metrics` pay for prometheus_client and the web layer."""

from __future__ import annotations

import subprocess
import sys

import pytest

WEB = ("prometheus_client", "portbook._serve", "http.server", "playwright")


def _loaded_after(argv: list[str]) -> list[str]:
    code = (
        "import sys, io, contextlib\n"
        "from portbook._cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        f"    main({argv!r})\n"
        f"print('LOADED', sorted(m for m in sys.modules if m.startswith({WEB!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return list(eval(out.stdout.strip().splitlines()[-1].removeprefix("LOADED ")))


@pytest.mark.parametrize("argv", [["ls"], ["ls", "--json"], ["lookup", "443"], ["--help"]])
def test_other_commands_import_no_web_code(argv: list[str]) -> None:
    assert _loaded_after(argv) == []


def test_metrics_does_import_it() -> None:
    loaded = _loaded_after(["metrics"])
    assert "prometheus_client" in loaded and "portbook._serve.metrics" in loaded
