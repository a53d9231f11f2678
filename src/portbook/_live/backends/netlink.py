"""Linux: the kernel's socket table over NETLINK_SOCK_DIAG (inet_diag), as ``ss`` reads it.

One dump request per protocol and family, except that TCP's two families
share one: the kernel filters by state (the ``idiag_states`` mask) and, for
port queries, by local port with a small INET_DIAG_REQ_BYTECODE program, but
a dump that asks for any state beyond LISTEN walks every bucket of TCP's
established hash (about 2 ms on a machine with a few GiB of memory, however
few sockets it holds), once per request. A ``SOCK_DIAG_BY_FAMILY`` request
names one family, so both would walk it twice; the older ``TCPDIAG_GETSOCK``
request, which the kernel still serves with the same messages, dumps both
families in one walk. Where a kernel refuses it, the two per-family requests
are sent instead.
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
    from collections.abc import Callable, Iterator

    from portbook._live.backends.base import RawSocket

__all__ = ["NetlinkBackend"]

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
TCPDIAG_GETSOCK = 18
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
# nlmsghdr + inet_diag_req, the TCPDIAG_GETSOCK form: family (ignored: a dump
# answers both), src_len, dst_len, ext, the sockid, states, dbs.
_TCP_REQUEST = struct.Struct("=IHHII BBBB 48x II")
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
# One receive holds one batch of a dump, and the kernel makes a batch at most
# 32 KiB (netlink_recvmsg caps the size it remembers for the next one). Every
# receive asks for the batch's true length (MSG_TRUNC) and refuses one that
# did not fit, rather than lose its sockets. The buffer is 1 MiB all the same,
# though zeroing it costs about 0.3 ms a dump: with 64 KiB, `portbook serve`'s
# resident set under a flood of requests kept growing on a busy machine (the
# serve flood test failed in most full runs), and the cause is not known yet.
_RECV_BUFFER = 1 << 20
_MSG_TRUNC = 0x20
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
            # (No SO_RCVBUF: a dump makes its next batch only once this
            # one is read, whatever the socket's buffer.)
            sock.bind((0, 0))
            buf = bytearray(_RECV_BUFFER)

            def read(protocol: str, families: tuple[int, ...], seq: int) -> int:
                blocks = {family: _DiagBlock(protocol, family) for family in families}
                refusal = _read_dump(sock, buf, seq=seq, out=blocks)
                if not refusal:  # a refused request sent nothing (it may be asked again)
                    for block in blocks.values():
                        result.add(block)
                return refusal

            run_dumps(sock, query, read)
        except OSError as exc:
            raise SocketTableError(f"reading the socket table over netlink failed: {exc}") from exc
        finally:
            sock.close()
        return result


def dumps(query: TableQuery) -> Iterator[tuple[str, tuple[int, ...]]]:
    """The dumps a query takes, in order: (protocol, the families one request answers)."""
    families = tuple(f for f in (4, 6) if f in query.families)
    for protocol in ("tcp", "udp"):
        if protocol not in query.protocols or not families:
            continue
        if protocol == "tcp" and len(families) == 2:
            yield protocol, families
        else:
            yield from ((protocol, (family,)) for family in families)


def run_dumps(
    sock: socket.socket, query: TableQuery, read: Callable[[str, tuple[int, ...], int], int]
) -> None:
    """Send each dump ``query`` takes and have ``read(protocol, families, seq)`` read its replies.

    ``read`` returns 0, or the error number of the kernel's refusal (sent
    before any socket, so nothing was read). A refused TCPDIAG_GETSOCK is
    asked again one family at a time; ENOENT means the protocol's diag module
    is absent (udp_diag not loaded and not loadable): none of that kind.
    Any other refusal raises :class:`SocketTableError`.
    """
    seq = 0
    for protocol, families in dumps(query):
        asks = [families]
        while asks:
            asked = asks.pop(0)
            seq += 1
            sock.send(_request(asked, protocol, query, seq))
            refusal = read(protocol, asked, seq)
            if refusal and len(asked) > 1:
                asks.extend((family,) for family in asked)
            elif refusal and refusal != errno.ENOENT:
                name = errno.errorcode.get(refusal, str(refusal))
                raise SocketTableError(f"the kernel refused the socket-table request: {name}")


def _request(families: tuple[int, ...], protocol: str, query: TableQuery, seq: int) -> bytes:
    """The dump request for ``protocol`` and ``families`` (one, or TCP's two) for ``query``."""
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
    flags = NLM_F_REQUEST | NLM_F_DUMP
    # No extensions (ext 0): the base message has everything portbook shows.
    if len(families) > 1:
        total = _TCP_REQUEST.size + len(attr)
        head = _TCP_REQUEST.pack(
            total, TCPDIAG_GETSOCK, flags, seq, 0, 0, 0, 0, 0, query.state_mask, 0
        )
        return head + attr
    total = _REQUEST.size + len(attr)
    af, proto = _AF[families[0]], _IPPROTO[protocol]
    return (
        _REQUEST.pack(total, SOCK_DIAG_BY_FAMILY, flags, seq, 0, af, proto, 0, query.state_mask)
        + attr
    )


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


def _read_dump(sock: socket.socket, buf: bytearray, *, seq: int, out: dict[int, _DiagBlock]) -> int:
    """Read the replies to dump request ``seq`` into ``out``'s blocks until the kernel says done.

    Returns 0, or the error number of a refusal.
    """
    while True:
        end = _parse_batch(buf, receive_batch(sock, buf), seq=seq, out=out)
        if end is not None:
            return end


def receive_batch(sock: socket.socket, buf: bytearray) -> int:
    """Receive one batch of a dump into ``buf``; its size in bytes.

    Raises :class:`SocketTableError` for a batch that did not fit (its true
    length, asked with MSG_TRUNC, is larger than ``buf``: its sockets would
    be lost) and for a dump that ends without NLMSG_DONE.
    """
    size: int = sock.recv_into(buf, len(buf), _MSG_TRUNC)
    if size > len(buf):
        raise SocketTableError(f"a netlink batch of {size} bytes did not fit in {len(buf)}")
    if size == 0:
        raise SocketTableError("netlink dump ended without NLMSG_DONE")
    return size


def _parse_batch(buf: bytearray, size: int, *, seq: int, out: dict[int, _DiagBlock]) -> int | None:
    """Keep one batch of messages in ``out`` (a block per family).

    Returns None while the dump goes on, then 0 (done) or a refusal's error number.
    """
    header = _HEADER.unpack_from
    view = memoryview(buf)
    v4 = out.get(4)
    v6 = out.get(6)
    offset = 0
    while offset + _NLMSG_HDRLEN <= size:
        length, msg_type, _flags, msg_seq, _pid = header(buf, offset)
        if length < _NLMSG_HDRLEN or offset + length > size:
            raise SocketTableError("malformed netlink message from the kernel")
        if msg_seq != seq:
            offset += (length + 3) & ~3
            continue
        if msg_type == NLMSG_DONE:
            return 0
        if msg_type == NLMSG_ERROR:
            code: int = -struct.unpack_from("=i", buf, offset + _NLMSG_HDRLEN)[0]
            return code
        start = offset + _NLMSG_HDRLEN
        if length < _NLMSG_HDRLEN + _DIAG_MSG_LEN:
            raise SocketTableError("malformed netlink message from the kernel")
        # idiag_family, the message's first byte, says which block it joins.
        family = buf[start]
        block = v4 if family == socket.AF_INET else v6 if family == socket.AF_INET6 else None
        if block is None:
            raise SocketTableError("the kernel answered with a family that was not asked for")
        block.messages += view[start : start + _DIAG_MSG_LEN]
        if block is v6:
            block.v6only.append(_V6ONLY_CODE[_v6only(buf, start + _DIAG_MSG_LEN, offset + length)])
        offset += (length + 3) & ~3
    return None


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
