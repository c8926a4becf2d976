"""Batched UDP I/O for the DNS fast path: recvmmsg(2) and sendmmsg(2) through ctypes, over buffers made once.

CPython has neither call. One `recvmmsg` reads a burst of queries and one `sendmmsg` sends their replies, and
each query keeps its slot from receipt to reply: its reply is written over it, and its message header still names
the asker's address as the kernel wrote it, so the fast path neither builds an address tuple (`recvfrom`) nor
parses one back (`sendto`). bench/dns.py: ~13% less CPU per answered query than recvfrom/sendto per datagram.

Layouts are the kernel's on every 64-bit Linux (LP64): `struct iovec` {base, len} is 16 bytes; `struct msghdr` is
56 (name 0, namelen 8, iov 16, iovlen 24, control 32, controllen 40, flags 48); `struct mmsghdr` adds `msg_len`
at 56 and is 64 bytes.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import sys
from typing import Any

SLOTS = 64  # datagrams per call: one wake-up's burst at most, so TCP clients and forwards are not starved
SLOT = 4096  # bytes per datagram (wire.MAX_UDP_SIZE: no UDP reply is larger); a longer query is cut (MSG_TRUNC)
NAME = 32  # bytes per source address (sockaddr_in6 is 28)
_HEADER, _IOVEC = 64, 16
_MSG_LEN = 14  # msg_len's index in a header seen as 32-bit words (byte 56)

_LIBC = ctypes.CDLL(None, use_errno=True)
_recvmmsg = _LIBC.recvmmsg
_recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
_recvmmsg.restype = ctypes.c_int
_sendmmsg = _LIBC.sendmmsg
_sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
_sendmmsg.restype = ctypes.c_int

Source = tuple[Any, ...]  # an address as `recvfrom` gives it: (host, port) or (host, port, flowinfo, scope_id)

# Where the address and port sit in a sockaddr_in / sockaddr_in6.
ADDRESS_SPAN: dict[int, tuple[int, int]] = {socket.AF_INET: (4, 8), socket.AF_INET6: (8, 24)}


class Batch:
    """SLOTS receive slots: slot i's datagram is `data[i * SLOT:][:lengths[i * 16 + 14]]` (its msg_flags, e.g.
    MSG_TRUNC, `lengths[i * 16 + 12]`), its source address
    `names[i * NAME:][ADDRESS_SPAN[family]]`; a reply is written into the same slot with its length in
    `iov_lengths[2 * i + 1]`, then `send` sends the chosen slots. Not thread-safe: one per event loop."""

    def __init__(self) -> None:
        self._buffers = [ctypes.create_string_buffer(n) for n in (SLOTS * SLOT, SLOTS * NAME, SLOTS * _IOVEC,
                                                                  SLOTS * _HEADER)]  # fmt: skip
        data, names, iovecs, headers = self._buffers
        self._headers_at = ctypes.addressof(headers)
        for i in range(SLOTS):
            struct.pack_into("=QQ", iovecs, i * _IOVEC, ctypes.addressof(data) + i * SLOT, SLOT)
            name, iovec = ctypes.addressof(names) + i * NAME, ctypes.addressof(iovecs) + i * _IOVEC
            struct.pack_into("=QI4xQQQQi4xI4x", headers, i * _HEADER, name, NAME, iovec, 1, 0, 0, 0, 0)
        self._fresh = (bytes(headers), bytes(iovecs))  # what a receive starts from (the kernel writes lengths)
        self.data, self.names, self._iovecs, self._headers = (memoryview(b).cast("B") for b in self._buffers)
        self.lengths = self._headers.cast("I")
        self.iov_lengths = self._iovecs.cast("Q")

    def receive(self, fd: int) -> int:
        """Read up to SLOTS queued datagrams without blocking; how many (0: none queued). OSError for an error
        queued on the socket (an ICMP error for an asker that went away): reading it clears it."""
        self._headers[:], self._iovecs[:] = self._fresh
        count: int = _recvmmsg(fd, self._headers_at, SLOTS, socket.MSG_DONTWAIT, None)
        if count >= 0:
            return count
        code = ctypes.get_errno()
        if code in (errno.EAGAIN, errno.EINTR):
            return 0
        raise OSError(code, os.strerror(code))

    def source(self, slot: int, family: int) -> Source:
        """Slot `slot`'s source as `recvfrom` gives it (for the slow path and logs)."""
        name = self.names[slot * NAME : (slot + 1) * NAME]
        lo, hi = ADDRESS_SPAN[family]
        port = int.from_bytes(name[2:4], "big")
        host = socket.inet_ntop(family, name[lo:hi])
        if family == socket.AF_INET:
            return host, port
        return host, port, int.from_bytes(name[4:8], "big"), int.from_bytes(name[24:28], sys.byteorder)

    def send(self, fd: int, slots: list[int]) -> list[tuple[int, int]]:
        """Send the replies written into `slots` (ascending), each to its slot's source, in as few calls as the
        kernel allows. Returns (slot, errno) for each reply that was not sent: dropping a UDP reply is allowed
        (the asker retries), and a full send buffer drops the rest of the burst."""
        if not slots:
            return []
        headers = self._headers
        for k, i in enumerate(slots):
            if k != i:  # a slot without a reply is skipped: pack the others to the front (their pointers stay)
                headers[k * _HEADER : (k + 1) * _HEADER] = headers[i * _HEADER : (i + 1) * _HEADER]
        failed: list[tuple[int, int]] = []
        done, total = 0, len(slots)
        while done < total:
            sent = _sendmmsg(fd, self._headers_at + done * _HEADER, total - done, 0)
            if sent > 0:
                done += sent
                continue
            code = ctypes.get_errno()
            if code == errno.EINTR:
                continue
            if code in (errno.EAGAIN, errno.ENOBUFS):
                return failed + [(i, code) for i in slots[done:]]
            failed.append((slots[done], code))  # e.g. ECONNREFUSED from an earlier ICMP error, EPERM from a rule
            done += 1
        return failed
