"""Linux: the kernel's socket table over NETLINK_SOCK_DIAG (inet_diag), as ``ss`` reads it.

One dump request per (family, protocol). The kernel filters by state (the
``idiag_states`` mask) and, for port queries, by local port with a small
INET_DIAG_REQ_BYTECODE program, so that a one-port question costs almost
nothing however many sockets the machine has.
"""

from __future__ import annotations

# The C module itself: socket.py turns every constant into an enum member when
# imported, a few milliseconds of a command that must start fast.
import _socket as socket
import errno
import struct

from portbook._exceptions import SocketTableError
from portbook._live.backends.base import RawRows, TableQuery, make_raw_socket
from portbook._record import public

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from portbook._live.backends.base import RawSocket

__all__ = ["NetlinkBackend"]

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x01
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3

INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_SKV6ONLY = 11
INET_DIAG_BC_S_GE = 2
INET_DIAG_BC_S_LE = 3

_AF = {4: socket.AF_INET, 6: socket.AF_INET6}
_IPPROTO = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}

# nlmsghdr (len, type, flags, seq, pid) + inet_diag_req_v2 (family, protocol,
# ext, pad, states) + inet_diag_sockid (sport, dport, src[16], dst[16], if, cookie[8]).
_REQUEST = struct.Struct("=IHHII BBBxI 48x")
# inet_diag_msg: family, state, timer, retrans, then the sockid with the ports
# in network byte order (read as bytes), then expires, rqueue, wqueue, uid, inode.
_ROW6 = struct.Struct("=xBxx BBBB 16s16sI8x 4xIIII")
# The same for an IPv4 dump: the addresses are the first 4 bytes of each slot.
_ROW4 = struct.Struct("=xBxx BBBB 4s12x4s12xI8x 4xIIII")
# Two columns of the same message: the local port's bytes, and the inode.
_LOCAL_PORT = struct.Struct("=4xBB66x")
_INODE = struct.Struct("=68xI")
_HEADER = struct.Struct("=IHHII")
_ATTR = struct.Struct("=HH")
_NLMSG_HDRLEN = 16
_DIAG_MSG_LEN = 72
_RECV_BUFFER = 1 << 20
# INET_DIAG_SKV6ONLY as kept by a block: one byte per IPv6 row.
_V6ONLY_CODE = {None: 2, False: 0, True: 1}
_V6ONLY = (False, True, None)


class NetlinkBackend:
    """Reads the socket table with NETLINK_SOCK_DIAG dump requests."""

    name = "netlink"
    provides_owners = False

    def available(self) -> bool:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
        except (OSError, AttributeError):
            return False
        sock.close()
        return True

    def sockets(self, query: TableQuery) -> RawRows:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
        except (OSError, AttributeError) as exc:
            raise SocketTableError(f"netlink sock_diag is not available: {exc}") from exc
        result = RawRows()
        try:
            # A large receive buffer lets the kernel fill big dump batches
            # without dropping (a dump never drops, but small buffers mean
            # many more recv calls).
            # (try/except, not contextlib.suppress: contextlib is not
            # otherwise imported by `portbook who`.)
            try:  # noqa: SIM105
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECV_BUFFER)
            except OSError:
                pass
            sock.bind((0, 0))
            buf = bytearray(_RECV_BUFFER)
            seq = 0
            for protocol in ("tcp", "udp"):
                if protocol not in query.protocols:
                    continue
                for family in (4, 6):
                    if family not in query.families:
                        continue
                    seq += 1
                    sock.send(_request(family, protocol, query, seq))
                    block = _DiagBlock(protocol, family)
                    _read_dump(sock, buf, seq=seq, out=block)
                    result.add(block)
        except OSError as exc:
            raise SocketTableError(f"reading the socket table over netlink failed: {exc}") from exc
        finally:
            sock.close()
        return result


def _request(family: int, protocol: str, query: TableQuery, seq: int) -> bytes:
    bytecode = b""
    if query.ports is not None:
        first, last = query.ports
        # Two tests, each an op followed by an op-sized slot holding the port
        # in its `no` field. A test that holds jumps over its operand to the
        # next test (or exactly to the end: accept); one that fails jumps to
        # end + 4, which the kernel reads as reject. S_GE/S_LE exist in every
        # kernel with bytecode, unlike S_EQ (4.17+).
        bytecode = struct.pack(
            "=BBH HH BBH HH", INET_DIAG_BC_S_GE, 8, 20, 0, first, INET_DIAG_BC_S_LE, 8, 12, 0, last
        )
        attr = _ATTR.pack(4 + len(bytecode), INET_DIAG_REQ_BYTECODE) + bytecode
    else:
        attr = b""
    total = _REQUEST.size + len(attr)
    head = _REQUEST.pack(
        total,
        SOCK_DIAG_BY_FAMILY,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        0,
        _AF[family],
        _IPPROTO[protocol],
        0,  # no extensions: the base message has everything portbook shows
        query.state_mask,
    )
    return head + attr


