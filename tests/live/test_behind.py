"""On a machine with no container, no systemd and no other namespace, ls reads nothing more.

The container, unit and namespace steps are gated by cheap tests (runtime state
directories, /run/systemd/system, namespace files); such a machine is made here as
a private mount and network namespace with an empty /run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.linux, pytest.mark.root]

_COLD_LS = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
    from portbook._cli import main
    status = main(["ls", "--port", str(s.getsockname()[1])])
    later = ("portbook._live.behind", "portbook._live.containers", "portbook._live.cgroups",
             "portbook._live.netns", "portbook._live.spaces", "portbook._live.published",
             "portbook._live.runtimes")
    print("LOADED", status, [m for m in later if m in sys.modules])
    """
)


def test_without_containers_systemd_or_namespaces_ls_loads_none_of_their_readers() -> None:
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("makes a mount and network namespace (root)")
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux)")
    script = f"mount -t tmpfs portbook-test /run && exec {sys.executable} -c '{_COLD_LS}'"
    done = subprocess.run(
        ["unshare", "--mount", "--net", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0 and "unshare" in done.stderr:
        pytest.skip(f"cannot make namespaces here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip().splitlines()[-1]
    assert line == "LOADED 0 []", done.stdout
    assert "portbook: note" not in done.stderr
