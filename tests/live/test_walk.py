"""The owner walk's shortcuts answer as the plain walk does: refused links, empty tables."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from portbook._live.walk import sizes_known, walk, with_descriptors
from tests.live_helpers import needs_linux, needs_root

pytestmark = needs_linux

# A holder that no process without CAP_SYS_PTRACE may read: not dumpable
# (PR_SET_DUMPABLE 0), so the kernel refuses every link of /proc/PID/fd while
# still letting root list the directory, as it does for some init processes.
_UNDUMPABLE = textwrap.dedent(
    """
    import ctypes, socket, sys
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    print(s.getsockname()[1], flush=True)
    sys.stdin.read()
    """
)

# Runs without CAP_SYS_PTRACE: starts the holder, then walks, and reports.
_WALKER = textwrap.dedent(
    """
    import json, os, subprocess, sys
    from portbook._live.walk import walk
    holder = subprocess.Popen(
        [sys.executable, "-c", sys.argv[1]], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    port = int(holder.stdout.readline())
    names = os.listdir(f"/proc/{holder.pid}/fd")
    try:
        os.readlink(f"/proc/{holder.pid}/fd/{names[0]}")
        readable = True
    except PermissionError:
        readable = False
    single, shared, refused = walk()
    mine = walk(pids=[holder.pid])
    print(json.dumps({
        "pid": holder.pid, "listed": len(names), "readable": readable,
        "refused": refused, "held": [i for i, p in single.items() if p == holder.pid],
        "mine": [list(mine[0]), mine[2]],
    }))
    holder.stdin.close()
    holder.wait()
    """
)


@needs_root
@pytest.mark.root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_a_process_whose_links_are_refused_is_refused_not_skipped() -> None:
    done = subprocess.run(
        ["setpriv", "--bounding-set", "-sys_ptrace", sys.executable, "-c", _WALKER, _UNDUMPABLE],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    # The situation: the directory lists, its links do not read.
    assert seen["listed"] >= 4 and seen["readable"] is False
    assert seen["pid"] in seen["refused"] and seen["held"] == []
    assert seen["mine"] == [[], [seen["pid"]]]


def test_processes_without_descriptors_are_left_out_and_the_rest_kept() -> None:
    weighed = with_descriptors()
    pids = {pid for _, pid in weighed}
    assert os.getpid() in pids
    if sizes_known():
        # kthreadd (pid 2) and its kernel threads have no descriptor table.
        assert all(size > 0 for size, _ in weighed)
        if os.path.exists("/proc/2/fd") and os.stat("/proc/2/fd").st_size == 0:
            assert 2 not in pids
        assert [size for size, _ in weighed] == sorted((s for s, _ in weighed), reverse=True)


def test_the_walk_finds_what_reading_every_link_finds() -> None:
    # The plain way, by whole paths, over the processes of this test only
    # (others come and go meanwhile).
    child = subprocess.Popen(
        [sys.executable, "-c", "import socket, sys; s = socket.socket(); sys.stdin.read()"],
        stdin=subprocess.PIPE,
    )
    try:
        pids = [os.getpid(), child.pid]
        expected: dict[int, set[int]] = {}
        for pid in pids:
            for name in os.listdir(f"/proc/{pid}/fd"):
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{name}")
                except OSError:
                    continue
                if link.startswith("socket:["):
                    expected.setdefault(int(link[8:-1]), set()).add(pid)
        single, shared, refused = walk(pids=pids)
        got = {inode: {pid} for inode, pid in single.items()}
        got.update((inode, set(p)) for inode, p in shared.items())
        assert got == expected and refused == []
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)


# A process with sockets spread over three holders, walked by a helper and
# this process sharing the work (forked here: this script has one thread),
# against the walk of one process alone.
_SHARED = textwrap.dedent(
    """
    import json, os, socket, subprocess, sys
    import portbook._live.owners as owners
    from portbook._live.walk import walk, with_descriptors
    owners._may_fork = lambda: sys.argv[1] == "fork"
    import portbook._live.walk as walk_module
    walk_module.SPLIT_FROM = 16  # the children, 50 sockets each: in two halves
    keep = [socket.socket() for _ in range(200)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", "import socket, sys; k = [socket.socket() for _ in range(50)];"
             " print(flush=True); sys.stdin.read()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    for c in children:
        c.stdout.readline()  # its sockets are open
    pids = [p for _, p in with_descriptors()]
    mine = [p for p in pids if p != os.getpid()]
    weighed = [(w, p) for w, p in with_descriptors() if p != os.getpid()]
    shared = owners.BackgroundWalk(units=walk_module.in_parts(weighed))
    helper = shared._pid
    scan = shared.share(first=(os.getpid(),))
    whole = owners.BackgroundWalk(pids=mine).result()
    alone = walk(pids=pids)
    ours = {os.getpid(), *(c.pid for c in children)}
    def owned(single, shared):
        got = {i: (p,) for i, p in single.items() if p in ours}
        got.update((i, p) for i, p in shared.items() if set(p) & ours)
        return got
    for c in children:
        c.stdin.close()
        c.wait()
    print(json.dumps({
        "helper": helper,
        "shared": sorted(owned(scan.single, scan.shared).items()),
        "whole": sorted(owned(whole.single, whole.shared).items()),
        "alone": sorted(owned(alone[0], alone[1]).items()),
    }))
    """
)


@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_a_walk_shared_with_a_helper_finds_what_one_walk_finds(mode: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SHARED, mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["helper"] > 0  # a helper really ran
    assert seen["shared"] == seen["alone"]
    assert len(seen["alone"]) >= 200 + 3 * 50
    # the helper alone (its whole list) finds the same, but for this process
    assert [s for s in seen["whole"] if s in seen["alone"]] == seen["whole"]


def test_a_process_walked_by_both_sides_stays_a_single_holder() -> None:
    from portbook._live.owners import OwnerScan, merge_scans

    first = OwnerScan(single={1: 10, 2: 10}, shared={}, refused=(7,))
    second = OwnerScan(single={2: 10, 3: 20}, shared={}, refused=(7,))
    merged = merge_scans(first, second)
    assert merged.single == {1: 10, 2: 10, 3: 20} and merged.shared == {}
    assert merged.refused == (7,)


def test_sharing_the_walk_with_a_helper_that_dies_still_walks_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import signal

    from portbook._live import owners

    monkeypatch.setattr(owners, "_may_fork", lambda: False)
    pids = [p for _, p in with_descriptors() if p != os.getpid()]
    walker = owners.BackgroundWalk(pids=pids)
    assert walker._pid > 0
    os.kill(walker._pid, signal.SIGKILL)
    scan = walker.share(first=(os.getpid(),))
    alone = walk(pids=[os.getpid()])
    assert set(alone[0]) <= set(scan.single) | set(scan.shared)


def test_merging_in_place_gives_the_same_scan() -> None:
    from portbook._live.owners import OwnerScan, merge_scans

    def scans() -> tuple[OwnerScan, OwnerScan]:
        return (
            OwnerScan(single={1: 10, 2: 10, 3: 10}, shared={4: (10, 11)}, refused=(7,)),
            OwnerScan(single={2: 20, 5: 20}, shared={3: (20, 21), 4: (22, 23)}, refused=(9,)),
        )

    copied = merge_scans(*scans())
    first, second = scans()
    assert merge_scans(first, second, consume=True) == copied
    assert first.single is merge_scans(first, OwnerScan({}, {}), consume=True).single


# Sockets at descriptor numbers with holes below the count (3 closed) and
# beyond it (dup2 far up), and a process with more holes than the walk reads
# by number before it lists: every socket must be found all the same.
_HOLES = textwrap.dedent(
    """
    import os, socket, sys
    holes = int(sys.argv[1])
    keep = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(60)]
    for s in keep[10 : 10 + holes]:
        s.close()
    far = []
    for i in range(holes):  # sockets of their own, only at numbers above the count
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        far.append(socket.socket(fileno=os.dup2(s.fileno(), 900 + i)))
        s.close()
    held = [s for s in keep + far if s.fileno() >= 0]
    print(" ".join(str(os.fstat(s.fileno()).st_ino) for s in held), flush=True)
    sys.stdin.read()
    """
)


@pytest.mark.parametrize("holes", [0, 3, 40])
@pytest.mark.parametrize("listing", [False, True])
def test_descriptors_are_found_by_number_or_by_listing_with_holes_anywhere(
    holes: int, listing: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from portbook._live import walk as walk_module

    if listing:  # as on a kernel that does not count a process's descriptors
        monkeypatch.setattr(walk_module, "sizes_known", lambda proc="/proc": False)
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLES, str(holes)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        inodes = {int(i) for i in child.stdout.readline().split()}
        single, shared, refused = walk(pids=[child.pid])
        assert inodes == set(single) and shared == {} and refused == []
        assert set(single.values()) == {child.pid}
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)
        assert child.stdout is not None
        child.stdout.close()


@pytest.mark.parametrize("holes", [0, 3, 40])
def test_a_process_read_in_two_halves_gives_what_one_read_gives(
    holes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from portbook._live import walk as walk_module

    monkeypatch.setattr(walk_module, "SPLIT_FROM", 8)
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLES, str(holes)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        inodes = {int(i) for i in child.stdout.readline().split()}
        size = os.stat(f"/proc/{child.pid}/fd").st_size
        units = walk_module.in_parts([(size, child.pid)])
        assert units == [(child.pid, 0, size // 2), (child.pid, size // 2, 0)]
        # each half alone, and both: the halves never overlap but at the listing
        lower = walk_module.walk_units("/proc", units[:1])[0]
        upper = walk_module.walk_units("/proc", units[1:])[0]
        both = walk_module.walk_units("/proc", units)
        assert set(lower) | set(upper) == inodes == set(both[0])
        assert both[1] == {} and both[2] == []
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)
        assert child.stdout is not None
        child.stdout.close()


def test_a_helper_is_started_only_when_a_processor_is_free(tmp_path: Path) -> None:
    from portbook._live.owners import a_core_is_free

    if len(os.sched_getaffinity(0)) < 2:
        assert not a_core_is_free()  # one processor: never a helper
        return
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("0.01 0.02 0.03 1/140 4242\n")  # only this process runs
    assert a_core_is_free(str(loadavg))
    loadavg.write_text("9.00 9.00 9.00 64/140 4242\n")  # every processor busy
    assert not a_core_is_free(str(loadavg))
    loadavg.write_text("garbage\n")
    assert a_core_is_free(str(loadavg))  # unknown: try a helper
    assert a_core_is_free(str(tmp_path / "missing"))


def test_walk_during_with_and_without_a_helper_finds_the_same_holders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from portbook._live import owners

    child = subprocess.Popen(
        [sys.executable, "-c", _HOLES, "3"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        inodes = {int(i) for i in child.stdout.readline().split()}
        monkeypatch.setattr(owners, "_may_fork", lambda: False)  # threads here: spawn
        monkeypatch.setattr(owners, "a_core_is_free", lambda: True)
        monkeypatch.setattr(owners, "HELPER_FROM", 0)
        _, helped = owners.walk_during(lambda: None, work_units=lambda: 0)
        monkeypatch.setattr(owners, "HELPER_FROM", 1 << 40)
        _, alone = owners.walk_during(lambda: None, work_units=lambda: 0)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)
        assert child.stdout is not None
        child.stdout.close()
    assert {i: helped.owners[i] for i in inodes} == {i: alone.owners[i] for i in inodes}
    assert all(alone.owners[i] == [child.pid] for i in inodes)
