from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from portbook import LocalRanges, PortRange, local_ranges
from portbook._machine import parse_port_list


def test_reads_this_machines_ephemeral_range_like_sysctl() -> None:
    ranges = local_ranges()
    proc = Path("/proc/sys/net/ipv4/ip_local_port_range")
    if not proc.exists():
        pytest.skip("no /proc/sys/net/ipv4 here")
    lo, hi = proc.read_text().split()
    assert ranges.ephemeral == PortRange(int(lo), int(hi))
    sysctl = subprocess.run(
        ["sysctl", "-n", "net.ipv4.ip_local_port_range"],
        capture_output=True,
        text=True,
        check=False,
    )
    if sysctl.returncode == 0:
        assert sysctl.stdout.split() == [lo, hi]


def test_reads_fixture_ranges(tmp_path: Path) -> None:
    (tmp_path / "ip_local_port_range").write_text("40000\t50000\n")
    (tmp_path / "ip_local_reserved_ports").write_text("41000,42000-42010\n")
    ranges = local_ranges(tmp_path)
    assert ranges == LocalRanges(
        PortRange(40000, 50000), (PortRange(41000, 41000), PortRange(42000, 42010)), str(tmp_path)
    )
    assert ranges.is_ephemeral(40001)
    assert not ranges.is_ephemeral(41000)  # reserved: the kernel never picks it
    assert ranges.is_reserved(42005) and not ranges.is_reserved(42011)
    assert not ranges.is_ephemeral(39999)


def test_missing_or_broken_files_fall_back_to_the_iana_dynamic_range(tmp_path: Path) -> None:
    assert local_ranges(tmp_path).source == "default"
    (tmp_path / "ip_local_port_range").write_text("garbage\n")
    ranges = local_ranges(tmp_path)
    assert ranges.ephemeral == PortRange(49152, 65535) and ranges.reserved == ()


def test_parse_port_list() -> None:
    assert parse_port_list("") == ()
    assert parse_port_list("9000-9010,80\n") == (PortRange(80, 80), PortRange(9000, 9010))


def test_user_data_dir_follows_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from portbook._paths import user_data_dir

    monkeypatch.setenv("PORTBOOK_DATA_DIR", str(tmp_path / "pb"))
    assert user_data_dir() == tmp_path / "pb"
    monkeypatch.delenv("PORTBOOK_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert user_data_dir() == tmp_path / "xdg" / "portbook"


def test_user_data_dir_name_is_the_same_place_as_user_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from portbook._paths import user_data_dir, user_data_dir_name

    monkeypatch.delenv("PORTBOOK_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for xdg in (None, str(tmp_path / "xdg"), "relative/xdg"):  # a relative XDG path is ignored
        if xdg is None:
            monkeypatch.delenv("XDG_DATA_HOME", raising=False)
        else:
            monkeypatch.setenv("XDG_DATA_HOME", xdg)
        assert isinstance(user_data_dir_name(), str)
        assert Path(user_data_dir_name()) == user_data_dir()
    if sys.platform.startswith("linux"):
        assert user_data_dir_name() == str(tmp_path / "home" / ".local" / "share" / "portbook")


def test_local_ranges_takes_str_and_path_alike(tmp_path: Path) -> None:
    (tmp_path / "ip_local_port_range").write_text("40000 50000\n")
    (tmp_path / "ip_local_reserved_ports").write_text("\n")
    assert local_ranges(tmp_path) == local_ranges(str(tmp_path))
    assert local_ranges(tmp_path).source == str(tmp_path)
    assert local_ranges(tmp_path).reserved == ()


@pytest.mark.parametrize(
    "reserved",
    [
        (),
        ((41000, 41000), (42000, 42010)),
        ((30000, 33000), (32000, 32800), (60000, 65535)),  # overlapping and past both ends
        ((32768, 60999),),
        ((100, 200),),
    ],
)
def test_reserved_ports_in_the_ephemeral_range_count_each_port_once(
    reserved: tuple[tuple[int, int], ...],
) -> None:
    ranges = LocalRanges(
        PortRange(32768, 60999), tuple(PortRange(a, b) for a, b in reserved), "test"
    )
    by_port = sum(1 for port in range(32768, 61000) if ranges.is_reserved(port))
    assert ranges.reserved_in_ephemeral() == by_port
