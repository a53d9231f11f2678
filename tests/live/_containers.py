"""Real containers and network namespaces for the tests: start, wait, find, remove.

Every container is made from the local busybox image that .ci/setup.d/30-containers.sh
imports (no image registry), publishes to a port its runtime picks on 127.0.0.1 (never a
fixed port), and is removed at the end. When CI is set, a missing runtime, image or user
fails the test instead of skipping it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

IMAGE = os.environ.get("PORTBOOK_TEST_IMAGE", "portbook-test/busybox")
ROOTLESS_USER = os.environ.get("PORTBOOK_TEST_ROOTLESS_USER", "portbook-rl")
HTTPD = ("busybox", "httpd", "-f", "-p", "80", "-h", "/www")
# Rootful Podman must lower these limits itself where root lacks CAP_SYS_RESOURCE (runc
# otherwise fails to set RLIMIT_NOFILE above the current hard limit).
PODMAN_LIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
DOCKER_LOCK = os.path.join(
    "/run/lock" if os.path.isdir("/run/lock") else "/tmp", "portbook-test-dockerd.lock"
)
DOCKERD_LOG = "/var/log/portbook-dockerd.log"


def missing(reason: str) -> None:
    """Fail under CI, skip otherwise."""
    if os.environ.get("CI"):
        pytest.fail(f"CI: {reason}")
    pytest.skip(reason)


def need_root_linux() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("containers are Linux only")
    if os.geteuid() != 0:
        missing("the container tests run as root (they start containers and read runtime state)")


def run(*argv: str, timeout: float = 60, check: bool = True) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


@dataclass
class Running:
    """A container a test started: its runtime's view of it."""

    runtime: str
    name: str
    id: str
    pid: int
    host_port: int
    address: str | None
    user: str | None = None


def _port_of(text: str) -> int:
    # "127.0.0.1:41615" (one line per binding)
    return int(text.strip().splitlines()[0].rpartition(":")[2])


# -- Docker ------------------------------------------------------------------------------------


def docker_ready() -> None:
    need_root_linux()
    if shutil.which("docker") is None or shutil.which("dockerd") is None:
        missing("Docker is not installed (docker.io)")
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        missing("dockerd is not running (.ci/setup.d/30-containers.sh starts it)")
    if subprocess.run(
        ["docker", "image", "inspect", IMAGE], capture_output=True, check=False
    ).returncode:
        missing(f"no Docker image {IMAGE} (.ci/setup.d/30-containers.sh imports it)")


@contextlib.contextmanager
def docker_lock(exclusive: bool) -> Iterator[None]:
    """Tests that need dockerd as it is share this lock; one that restarts it holds it alone.

    Docker is checked once the lock is held: checked before, it may be a
    dockerd another test is just restarting (no image yet, or no daemon).
    """
    with open(DOCKER_LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            docker_ready()
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def docker_container(*publish: str) -> Iterator[Running]:
    """A busybox httpd in Docker publishing container port 80 (and ``publish`` more)."""
    name = f"portbook-test-{secrets.token_hex(4)}"
    flags = ["-p", "127.0.0.1::80"]
    for extra in publish:
        flags += ["-p", extra]
    ident = run("docker", "run", "-d", "--name", name, *flags, IMAGE, *HTTPD).strip()
    try:
        inspect = run(
            "docker", "inspect", "-f",
            "{{.State.Pid}} {{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name,
        ).split()  # fmt: skip
        port = _port_of(run("docker", "port", name, "80/tcp"))
        yield Running("docker", name, ident, int(inspect[0]), port, inspect[1] or None)
    finally:
        run("docker", "rm", "-f", name, check=False)


def dockerd_argv() -> list[str]:
    pid = int(run("pgrep", "-x", "-o", "dockerd").split()[0])
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return [a.decode() for a in fh.read().split(b"\0") if a]


def restart_dockerd(argv: list[str]) -> None:
    """Stop the running dockerd and start ``argv`` in its place (a few seconds)."""
    pid = int(run("pgrep", "-x", "-o", "dockerd").split()[0])
    os.kill(pid, 15)
    deadline = time.monotonic() + 30
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.1)
    # setsid -f: the daemon is no child of this test (nothing to reap, nothing left waiting).
    with open(DOCKERD_LOG, "ab") as log:
        subprocess.run(
            ["setsid", "-f", *argv], stdout=log, stderr=log, stdin=subprocess.DEVNULL, check=True
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"dockerd did not come back; see {DOCKERD_LOG}")