class _DiagBlock:
    """The sockets of one dump (one protocol and family), each as its kernel message.

    The message's fixed part (72 bytes) is kept as it came, with one byte
    more for INET_DIAG_SKV6ONLY on IPv6, and decoded into a row only when
    iterated: a large table's rows then take a third of the memory row
    objects would (see :class:`~portbook._live.backends.base.RowBlock`).
    """

    def __init__(self, protocol: str, family: int) -> None:
        self.protocol = protocol
        self.family = family
        self.messages = bytearray()
        self.v6only = bytearray()  # one code (_V6ONLY) per message of an IPv6 dump

    def __len__(self) -> int:
        return len(self.messages) // _DIAG_MSG_LEN

    def __iter__(self) -> Iterator[RawSocket]:
        from itertools import repeat

        protocol, fam, make, v6only = self.protocol, self.family, make_raw_socket, _V6ONLY
        rows = (_ROW4 if fam == 4 else _ROW6).iter_unpack(self.messages)
        # An IPv4 dump keeps no v6only bytes: each of its rows has None.
        codes = repeat(_V6ONLY_CODE[None], len(self)) if fam == 4 else self.v6only
        # fmt: off
        for (state, sport_hi, sport_lo, dport_hi, dport_lo, src, dst, ifindex, rqueue, wqueue,
             uid, inode), code in zip(rows, codes, strict=True):
            yield make((
                protocol, fam, state, src, (sport_hi << 8) | sport_lo, dst,
                (dport_hi << 8) | dport_lo, inode, uid, rqueue, wqueue, v6only[code], ifindex,
                None,
            ))
        # fmt: on

    def port_pairs(self) -> set[tuple[int, str]]:
        protocol = self.protocol
        return {((hi << 8) | lo, protocol) for hi, lo in _LOCAL_PORT.iter_unpack(self.messages)}

    def inodes(self) -> Iterator[int]:
        for (inode,) in _INODE.iter_unpack(self.messages):
            yield inode


def _read_dump(sock: socket.socket, buf: bytearray, *, seq: int, out: _DiagBlock) -> None:
    """Read the replies to dump request ``seq`` into ``out`` until the kernel says done."""
    while True:
        size = sock.recv_into(buf, _RECV_BUFFER)
        if _parse_batch(buf, size, seq=seq, out=out):
            return
        if size == 0:
            raise SocketTableError("netlink dump ended without NLMSG_DONE")


def _parse_batch(buf: bytearray, size: int, *, seq: int, out: _DiagBlock) -> bool:
    """Keep one batch of messages in ``out``; True when it held the end of the dump."""
    header = _HEADER.unpack_from
    view = memoryview(buf)
    messages, v6only = out.messages, (None if out.family == 4 else out.v6only)
    offset = 0
    while offset + _NLMSG_HDRLEN <= size:
        length, msg_type, _flags, msg_seq, _pid = header(buf, offset)
        if length < _NLMSG_HDRLEN or offset + length > size:
            raise SocketTableError("malformed netlink message from the kernel")
        if msg_seq != seq:
            offset += (length + 3) & ~3
            continue
        if msg_type == NLMSG_DONE:
            return True
        if msg_type == NLMSG_ERROR:
            _refused(buf, offset)
            return True
        start = offset + _NLMSG_HDRLEN
        if length < _NLMSG_HDRLEN + _DIAG_MSG_LEN:
            raise SocketTableError("malformed netlink message from the kernel")
        messages += view[start : start + _DIAG_MSG_LEN]
        if v6only is not None:
            v6only.append(_V6ONLY_CODE[_v6only(buf, start + _DIAG_MSG_LEN, offset + length)])
        offset += (length + 3) & ~3
    return False


def _refused(buf: bytearray, offset: int) -> None:
    """An NLMSG_ERROR reply: no table of that kind (return) or a refusal (raise)."""
    code = -struct.unpack_from("=i", buf, offset + _NLMSG_HDRLEN)[0]
    if code == errno.ENOENT:
        # The protocol's diag module is absent (e.g. udp_diag not loaded and
        # not loadable): no sockets of that kind to show.
        return
    name = errno.errorcode.get(code, str(code))
    raise SocketTableError(f"the kernel refused the socket-table request: {name}")


def _v6only(buf: bytearray, pos: int, end: int) -> bool | None:
    """INET_DIAG_SKV6ONLY among the attributes in ``buf[pos:end]``, if the kernel sent it.

    It sends it for every full AF_INET6 socket, not for TIME-WAIT or request
    minisockets.
    """
    unpack_attr = _ATTR.unpack_from
    while pos + 4 <= end:
        alen, atype = unpack_attr(buf, pos)
        if alen < 4:
            return None
        if atype == INET_DIAG_SKV6ONLY:
            return bool(buf[pos + 4])
        pos += (alen + 3) & ~3
    return None


public(NetlinkBackend)
