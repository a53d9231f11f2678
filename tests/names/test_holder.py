"""Lease holders: a process is its pid and its start time."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from portbook import Holder, NotFoundError, UsageError
from portbook._names.holder import (
    UNKNOWN_START,
    holder_alive,
    holder_for,
    process_start_time,
    this_process,
)


def test_own_start_time_is_stable() -> None:
    first = process_start_time(os.getpid())
    assert first is not None and first == process_start_time(os.getpid())
    assert this_process() == Holder(os.getpid(), first)
    assert holder_alive(os.getpid(), first)
    assert not holder_alive(os.getpid(), first + 1)  # same pid, another process


def test_a_process_that_exited_holds_nothing() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = process_start_time(child.pid)
    child.wait()
    assert process_start_time(child.pid) is None
    assert start is None or not holder_alive(child.pid, start)


@pytest.mark.linux
def test_a_zombie_holds_nothing() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("zombies are read from /proc")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        while process_start_time(child.pid) is not None:  # exited, not yet reaped
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert os.path.exists(f"/proc/{child.pid}")
    finally:
        child.wait()


def test_unknown_start_time_falls_back_to_the_pid() -> None:
    assert holder_alive(os.getpid(), UNKNOWN_START)


def test_pid_one_and_below_and_missing_pids_are_refused() -> None:
    for pid in (-5, 0, 1):
        with pytest.raises(UsageError, match="never exits"):
            Holder(pid, 123)
        with pytest.raises(UsageError):
            holder_for(pid)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with pytest.raises(NotFoundError, match="no process"):
        holder_for(child.pid)
    assert process_start_time(0) is None and process_start_time(-1) is None
