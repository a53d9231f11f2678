"""The runtimes' own words: helper command lines, Docker's files, a bolt database's structure."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from portbook._live.boltdb import BoltError, BoltFile
from portbook._live.cgroups import Runtime
from portbook._live.runtimes import (
    PortMapping,
    conmon_args,
    docker_containers,
    docker_data_root,
    docker_proxy_args,
    kubernetes_name,
    shim_args,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "runtimes"


def _argv(name: str) -> list[str]:
    return (FIXTURES / name).read_text().split("\n")[:-1]


def test_rootful_conmon_names_its_container_and_podman_storage() -> None:
    found = conmon_args(_argv("podman-rootful-conmon.cmdline"))
    assert found is not None
    assert found.runtime is Runtime.PODMAN
    assert found.id.startswith("71bf93656824") and len(found.id) == 64
    assert found.name == "pb-podman-httpd"
    assert found.graph_root == "/var/lib/containers/storage"
    assert found.run_root == "/run/containers/storage"


def test_rootless_conmon_names_the_users_storage() -> None:
    found = conmon_args(_argv("podman-rootless-conmon.cmdline"))
    assert found is not None
    assert found.name == "pb-rootless-httpd"
    assert found.graph_root == "/home/pbrl/.local/share/containers/storage"
    assert found.run_root == "/run/user/1001/containers"


def test_conmon_of_cri_o_and_long_options() -> None:
    ident = "c" * 64
    argv = ["/usr/bin/conmon", "--cid=" + ident, "--name", "k8s_web_shop-1_prod_u1d_0",
            "--exit-dir", "/var/run/crio/exits"]  # fmt: skip
    found = conmon_args(argv)
    assert found is not None
    assert (found.runtime, found.id) == (Runtime.CRIO, ident)
    assert found.name == "k8s_web_shop-1_prod_u1d_0"
    assert kubernetes_name(found.name or "") == ("web", "shop-1", "prod")
    assert conmon_args(["/usr/bin/conmon", "-n", "x"]) is None
    assert conmon_args(["/usr/bin/python3", "-c", ident]) is None


def test_shims_tell_docker_from_containerd() -> None:
    ident = "d" * 64
    docker = shim_args(["/usr/bin/containerd-shim-runc-v2", "-namespace", "moby", "-id", ident,
                        "-address", "/run/containerd/containerd.sock"])  # fmt: skip
    assert docker is not None and (docker.runtime, docker.id) == (Runtime.DOCKER, ident)
    k8s = shim_args(["containerd-shim-runc-v2", "--namespace=k8s.io", "--id=" + ident])
    assert k8s is not None and (k8s.runtime, k8s.namespace) == (Runtime.CONTAINERD, "k8s.io")
    workdir = f"/var/lib/containerd/io.containerd.runtime.v1.linux/moby/{ident}"
    old = shim_args(["containerd-shim", "-namespace", "moby", "-workdir", workdir])
    assert old is not None and old.id == ident
    assert shim_args(["containerd", "--config", "x"]) is None


def test_docker_proxy_carries_its_whole_mapping() -> None:
    found = docker_proxy_args(["/usr/sbin/docker-proxy", "-proto", "udp", "-host-ip", "::",
                               "-host-port", "45761", "-container-ip", "172.17.0.3",
                               "-container-port", "5353"])  # fmt: skip
    assert found is not None
    assert (found.protocol, found.host_ip, found.host_port) == ("udp", "::", 45761)
    assert (found.container_ip, found.container_port) == ("172.17.0.3", 5353)
    assert docker_proxy_args(["/usr/sbin/docker-proxy", "-proto", "tcp"]) is None


def test_docker_data_root_follows_dockerd_arguments() -> None:
    assert docker_data_root(["dockerd"]) == "/var/lib/docker"
    assert docker_data_root(["dockerd", "--data-root", "/srv/d"]) == "/srv/d"
    assert docker_data_root(["dockerd", "--data-root=/srv/e"]) == "/srv/e"
    assert docker_data_root(["dockerd"], home="/home/u") == "/home/u/.local/share/docker"


def test_docker_config_file_gives_name_ports_and_address(tmp_path: Path) -> None:
    config = json.loads((FIXTURES / "docker-config.v2.json").read_text())
    ident = config["ID"]
    (tmp_path / "containers" / ident).mkdir(parents=True)
    shutil.copy(
        FIXTURES / "docker-config.v2.json", tmp_path / "containers" / ident / "config.v2.json"
    )
    (tmp_path / "containers" / "not-a-container").mkdir()
    found = docker_containers(str(tmp_path))
    assert list(found) == [ident]
    known = found[ident]
    assert (known.runtime, known.name, known.pid, known.running) == (
        Runtime.DOCKER, "pb-docker-httpd", 8683, True,
    )  # fmt: skip
    assert known.ports == (PortMapping("tcp", "127.0.0.1", 42597, 80),)
    assert known.addresses == ("172.17.0.2",)
    assert known.netns == "/var/run/docker/netns/47a1e225817c"
    assert docker_containers(str(tmp_path / "missing")) == {}


def test_bolt_refuses_what_is_not_a_bolt_file(tmp_path: Path) -> None:
    for content in (b"", b"\0" * 8192, b"SQLite format 3\0" + b"\0" * 8000):
        path = tmp_path / "x.db"
        path.write_bytes(content)
        with pytest.raises(BoltError, match="not a bolt database"):
            BoltFile.open(str(path))


def test_bolt_rejects_a_meta_page_whose_checksum_is_wrong(tmp_path: Path) -> None:
    # A meta page with the right magic and version but a broken checksum.
    page = struct.pack("<QHHI", 0, 0x04, 0, 0)
    meta = struct.pack("<IIIIQQQQQQ", 0xED0CDAED, 2, 4096, 0, 3, 0, 2, 4, 1, 12345)
    path = tmp_path / "bad.db"
    path.write_bytes((page + meta).ljust(4096 * 4, b"\0"))
    with pytest.raises(BoltError):
        BoltFile.open(str(path))
