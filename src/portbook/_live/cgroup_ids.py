"""The cgroup that made each socket, from sock_diag's ``INET_DIAG_CGROUP_ID`` attribute.

Since Linux 5.7 every inet_diag reply carries attribute 21, a u64: the id
of the cgroup v2 directory (its inode number) of the task that *created* the
socket, at the moment it was created. It is not requested: it comes with the
base message (``ss -e`` shows it as ``cgroup:PATH``). Two caveats follow
from "creating task at creation time": a socket made before its process
moved to another cgroup keeps the old id, and a socket made by a helper and
handed on keeps the helper's (Podman opens a published port and hands it to
conmon; docker-proxy's sockets are made in the host's root cgroup), so the
id names who *made* the socket, not who holds it. It names a systemd unit or
a container without reading any process's descriptors, through
:func:`portbook._live.cgroups.cgroup_paths_by_id`.

:func:`cgroup_id_attribute` reads the attribute from one reply message, for a
netlink parser that already walks the attributes (the IPv6 ``v6only`` walk);
:func:`socket_cgroup_ids` is a separate dump for callers that need only the
ids.
"""

from __future__ import annotations

import _socket as socket
import struct

from portbook._exceptions import SocketTableError
from portbook._live.backends.base import TableQuery
from portbook._live.backends.netlink import (  # the one description of the wire format
    _ATTR,
    _DIAG_MSG_LEN,
    _HEADER,
    _NLMSG_HDRLEN,
    NETLINK_SOCK_DIAG,
    NLMSG_DONE,
    NLMSG_ERROR,
    receive_batch,
    run_dumps,
)

__all__ = ["INET_DIAG_CGROUP_ID", "cgroup_id_attribute", "socket_cgroup_ids"]

INET_DIAG_CGROUP_ID = 21
_U64 = struct.Struct("=Q")
_INODE = struct.Struct("=I")
_INODE_OFFSET = _NLMSG_HDRLEN + 68  # idiag_inode, the last field of inet_diag_msg


def cgroup_id_attribute(buf: bytes | bytearray | memoryview, start: int, end: int) -> int | None:
    """The ``INET_DIAG_CGROUP_ID`` of the reply message at ``buf[start:end]``, or ``None``.

    ``start`` is the message's first byte (its nlmsghdr), ``end`` one past
    its last (``start + nlmsg_len``).
    """
    pos = start + _NLMSG_HDRLEN + _DIAG_MSG_LEN
    while pos + 4 <= end:
        length, kind = _ATTR.unpack_from(buf, pos)
        if length < 4:
            return None
        if kind == INET_DIAG_CGROUP_ID and length >= 12:
            value: int = _U64.unpack_from(buf, pos + 4)[0]
            return value
        pos += (length + 3) & ~3
    return None


def socket_cgroup_ids(query: TableQuery | None = None) -> dict[int, int]:
    """Socket inode -> cgroup id, for the sockets of the caller's namespace that ``query`` selects.

    Sockets without an inode (TIME-WAIT) and kernels without the attribute
    (before 5.7, or without cgroup v2) give no entry. Raises
    :class:`SocketTableError` when the table cannot be read.
    """
    wanted = query if query is not None else TableQuery()
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
    except (OSError, AttributeError) as exc:
        raise SocketTableError(f"netlink sock_diag is not available: {exc}") from exc
    found: dict[int, int] = {}
    try:
        sock.bind((0, 0))
        run_dumps(sock, wanted, lambda _protocol, _families, seq: _collect(sock, seq, found))
    except OSError as exc:
        raise SocketTableError(f"reading the socket table over netlink failed: {exc}") from exc
    finally:
        sock.close()
    return found


def _collect(sock: socket.socket, seq: int, found: dict[int, int]) -> int:
    """Read dump ``seq``'s ids into ``found``; 0 at its end, or the error number of a refusal."""
    data = bytearray(1 << 16)  # a dump's batches are at most 32 KiB
    while True:
        size = receive_batch(sock, data)
        offset = 0
        while offset + _NLMSG_HDRLEN <= size:
            length, kind, _flags, msg_seq, _pid = _HEADER.unpack_from(data, offset)
            if length < _NLMSG_HDRLEN:
                raise SocketTableError("malformed netlink message from the kernel")
            if msg_seq == seq:
                if kind == NLMSG_DONE:
                    return 0
                if kind == NLMSG_ERROR:
                    code: int = -struct.unpack_from("=i", data, offset + _NLMSG_HDRLEN)[0]
                    return code
                inode = _INODE.unpack_from(data, offset + _INODE_OFFSET)[0]
                ident = cgroup_id_attribute(data, offset, offset + length)
                if inode and ident is not None:
                    found[inode] = ident
            offset += (length + 3) & ~3