@contextlib.contextmanager
def dockerd_without_userland_proxy() -> Iterator[None]:
    """dockerd restarted with ``--userland-proxy=false``, and restarted as it was afterwards."""
    before = dockerd_argv()
    if "--userland-proxy=false" in before:
        yield
        return
    restart_dockerd([*before, "--userland-proxy=false"])
    try:
        yield
    finally:
        restart_dockerd(before)


# -- Podman ------------------------------------------------------------------------------------


def podman_ready(user: str | None = None) -> None:
    need_root_linux()
    if shutil.which("podman") is None:
        missing("Podman is not installed (podman)")
    if user is not None:
        try:
            pwd.getpwnam(user)
        except KeyError:
            missing(f"no rootless Podman user {user} (.ci/setup.d/30-containers.sh makes it)")
    if podman(user, "image", "exists", IMAGE, check=False) is None:
        missing(f"no Podman image {IMAGE} for {user or 'root'} (.ci/setup.d/30-containers.sh)")


def podman(user: str | None, *args: str, check: bool = True) -> str | None:
    """``podman ARGS`` as root or, rootless, as ``user`` (in a login shell, as Podman needs)."""
    if user is None:
        argv = ["podman", *args]
    else:
        entry = pwd.getpwnam(user)
        quoted = " ".join(_quote(a) for a in args)
        argv = ["su", "-", user, "-c",
                f"export XDG_RUNTIME_DIR=/run/user/{entry.pw_uid}; podman {quoted}"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        if check:
            raise AssertionError(f"podman {' '.join(args)} failed: {done.stderr.strip()}")
        return None
    return done.stdout


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


@contextlib.contextmanager
def podman_container(user: str | None = None) -> Iterator[Running]:
    """A busybox httpd in rootful Podman (or ``user``'s rootless one) publishing port 80."""
    name = f"portbook-test-{secrets.token_hex(4)}"
    limits = PODMAN_LIMITS if user is None else ()
    out = podman(user, "run", "-d", "--name", name, *limits, "-p", "127.0.0.1::80", IMAGE, *HTTPD)
    assert out is not None
    ident = out.strip().splitlines()[-1]
    try:
        pid = int((podman(user, "inspect", "-f", "{{.State.Pid}}", name) or "0").strip())
        address = podman(user, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name) or ""
        port = _port_of(podman(user, "port", name, "80/tcp") or "")
        yield Running("podman", name, ident, pid, port, address.strip() or None, user)
    finally:
        podman(user, "rm", "-f", "-t", "0", name, check=False)


# -- network namespaces ------------------------------------------------------------------------


@contextlib.contextmanager
def named_netns() -> Iterator[str]:
    """A network namespace made with ``ip netns add``, loopback up; deleted at the end."""
    need_root_linux()
    if shutil.which("ip") is None:
        missing("needs ip (iproute2)")
    name = f"portbook-test-{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {made.stderr.strip()}")
    try:
        run("ip", "-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        run("ip", "netns", "delete", name, check=False)


LISTEN_AND_WAIT = (
    "import socket, sys, time\n"
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
    "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 0))\n"
    "print(s.getsockname()[1], u.getsockname()[1], flush=True)\n"
    "time.sleep(120)\n"
)


@contextlib.contextmanager
def server_in(netns: str) -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    """A TCP listener and a bound UDP socket on 127.0.0.1 inside ``netns``: (process, tcp, udp)."""
    child = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-c", LISTEN_AND_WAIT],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        tcp, udp = (int(p) for p in child.stdout.readline().split())
        yield child, tcp, udp
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


# -- what portbook's commands say about them ---------------------------------------------------


def _cli_json(*argv: str) -> tuple[int, object, str]:
    """``portbook ARGV --json`` in this process: (exit status, parsed output, stderr)."""
    import json

    from tests.conftest import run_cli

    result = run_cli(*argv, "--json")
    return (
        result.status,
        json.loads(result.stdout) if result.stdout.strip() else None,
        result.stderr,
    )


def check_published(c: Running, by: str) -> None:
    """who, ls --netns all, route and kill on ``c``'s published port, as a user runs them.

    ``who PORT --json`` names the helper ``by`` that holds the port, the container and
    the process listening inside; ``ls --netns all`` lists that listener in the
    container's namespace; ``route`` follows the port into the container and reaches the
    listener; ``kill`` refuses to signal the helper (and signals nothing), naming the
    container and the command that stops it.
    """
    status, sockets, err = _cli_json("who", str(c.host_port))
    assert status == 0, err
    assert isinstance(sockets, list)
    held = [s for s in sockets if s["local_address"] == "127.0.0.1" and s["state"] == "LISTEN"]
    assert len(held) == 1, sockets
    s = held[0]
    assert [p["name"] for p in s["processes"]] == [by]
    assert (s["container"]["runtime"], s["container"]["id"]) == (c.runtime, c.id)
    assert s["container"]["name"] == c.name
    published = s["published"]
    assert (published["by"], published["holder"]) == (by, s["processes"][0]["pid"])
    assert published["container"]["id"] == c.id
    assert published["target"]["port"] == 80
    if c.address is not None and by != "rootlessport":
        assert published["target"]["address"] == c.address
    assert [p["pid"] for p in published["target"]["processes"]] == [c.pid]
    assert published["target"]["processes"][0]["container"]["id"] == c.id
    _check_listed_inside(c)
    _check_routed(c)
    _check_kill_refused(c, by, s["processes"][0]["pid"])


def _check_listed_inside(c: Running) -> None:
    status, sockets, err = _cli_json("ls", "--netns", "all", "--tcp")
    assert status == 0, err
    assert isinstance(sockets, list)
    inside = [
        s
        for s in sockets
        if s["netns"] is not None
        and s["netns"]["kind"] == "container"
        and (s["netns"]["container"] or {}).get("id") == c.id
    ]
    assert inside, f"no socket in {c.name}'s namespace"
    listener = next(s for s in inside if s["local_port"] == 80)
    assert [p["pid"] for p in listener["processes"]] == [c.pid]
    assert listener["container"]["id"] == c.id
    assert listener["netns"]["name"] == c.name
    # The helper's socket is the host's, not the container's (rootlessport's main thread
    # sits in the container's namespace, its socket does not).
    host = [s for s in sockets if s["local_port"] == c.host_port]
    assert host and all(s["netns"]["kind"] == "host" for s in host)


def _check_routed(c: Running) -> None:
    status, answer, err = _cli_json("route", "tcp", f"127.0.0.1:{c.host_port}")
    assert status == 0, err
    assert isinstance(answer, dict)
    assert answer["rule"] == "exact-listener"
    assert answer["published"]["container"]["id"] == c.id
    inside = answer["inside"]
    assert inside is not None, answer
    assert inside["rule"] == "wildcard-listener"
    assert inside["destination"]["port"] == 80
    assert [p["pid"] for p in inside["socket"]["processes"]] == [c.pid]
    assert inside["netns"]["container"]["id"] == c.id


def _check_kill_refused(c: Running, by: str, holder: int) -> None:
    from tests.conftest import run_cli

    # tcp/: Docker may publish another container port as the same number on UDP.
    result = run_cli("kill", f"tcp/{c.host_port}", "--yes")
    assert result.status == 1
    assert f"refusing to signal pid {holder} ({by})" in result.stderr, result.stderr
    assert f"for container {c.name}" in result.stderr
    how = f"podman stop {c.name}" if c.runtime == "podman" else f"docker stop {c.name}"
    assert how in result.stderr and "nothing was signalled" in result.stderr
    if c.user is not None:
        assert f"as user {c.user}" in result.stderr
    assert os.path.exists(f"/proc/{holder}")
    assert os.path.exists(f"/proc/{c.pid}")
