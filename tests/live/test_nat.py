"""DNAT rules from nft's and iptables-save's text: recorded dumps, and a runner seam."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from portbook._live.nat import (
    parse_iptables_save,
    parse_nft_ruleset,
    read_dnat_rules,
    rules_for_port,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "nat"
PODMAN_ID = "71bf936568240117f5b8881ace2cf7303a0109394e9aba805465ea385bd74edf"


def test_nft_text_shows_docker_and_netavark_targets() -> None:
    rules = parse_nft_ruleset((FIXTURES / "nft-docker-default-plus-podman.txt").read_text())
    assert sorted(r.key for r in rules) == [
        ("tcp", "127.0.0.1", 54651, 54651, "172.17.0.2", 80),
        ("tcp", "127.0.0.1", 55023, 55023, "10.88.0.3", 80),
    ]
    docker = next(r for r in rules if r.host_port == 54651)
    assert (docker.table, docker.chain, docker.source) == ("ip nat", "DOCKER", "nft")


def test_iptables_save_carries_netavarks_container_id_from_the_jump() -> None:
    rules = parse_iptables_save(
        (FIXTURES / "iptables-save-docker-default-plus-podman.txt").read_text()
    )
    podman = next(r for r in rules if r.host_port == 55023)
    assert podman.chain == "NETAVARK-DN-1D8721804F16F"
    assert podman.comment == f"dnat name: podman id: {PODMAN_ID}"
    assert next(r for r in rules if r.host_port == 54651).comment is None


def test_noproxy_rules_with_and_without_a_host_address() -> None:
    for name, parse in (
        ("nft-docker-noproxy.txt", parse_nft_ruleset),
        ("iptables-save-docker-noproxy.txt", parse_iptables_save),
    ):
        rules = parse((FIXTURES / name).read_text())
        assert ("tcp", None, 42669, 42669, "172.17.0.3", 80) in {r.key for r in rules}, name
        assert ("udp", "127.0.0.1", 37207, 37207, "172.17.0.3", 5353) in {r.key for r in rules}
        assert [r.host_port for r in rules_for_port(rules, "tcp", 42669, "127.0.0.1")] == [42669]
        assert rules_for_port(rules, "udp", 42669) == []


def test_native_nft_forms_ranges_sets_and_ipv6() -> None:
    text = """table inet portbook {
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tmeta l4proto tcp th dport 8000-8009 dnat ip to 10.1.0.5:9000 comment "range"
\t\tudp dport { 53, 5353 } dnat ip to 10.1.0.6
\t\tip6 daddr fd00::1 tcp dport 443 dnat ip6 to [fd00::2]:8443
\t\ttcp dport != 22 dnat ip to 10.1.0.7:1
\t}
}
"""
    rules = parse_nft_ruleset(text)
    assert [r.key for r in rules] == [
        ("tcp", None, 8000, 8009, "10.1.0.5", 9000),
        ("udp", None, 53, 53, "10.1.0.6", None),
        ("udp", None, 5353, 5353, "10.1.0.6", None),
        ("tcp", "fd00::1", 443, 443, "fd00::2", 8443),
    ]
    assert rules[0].comment == "range"
    assert rules[0].target_port_for(8003) == 9003
    assert rules[1].target_port_for(53) == 53


def test_reading_keeps_one_copy_of_a_rule_both_tools_show_and_notes_refusals() -> None:
    outputs = {
        "iptables-save": (FIXTURES / "iptables-save-docker-default-plus-podman.txt").read_text(),
        "nft": (FIXTURES / "nft-docker-default-plus-podman.txt").read_text(),
    }

    def run(argv: Sequence[str]) -> str:
        if argv[0] not in outputs:
            raise OSError("Permission denied (you must be root)")
        return outputs[argv[0]]

    found = read_dnat_rules(run)
    assert len(found.rules) == 2
    assert {r.source for r in found.rules} == {"iptables"}  # the copy with the comments
    assert found.notes == ("ip6tables-save: Permission denied (you must be root)",)
