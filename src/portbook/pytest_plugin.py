"""pytest fixtures for ports: a free TCP port, a free UDP port, and a named port.

Loaded automatically (entry point ``pytest11``) wherever portbook is
installed; ``-p no:portbook`` turns it off. The fixtures lease their ports
in the portbook store (``$PORTBOOK_STORE`` or the user's default), held by
the worker process that asked, so parallel workers (pytest-xdist), parallel
pytest runs and anything else that picks with portbook never get the same
port while a test holds it. A worker that crashes gives its ports back by
dying. Nothing is imported from portbook until a fixture is used: merely
having portbook installed costs other test suites nothing.

* ``free_tcp_port``: an ``int``, free for TCP on IPv4 and IPv6, leased
  for the test and released after it.
* ``free_udp_port``: the same for UDP.
* ``named_port``: a function ``named_port("api", protocol="tcp") -> int``
  returning the port of a name (assigned on first use, the same port that
  ``portbook get api`` prints), so a test talks to the port its service
  really uses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

__all__ = ["free_tcp_port", "free_udp_port", "named_port"]


def _leased_port(protocol: str) -> Iterator[int]:
    from portbook._exceptions import NotFoundError
    from portbook._names.leases import release_lease
    from portbook._names.picker import pick_port

    lease = pick_port(protocols=protocol)
    try:
        yield lease.port
    finally:
        # The test may have released it itself already.
        with contextlib.suppress(NotFoundError):
            release_lease(lease)


@pytest.fixture
def free_tcp_port() -> Iterator[int]:
    """A TCP port free on IPv4 and IPv6, leased to this worker for the test."""
    yield from _leased_port("tcp")


@pytest.fixture
def free_udp_port() -> Iterator[int]:
    """A UDP port free on IPv4 and IPv6, leased to this worker for the test."""
    yield from _leased_port("udp")


@pytest.fixture
def named_port() -> Callable[..., int]:
    """``named_port(name, protocol="tcp")``: the stable port of ``name`` in the store."""

    def port_of(name: str, protocol: str = "tcp") -> int:
        from portbook._names.names import assign

        return assign(name, protocol=protocol).port

    return port_of
