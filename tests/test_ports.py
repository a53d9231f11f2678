from __future__ import annotations

import ipaddress

import pytest

from portbook import (
    InvalidPortSpecError,
    PortClass,
    PortRange,
    Protocol,
    UsageError,
    parse_port,
    parse_port_range,
    parse_port_spec,
    parse_protocol,
    port_class,
)


@pytest.mark.parametrize(
    ("text", "protocol", "ports", "name", "host"),
    [
        ("443", None, PortRange(443, 443), None, None),
        ("tcp/443", Protocol.TCP, PortRange(443, 443), None, None),
        ("443/udp", Protocol.UDP, PortRange(443, 443), None, None),
        ("UDP/53", Protocol.UDP, PortRange(53, 53), None, None),
        ("https", None, None, "https", None),
        ("https/tcp", Protocol.TCP, None, "https", None),
        ("8000-8100", None, PortRange(8000, 8100), None, None),
        ("0", None, PortRange(0, 0), None, None),
        ("65535", None, PortRange(65535, 65535), None, None),
        ("[::1]:8080", None, PortRange(8080, 8080), None, ipaddress.ip_address("::1")),
        ("127.0.0.1:5432", None, PortRange(5432, 5432), None, ipaddress.ip_address("127.0.0.1")),
        (":8080", None, PortRange(8080, 8080), None, None),
        ("tcp/:5432", Protocol.TCP, PortRange(5432, 5432), None, None),
        ("localhost:80", None, PortRange(80, 80), None, "localhost"),
        ("914c/g", None, None, "914c/g", None),
        ("sql*net", None, None, "sql*net", None),
        ("3com-tsmux", None, None, "3com-tsmux", None),
    ],
)
def test_parse_port_spec_accepts_what_users_type(
    text: str, protocol: Protocol | None, ports: PortRange | None, name: str | None, host: object
) -> None:
    spec = parse_port_spec(text)
    assert (spec.protocol, spec.ports, spec.name, spec.host) == (protocol, ports, name, host)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("70000", "port must be 0-65535"),
        ("-1", "port must be 0-65535"),
        ("", "empty"),
        ("   ", "empty"),
        ("foo/443", "unknown protocol 'foo'"),
        ("443/quic", "unknown protocol 'quic'"),
        ("tcp/", "missing port"),
        ("8100-8000", "range start is above its end"),
        ("80-", "empty port"),
        ("::1:8080", "brackets"),
        ("[::1]8080", r"expected \[IPv6-address\]:port"),
        ("[nope]:80", "not an IPv6 address"),
        ("127.0.0.1:", "missing port"),
        ("999.1.1.1:80", "not a valid IPv4 address"),
        ("a" * 301, "too long"),
        ("$%^", "not a port, range or service name"),
        ("ht tp", "spaces or control"),
        ("http\x00", "spaces or control"),
        ("80-90-100", "not a port number"),
        ("\uff11\uff12\uff13", "not a port, range or service name"),
    ],
)
def test_parse_port_spec_refuses_bad_input_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidPortSpecError, match=reason) as info:
        parse_port_spec(text)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, UsageError)
    assert "\n" not in str(info.value)


def test_long_input_is_shortened_in_the_message() -> None:
    with pytest.raises(InvalidPortSpecError) as info:
        parse_port_spec("9" * 5000)
    assert len(str(info.value)) < 120


@pytest.mark.parametrize(
    ("port", "cls"),
    [
        (0, PortClass.SYSTEM),
        (1023, PortClass.SYSTEM),
        (1024, PortClass.USER),
        (49151, PortClass.USER),
        (49152, PortClass.DYNAMIC),
        (65535, PortClass.DYNAMIC),
    ],
)
def test_port_class_boundaries(port: int, cls: PortClass) -> None:
    assert port_class(port) is cls


def test_port_classes_have_both_vocabularies() -> None:
    assert [(c.iana_name, c.common_name) for c in PortClass] == [
        ("System", "well-known"),
        ("User", "registered"),
        ("Dynamic/Private", "dynamic-private"),
    ]
    assert PortClass.USER.range == PortRange(1024, 49151)


def test_port_class_refuses_out_of_range() -> None:
    with pytest.raises(InvalidPortSpecError, match="0-65535"):
        port_class(65536)


def test_port_range_behaves_like_a_range() -> None:
    r = parse_port_range("6000-6063")
    assert len(r) == 64 and 6000 in r and 6063 in r and 6064 not in r
    assert list(r)[:2] == [6000, 6001] and str(r) == "6000-6063"
    assert str(parse_port_range("22")) == "22" and parse_port_range("22").single


def test_parse_port_and_protocol() -> None:
    assert parse_port(" 8080 ") == 8080
    assert parse_protocol("SCTP") is Protocol.SCTP
    with pytest.raises(InvalidPortSpecError, match="unknown protocol"):
        parse_protocol("icmp")
