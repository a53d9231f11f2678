"""Units and containers from /proc/PID/cgroup: recorded texts, and real processes in cgroups."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from portbook._live.cgroups import (
    Runtime,
    Unit,
    cgroup2_mount,
    cgroup_paths_by_id,
    container_from_cgroup,
    container_from_path,
    parse_cgroup,
    read_cgroup,
    unit_from_cgroup,
    unit_from_path,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "cgroup"

D = "docker"
C = "containerd"
P = "podman"
O = "cri-o"  # noqa: E741

# file -> (unit name, kind, manager, uid, slice, session) or None;
#         (runtime or None, id prefix, pod uid) or None
EXPECTED: dict[str, tuple[tuple[object, ...] | None, tuple[object, ...] | None]] = {
    "host-process-v1hybrid": (None, None),
    "docker-cgroupfs-v1hybrid-container": (None, (D, "ed61252f20c9", None)),
    "docker-cgroupfs-v1hybrid-shim": (None, None),
    "docker-proxy-host": (None, None),
    "podman-rootful-cgroupfs-v1hybrid-container": (None, (P, "71bf93656824", None)),
    "podman-rootful-cgroupfs-v1hybrid-conmon": (None, None),
    "podman-rootless-cgroupfs-v1hybrid-container": (None, None),
    "podman-rootless-conmon": (None, None),
    "podman-rootless-rootlessport": (None, None),
    "ext-docker-systemd-driver-v1-centos": (
        ("docker-9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d.scope",
         "scope", "system", None, "system.slice", None),
        (D, "9ec39b91f3d7", None),
    ),
    "ext-docker-cgroupfs-v1-ubuntu": (None, (D, "31cb02944da7", None)),
    "ext-docker-rancheros-docker-in-docker-v1": (None, (D, "ec08435e0426", None)),
    "ext-docker-cgroupfs-v1-name-systemd-root": (None, (D, "5dace3de0735", None)),
    "ext-docker-cgroupfs-hybrid-systemd-host": (
        ("containerd.service", "service", "system", None, "system.slice", None),
        (D, "2403ccfe427f", None),
    ),
    "ext-dockerd-service-v1": (
        ("docker.service", "service", "system", None, "system.slice", None),
        None,
    ),
    "ext-docker-v2-seen-from-other-cgroupns": (
        ("docker-1f1d6e2d4940ddac13abd421a2617992bf89f0e0f9a902ed58278c5f843e9ae7.scope",
         "scope", "system", None, None, None),
        (D, "1f1d6e2d4940", None),
    ),
    "ext-k8s-docker-v2-seen-from-other-cgroupns": (
        ("docker-2cc65c162ca1388b6b8d5ccfb701d22fc96675ccf8b2f1590c490c2c4039547f.scope",
         "scope", "system", None,
         "kubepods-besteffort-podfd698699_eabf_4c23_92ef_cf0bbdb78261.slice", None),
        (D, "2cc65c162ca1", "fd698699-eabf-4c23-92ef-cf0bbdb78261"),
    ),
    "ext-host-proc1-v2-seen-from-other-cgroupns": (
        ("init.scope", "scope", "system", None, None, None),
        None,
    ),
    "ext-k8s-cgroupfs-v1-besteffort": (
        None,
        (None, "cb1eadb7abe3", "74ba62da-1a3d-11e7-bb11-080027cb0e22"),
    ),
    "ext-k8s-containerd-1.2.13-cgroupfs-v1": (
        None,
        (None, "5dd96d5394ca", "a36d0c1d-0b26-4451-8d80-9c195e004afa"),
    ),
    "ext-k8s-cgroupfs-v1-kube-proxy-subdir": (
        None,
        (None, "c04e0a88a1de", "f8a694f2-7c08-11e9-98da-000c29077430"),
    ),
    "ext-k8s-systemd-docker-v1": (
        ("docker-b5b6f2da8008be266864f896f93789762b2ce50792114a5c5f2cc3315af0bc70.scope",
         "scope", "system", None,
         "kubepods-besteffort-pod045b1e35_7f13_11e7_ac42_0050568ffca0.slice", None),
        (D, "b5b6f2da8008", "045b1e35-7f13-11e7-ac42-0050568ffca0"),
    ),
    "ext-k8s-bottlerocket-cri-containerd-systemd-hybrid": (
        ("cri-containerd-f45298cd514d1930c4fe3afc4412e59547f7e3148fddd22ca33cefce046eb830.scope",
         "scope", "system", None,
         "kubepods-besteffort-poddd1bf9d1_241d_47f5_8e25_12de83135812.slice", None),
        (C, "f45298cd514d", "dd1bf9d1-241d-47f5-8e25-12de83135812"),
    ),
    "ext-k8s-containerd-1.6.4-systemd-v2": (
        ("cri-containerd-25d057a4c6c9555f2a0eb106e8896968c28f1c44aca4754174851aca7f89ad26.scope",
         "scope", "system", None,
         "kubepods-besteffort-pod9493223b_520e_4a97_a45f_359dcf967006.slice", None),
        (C, "25d057a4c6c9", "9493223b-520e-4a97-a45f-359dcf967006"),
    ),
    "ext-k8s-crio-1.19-systemd-v1": (
        ("crio-d6d725b909f37c3e232aadfbafa950a58bfe7baa579ba8c47a12be88bb921607.scope",
         "scope", "system", None,
         "kubepods-besteffort-pod8ca306fa_3c03_47fa_97dd_19979c345572.slice", None),
        (O, "d6d725b909f3", "8ca306fa-3c03-47fa-97dd-19979c345572"),
    ),
    "ext-k8s-crio-1.17-systemd-v1-burstable": (
        ("crio-7a1fd6fe8cdfbd44dc78c4cc85dad7031eaab4365801684cad0aabdeaf863f9e.scope",
         "scope", "system", None,
         "kubepods-burstable-pod487a0dc6dccaeefbcfedba7a7ce1ca18.slice", None),
        (O, "7a1fd6fe8cdf", "487a0dc6dccaeefbcfedba7a7ce1ca18"),
    ),
    "ext-k8s-containerd-1.4.4-systemd-misconfig-v1": (
        ("containerd.service", "service", "system", None, "system.slice", None),
        (C, "d3d8ccf5cca9", "2105e389-7471-476e-a50f-6074cef29bbd"),
    ),
    "ext-host-process-v1-name-dsystemd": (None, None),
    "ext-systemd-service-nginx-v2": (
        ("nginx.service", "service", "system", None, "system.slice", None),
        None,
    ),
    "ext-systemd-init-scope-v2": (("init.scope", "scope", "system", None, None, None), None),
    "ext-user-app-vte-spawn-scope-v2": (
        ("vte-spawn-d48a4976-89a3-4aac-96b6-b783b46a6113.scope", "scope", "user", 1000, None,
         None),
        None,
    ),
    "ext-user-app-slice-gnome-scope-v2": (
        ("app-gnome-kitty-3842.scope", "scope", "user", 1000, "app.slice", None),
        None,
    ),
    "ext-user-ssh-session-scope-v2": (
        ("session-3.scope", "scope", "system", 1000, "user-1000.slice", "3"),
        None,
    ),
    "ext-podman-unshare-user-scope-v2": (
        ("podman-6696.scope", "scope", "user", 1000, "user.slice", None),
        None,
    ),
    "ext-podman-systemd-libpod-container-v2": (
        ("libpod-cf21d19260ace8544fe8b769fc2638bf2c0873dfbfff0b6253f0569b26a1d5eb.scope",
         "scope", "user", 0, "machine.slice", None),
        (P, "cf21d19260ac", None),
    ),
    "ext-user-session-hybrid-systemd232": (
        ("session-1.scope", "scope", "system", 1000, "user-1000.slice", "1"),
        None,
    ),
    "ext-user-session-v1-systemd231": (
        ("session-1.scope", "scope", "system", 1000, "user-1000.slice", "1"),
        None,
    ),
    "ext-systemd-proc1-hybrid-init-scope": (
        ("init.scope", "scope", "system", None, None, None),
        None,
    ),
    "ext-systemd-proc1-hybrid-minimal": (("init.scope", "scope", "system", None, None, None), None),
}  # fmt: skip


def test_every_fixture_has_an_expectation_and_a_source() -> None:
    files = {p.stem for p in FIXTURES.glob("*.cgroup")}
    assert files == set(EXPECTED)
    sources = (FIXTURES / "SOURCES.md").read_text()
    for name in files:
        assert f"`{name}.cgroup`" in sources, name


def _unit_tuple(unit: Unit | None) -> tuple[object, ...] | None:
    if unit is None:
        return None
    return (unit.name, unit.kind, unit.manager, unit.uid, unit.slice, unit.session)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_cgroup_texts_name_their_unit_and_container(name: str) -> None:
    paths = parse_cgroup((FIXTURES / f"{name}.cgroup").read_text())
    want_unit, want_container = EXPECTED[name]
    assert _unit_tuple(unit_from_cgroup(paths)) == want_unit
    found = container_from_cgroup(paths)
    if want_container is None:
        assert found is None
        return
    assert found is not None
    runtime, prefix, pod_uid = want_container
    assert (found.runtime, found.id[:12], found.pod_uid) == (
        Runtime(str(runtime)) if runtime else None,
        prefix,
        pod_uid,
    )
    assert len(found.id) == 64


def test_parse_keeps_every_line_and_picks_the_unified_and_systemd_ones() -> None:
    paths = parse_cgroup((FIXTURES / "ext-systemd-proc1-hybrid-init-scope.cgroup").read_text())
    assert paths.unified == "/init.scope"
    assert paths.systemd == "/init.scope"
    assert len(paths.lines) == 14
    assert ("cpu,cpuacct", "/init.scope") in paths.lines
    assert parse_cgroup("0::/\n").unified == "/"
    assert parse_cgroup("garbage\n\n3:x\n").lines == ()


def test_conmon_scopes_are_not_the_container() -> None:
    ident = "a" * 64
    assert container_from_path(f"/machine.slice/libpod-conmon-{ident}.scope") is None
    assert container_from_path(f"/kubepods.slice/crio-conmon-{ident}.scope") is None
    found = container_from_path(f"/machine.slice/libpod-{ident}.scope")
    assert found is not None and found.runtime is Runtime.PODMAN


def test_a_slice_unit_names_its_parent_slice() -> None:
    unit = unit_from_path("/user.slice/user-1000.slice")
    assert unit is not None
    assert (unit.name, unit.kind, unit.slice, unit.uid) == (
        "user-1000.slice",
        "slice",
        "user.slice",
        1000,
    )
    manager = unit_from_path("/user.slice/user-1000.slice/user@1000.service")
    assert manager is not None
    assert (manager.name, manager.manager, manager.uid) == ("user@1000.service", "system", 1000)
    assert unit_from_path("/") is None
    assert unit_from_path("/docker/" + "b" * 64) is None


# -- real processes in real cgroup directories -------------------------------------------------

needs_root_linux = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0, reason="needs root on Linux"
)


def _hierarchies() -> list[Path]:
    """The mounted hierarchies a test may make directories in: name=systemd (v1) and cgroup v2."""
    found = []
    systemd = Path("/sys/fs/cgroup/systemd")
    if (systemd / "cgroup.procs").exists():
        found.append(systemd)
    unified = cgroup2_mount()
    if unified is not None:
        found.append(Path(unified))
    return found


class CgroupPlace:
    """Directories made under each hierarchy for one relative path; removed at the end."""

    def __init__(self, relative: str) -> None:
        self.relative = relative
        self.made: list[Path] = []
        self.leaves: list[Path] = []

    def make(self, roots: list[Path]) -> None:
        for root in roots:
            current = root
            for part in self.relative.strip("/").split("/"):
                current = current / part
                if not current.exists():
                    current.mkdir()
                    self.made.append(current)
            self.leaves.append(current)

    def enter(self, pid: int) -> None:
        for leaf in self.leaves:
            (leaf / "cgroup.procs").write_text(str(pid))

    def remove(self) -> None:
        for directory in reversed(self.made):
            # Shared parents (system.slice) may hold another test's cgroup: leave them.
            with contextlib.suppress(OSError):
                directory.rmdir()


@dataclass
class Placed:
    """A child process moved into one cgroup path in every hierarchy."""

    child: subprocess.Popen[bytes]
    leaves: list[Path]

    @property
    def pid(self) -> int:
        return self.child.pid

    def listen(self) -> int:
        """Have the child open a listener (from inside its cgroup); its port."""
        assert self.child.stdin is not None and self.child.stdout is not None
        self.child.stdin.write(b"go\n")
        self.child.stdin.flush()
        return int(self.child.stdout.readline())


class Places:
    """``enter(relative)`` makes the directories and moves a new child into them."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots = roots
        self.places: list[CgroupPlace] = []
        self.children: list[subprocess.Popen[bytes]] = []

    def enter(self, relative: str) -> Placed:
        place = CgroupPlace(relative)
        self.places.append(place)
        try:
            place.make(self.roots)
        except OSError as exc:
            pytest.skip(f"cannot make cgroup directories here: {exc}")
        child = subprocess.Popen(
            [sys.executable, "-c", _LISTENER], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self.children.append(child)
        place.enter(child.pid)
        return Placed(child, place.leaves)

    def close(self) -> None:
        for child in self.children:
            child.kill()
            child.wait()
            for stream in (child.stdin, child.stdout):
                if stream is not None:
                    stream.close()
        for place in self.places:
            for _ in range(50):
                place.remove()
                if not any(d.exists() for d in place.leaves):
                    break
                time.sleep(0.02)  # the kernel empties a cgroup a moment after the exit


@pytest.fixture
def cgroups() -> Iterator[Places]:
    roots = _hierarchies()
    if not roots:
        pytest.skip("no writable cgroup hierarchy (name=systemd or cgroup v2) is mounted")
    places = Places(roots)
    try:
        yield places
    finally:
        places.close()


# The child waits for a line, then opens a listener (in its cgroup by then) and prints its port.
_LISTENER = (
    "import socket, sys, time\n"
    "sys.stdin.readline()\n"
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
    "print(s.getsockname()[1], flush=True)\n"
    "time.sleep(60)\n"
)


UNIT_CASES = [
    ("system.slice/portbook-test-{tag}.service", ("portbook-test-{tag}.service", "service",
                                                   "system", None, "system.slice", None), None),
    ("user.slice/user-4242.slice/user@4242.service/app.slice/portbook-test-{tag}.scope",
     ("portbook-test-{tag}.scope", "scope", "user", 4242, "app.slice", None), None),
    ("user.slice/user-4242.slice/session-pt{tag}.scope",
     ("session-pt{tag}.scope", "scope", "system", 4242, "user-4242.slice", "pt{tag}"), None),
    ("docker/{id}", None, ("docker", "{id}")),
    ("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234abcd_0000_4000_8000_"
     "{tag}00000000.slice/cri-containerd-{id}.scope",
     ("cri-containerd-{id}.scope", "scope", "system", None,
      "kubepods-burstable-pod1234abcd_0000_4000_8000_{tag}00000000.slice", None),
     ("containerd", "{id}")),
]  # fmt: skip


@needs_root_linux
@pytest.mark.root
@pytest.mark.parametrize(("relative", "want_unit", "want_container"), UNIT_CASES)
def test_a_real_process_in_a_real_cgroup_shows_its_unit_and_container(
    cgroups: Places,
    relative: str,
    want_unit: tuple[object, ...] | None,
    want_container: tuple[str, str] | None,
) -> None:
    tag = secrets.token_hex(2)
    ident = secrets.token_hex(32)

    def fill(value: object) -> object:
        return value.format(tag=tag, id=ident) if isinstance(value, str) else value

    placed = cgroups.enter(str(fill(relative)))
    paths = read_cgroup(placed.pid)
    assert paths is not None
    hierarchies = {str(root) for root in cgroups.roots}
    if "/sys/fs/cgroup/systemd" in hierarchies:
        assert paths.systemd == "/" + str(fill(relative))
    if cgroup2_mount() in hierarchies:
        assert paths.unified == "/" + str(fill(relative))
    want = tuple(fill(v) for v in want_unit) if want_unit is not None else None
    assert _unit_tuple(unit_from_cgroup(paths)) == want
    found = container_from_cgroup(paths)
    if want_container is None:
        assert found is None
    else:
        assert found is not None
        assert (found.runtime, found.id) == (Runtime(want_container[0]), ident)


@needs_root_linux
@pytest.mark.root
def test_a_cgroup_id_from_sock_diag_names_the_cgroup_that_made_the_socket(
    cgroups: Places,
) -> None:
    """INET_DIAG_CGROUP_ID is the creating task's cgroup v2 directory inode."""
    from portbook._live.cgroup_ids import socket_cgroup_ids

    mount = cgroup2_mount()
    if mount is None or Path(mount) not in cgroups.roots:
        pytest.skip("no cgroup v2 hierarchy mounted")
    relative = f"system.slice/portbook-test-{secrets.token_hex(3)}.service"
    placed = cgroups.enter(relative)
    unified_leaf = next(leaf for leaf in placed.leaves if str(leaf).startswith(mount))
    inode = _listener_inode(placed.pid, placed.listen())
    ids = socket_cgroup_ids()
    assert ids[inode] == unified_leaf.stat().st_ino
    assert cgroup_paths_by_id({ids[inode]}) == {ids[inode]: "/" + relative}
    # A socket made by this test (in its own cgroup) carries that cgroup's id.
    with socket.socket() as own:
        own.bind(("127.0.0.1", 0))
        own.listen()
        mine = socket_cgroup_ids()[os.fstat(own.fileno()).st_ino]
    own_paths = read_cgroup(os.getpid())
    assert own_paths is not None and own_paths.unified is not None
    assert mine == (Path(mount) / own_paths.unified.lstrip("/")).stat().st_ino


def _listener_inode(pid: int, port: int) -> int:
    from portbook import list_sockets

    for s in list_sockets(port=port, listening=True):
        if any(p.pid == pid for p in s.processes):
            return s.inode
    raise AssertionError(f"no listener of {pid} on {port}")


@needs_root_linux
@pytest.mark.root
def test_the_live_table_names_each_holders_unit_and_container(cgroups: Places) -> None:
    """Real processes in real cgroups, read through the live table's own steps."""
    from portbook._live.backends.base import TableQuery
    from portbook._live.backends.netlink import NetlinkBackend
    from portbook._live.behind import look_behind
    from portbook._live.build import build_sockets
    from portbook._live.owners import scan_all
    from portbook._live.processes import process_details
    from portbook._machine import local_ranges

    tag, ident = secrets.token_hex(2), secrets.token_hex(32)
    service = cgroups.enter(f"system.slice/portbook-test-{tag}.service")
    contained = cgroups.enter(f"docker/{ident}")
    ports = {service.pid: service.listen(), contained.pid: contained.listen()}
    rows = [
        r
        for port in ports.values()
        for r in NetlinkBackend().sockets(TableQuery(frozenset({"tcp"}), ports=(port, port)))
    ]
    scan = scan_all()
    details = process_details(sorted(ports))
    looked = look_behind([(None, rows)], scan, details, containers=True, units=True)
    assert looked is not None
    built = build_sockets(rows, scan=scan, processes=details, ranges=local_ranges(), behind=looked)
    by_port = {s.local_port: s for s in built}
    s = by_port[ports[service.pid]]
    assert s.unit is not None and s.unit.name == f"portbook-test-{tag}.service"
    assert s.processes[0].unit == s.unit and s.container is None
    assert s.to_json()["unit"]["name"] == s.unit.name
    c = by_port[ports[contained.pid]]
    assert c.container is not None and (c.container.runtime, c.container.id) == (
        Runtime.DOCKER,
        ident,
    )
    assert c.processes[0].container == c.container
    # Told that nothing can be known here, it reads nothing at all.
    assert look_behind([(None, rows)], scan, details, containers=False, units=False) is None


_AS_NOBODY = """
import encodings.ascii, ipaddress, json, os, pwd, sys
import portbook._live.behind, portbook._live.cgroup_ids, portbook._live.cgroups
import portbook._live.containers, portbook._live.runtimes, portbook._live.records
import portbook._live.processes, portbook._proc, portbook._machine
from portbook._live.backends.base import TableQuery
from portbook._live.backends.netlink import NetlinkBackend
from portbook._live.behind import look_behind
from portbook._live.build import build_sockets
from portbook._live.owners import scan_all
from portbook._live.processes import process_details
from portbook._machine import local_ranges
ports = [int(p) for p in sys.argv[1:]]
os.setgroups([]); os.setgid(65534); os.setuid(65534)
queries = [TableQuery(frozenset({"tcp"}), ports=(p, p)) for p in ports]
rows = [r for q in queries for r in NetlinkBackend().sockets(q)]
scan = scan_all()
details = process_details(sorted({p for pids in scan.owners.values() for p in pids}))
looked = look_behind([(None, rows)], scan, details, containers=True, units=True, queries=queries)
built = build_sockets(rows, scan=scan, processes={}, ranges=local_ranges(), behind=looked,
                      viewer_uid=65534)
print(json.dumps({s.local_port: [s.unit.name if s.unit else None,
                                 s.container.id if s.container else None,
                                 len(s.processes), s.owner_note] for s in built}))
"""


@needs_root_linux
@pytest.mark.root
def test_without_root_the_cgroup_that_made_a_socket_names_its_unit_and_container(
    cgroups: Places,
) -> None:
    """No holder is visible to another user, and still the socket's cgroup id names them."""
    import json

    mount = cgroup2_mount()
    if mount is None or Path(mount) not in cgroups.roots:
        pytest.skip("no cgroup v2 hierarchy mounted")
    tag, ident = secrets.token_hex(2), secrets.token_hex(32)
    service = cgroups.enter(f"system.slice/portbook-test-{tag}.service")
    contained = cgroups.enter(f"docker/{ident}")
    sport, cport = service.listen(), contained.listen()
    done = subprocess.run(
        [sys.executable, "-c", _AS_NOBODY, str(sport), str(cport)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen[str(sport)] == [
        f"portbook-test-{tag}.service",
        None,
        0,
        "not visible without root",
    ]
    assert seen[str(cport)][1:3] == [ident, 0]
