"""bind_activation_socket: the one socket `portbook run --socket` hands to a server."""

from __future__ import annotations

import socket

import pytest

from portbook import PortUnavailableError, bind_activation_socket, ipv6_available


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_tcp_socket_listens_on_every_address_and_takes_ipv4() -> None:
    port = _free_port()
    with bind_activation_socket(port) as sock:
        assert sock.getsockname()[1] == port
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        if ipv6_available():
            assert sock.family == socket.AF_INET6
            assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            conn, _ = sock.accept()
            conn.close()


def test_udp_socket_receives_on_loopback() -> None:
    port = _free_port()
    with bind_activation_socket(port, "udp") as sock:
        assert sock.type == socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"ping", ("127.0.0.1", port))
        sock.settimeout(5)
        assert sock.recv(16) == b"ping"


def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(PortUnavailableError, match=f"cannot bind tcp/{port}") as info:
            bind_activation_socket(port)
        assert info.value.port == port
