"""Linux without netlink: the socket table from /proc/net/{tcp,tcp6,udp,udp6}.

The text files carry the same facts as the netlink dump except three:
``v6only`` and the bound interface are not shown (reported as unknown), and a
listener's send queue (the backlog limit over netlink, as ``ss`` shows it) is
0 here. Filtering by state and port happens in Python.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from portbook._exceptions import SocketTableError
from portbook._live.backends.base import RawSocket, TableQuery, make_raw_socket
from portbook._record import public

__all__ = ["ProcfsBackend"]

_FILES = (("tcp", 4, "tcp"), ("tcp", 6, "tcp6"), ("udp", 4, "udp"), ("udp", 6, "udp6"))
_LITTLE = sys.byteorder == "little"


def _address(text: str) -> bytes:
    # The kernel prints each 32-bit word of the (network-order) address as a
    # host-order integer, so on little-endian machines every 4-byte group
    # comes out reversed.
    raw = bytes.fromhex(text)
    if not _LITTLE:
        return raw
    if len(raw) == 4:
        return raw[::-1]
    return raw[3::-1] + raw[7:3:-1] + raw[11:7:-1] + raw[15:11:-1]


class ProcfsBackend:
    """Reads ``/proc/net/{tcp,tcp6,udp,udp6}``; ``root`` replaces ``/proc/net`` in tests."""

    name = "procfs"
    provides_owners = False

    def __init__(self, root: str = "/proc/net") -> None:
        self.root = root

    def available(self) -> bool:
        return os.path.exists(os.path.join(self.root, "tcp"))

    def sockets(self, query: TableQuery) -> Iterable[RawSocket]:
        result: list[RawSocket] = []
        mask = query.state_mask
        first, last = query.ports if query.ports is not None else (0, 65535)
        any_read = False
        cache: dict[str, bytes] = {}
        for protocol, family, filename in _FILES:
            if protocol not in query.protocols or family not in query.families:
                continue
            path = os.path.join(self.root, filename)
            try:
                with open(path, encoding="ascii") as fh:
                    text = fh.read()
            except FileNotFoundError:
                # No IPv6 in this kernel (or no such protocol): nothing to list.
                continue
            except OSError as exc:
                raise SocketTableError(f"cannot read {path}: {exc}") from exc
            any_read = True
            for line in text.splitlines()[1:]:
                fields = line.split()
                if len(fields) < 10:
                    continue
                state = int(fields[3], 16)
                if not mask & (1 << state):
                    continue
                local, _, lport_hex = fields[1].partition(":")
                lport = int(lport_hex, 16)
                if not first <= lport <= last:
                    continue
                remote, _, rport_hex = fields[2].partition(":")
                tx_hex, _, rx_hex = fields[4].partition(":")
                laddr = cache.get(local)
                if laddr is None:
                    laddr = cache[local] = _address(local)
                raddr = cache.get(remote)
                if raddr is None:
                    raddr = cache[remote] = _address(remote)
                result.append(
                    make_raw_socket(
                        (
                            protocol,
                            family,
                            state,
                            laddr,
                            lport,
                            raddr,
                            int(rport_hex, 16),
                            int(fields[9]),
                            int(fields[7]),
                            int(rx_hex, 16),
                            int(tx_hex, 16),
                            None,
                            0,
                            None,
                        )
                    )
                )
        if not any_read and query.protocols and query.families:
            raise SocketTableError(f"no socket table under {self.root}")
        return result


public(ProcfsBackend)
