"""`who` at scale: every holder, even one a socket was passed to, among 20,000 other sockets.

A listener is created in a network namespace of the test's own by a process
that also holds 20,000 UDP sockets; it hands the listener over a Unix socket
(SCM_RIGHTS) to a process it is not related to (a sibling: neither is the
other's parent) and closes its own copy. `portbook who PORT`, run in that
namespace, must name the receiver as the listener's only holder and agree
with `ss`. The walk of that many descriptors is shared with a helper
process; nothing may stop it early.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.live_helpers import needs_linux, needs_root, needs_ss

pytestmark = [
    needs_linux,
    needs_root,
    needs_ss,
    pytest.mark.root,
    pytest.mark.netns,
    pytest.mark.slow,
]

OTHERS = 20_000

# Receives one descriptor over the Unix socket at argv[1] and holds it.
_RECEIVER = textwrap.dedent(
    """
    import array, os, socket, sys
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sys.argv[1])
    server.listen(1)
    server.settimeout(120)  # a scene that failed never connects
    print("listening", flush=True)
    conn, _ = server.accept()
    fds = array.array("i")
    _, ancillary, _, _ = conn.recvmsg(1, socket.CMSG_SPACE(fds.itemsize))
    level, kind, data = ancillary[0]
    assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
    fds.frombytes(data[: fds.itemsize])
    held = socket.socket(fileno=fds[0])
    conn.close()
    server.close()
    print("holding", held.getsockname()[1], flush=True)
    sys.stdin.read()
    """
)

# Opens argv[1] bound UDP sockets on loopback and holds them.
_CROWD = textwrap.dedent(
    """
    import resource, socket, sys
    count = int(sys.argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 256), hard))
    crowd = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        crowd.append(s)
    print("ready", flush=True)
    sys.stdin.read()
    """
)

# In a new network namespace: a listener, 20,000 UDP sockets in two other processes, the listener
# sent to the receiver and closed here; then portbook and ss in the namespace.
_SCENE = textwrap.dedent(
    """
    import ctypes, json, os, socket, subprocess, sys
    path, others, CROWD, portbook = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    if ctypes.CDLL(None, use_errno=True).unshare(0x40000000) != 0:  # CLONE_NEWNET
        sys.exit(f"unshare: {os.strerror(ctypes.get_errno())}")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    # The crowd in two processes of 10,000 each: a process may not hold
    # 20,000 descriptors where the hard limit is 20,000 and cannot be raised.
    crowd = [
        subprocess.Popen([sys.executable, "-c", CROWD, str(others // 2)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    for worker in crowd:
        assert worker.stdout.readline().strip() == b"ready"
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.connect(path)
    unix.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                           listener.fileno().to_bytes(4, sys.byteorder))])
    unix.close()
    listener.close()
    print(json.dumps({"port": port, "pid": os.getpid()}), flush=True)
    sys.stdin.readline()  # the receiver holds it now
    # tcp/: a crowd socket may have the same port number in UDP.
    who = subprocess.run([*portbook, "who", f"tcp/{port}", "--json"],
                         capture_output=True, text=True)
    table = subprocess.run(["ss", "-Htuan"], capture_output=True, text=True, check=True)
    ss = subprocess.run(["ss", "-Htlnp", f"sport = :{port}"], capture_output=True, text=True)
    print(json.dumps({"status": who.returncode, "who": who.stdout, "err": who.stderr,
                      "sockets": len(table.stdout.splitlines()), "ss": ss.stdout}), flush=True)
    sys.stdin.read()
    for worker in crowd:
        worker.stdin.close()
        worker.wait()
    """
)


def test_who_finds_a_passed_socket_among_20000_others(tmp_path: Path) -> None:
    if shutil.which("ip") is None:
        pytest.skip("needs ip (iproute2)")
    path = str(tmp_path / "pass.sock")
    receiver = subprocess.Popen(
        [sys.executable, "-c", _RECEIVER, path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    scene: subprocess.Popen[str] | None = None
    try:
        assert receiver.stdout is not None and receiver.stdin is not None
        assert receiver.stdout.readline().strip() == "listening"
        portbook = [sys.executable, "-m", "portbook"]
        scene = subprocess.Popen(
            [sys.executable, "-c", _SCENE, path, str(OTHERS), _CROWD, *portbook],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert scene.stdout is not None and scene.stdin is not None
        line = scene.stdout.readline()
        if not line:
            scene.wait(timeout=60)
            pytest.fail(f"the scene could not be set up (status {scene.returncode})")
        started = json.loads(line)
        holding = receiver.stdout.readline().split()
        assert holding == ["holding", str(started["port"])]
        scene.stdin.write("go\n")
        scene.stdin.flush()
        seen = json.loads(scene.stdout.readline())
    finally:
        for child in (scene, receiver):
            if child is not None:
                assert child.stdin is not None and child.stdout is not None
                child.stdin.close()
                try:
                    child.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
                child.stdout.close()
    assert seen["status"] == 0, seen["err"]
    assert seen["sockets"] >= OTHERS + 1  # the crowd is really there
    (listener,) = json.loads(seen["who"])
    assert listener["state"] == "LISTEN"
    assert [p["pid"] for p in listener["processes"]] == [receiver.pid]
    # Unrelated: neither process is the other's parent.
    assert receiver.pid != started["pid"] and os.getpid() not in (receiver.pid, started["pid"])
    # ss, reading every process's descriptors too, names the same holder.
    assert f"pid={receiver.pid}," in seen["ss"] and f"pid={started['pid']}," not in seen["ss"]
