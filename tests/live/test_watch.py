"""watch_sockets: refreshes of the live table, with what opened and closed in between."""

from __future__ import annotations

import socket

import pytest

from portbook import SocketState, UsageError, watch_sockets


def test_a_listener_opened_and_closed_between_refreshes_is_reported() -> None:
    changes = watch_sockets(interval=0.01, count=3, listening=True, protocols=["tcp"])
    first = next(changes)
    assert first.first
    assert first.closed == ()
    assert set(first.opened) == set(first.sockets)

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    second = next(changes)
    assert not second.first
    opened = [s for s in second.opened if s.local_port == port]
    assert [(s.state, str(s.local_address)) for s in opened] == [(SocketState.LISTEN, "127.0.0.1")]
    assert all(s.local_port != port for s in second.closed)

    listener.close()
    third = next(changes)
    assert [s.local_port for s in third.closed if s.local_port == port] == [port]
    assert all(s.local_port != port for s in third.sockets)
    with pytest.raises(StopIteration):
        next(changes)


@pytest.mark.parametrize(
    ("interval", "count"), [(0, None), (-1, None), (float("nan"), None), (1, 0)]
)
def test_bad_interval_or_count_is_a_usage_error(interval: float, count: int | None) -> None:
    with pytest.raises(UsageError, match="watch"):
        next(watch_sockets(interval=interval, count=count))
