"""VIP addresses and carrier, through rtnetlink on a plain AF_NETLINK socket.

The daemon needs five kernel messages: add and delete an address, dump the addresses, get a
link, and hear link changes. They are built with struct here. pyroute2 did this before and
cost ~10 MB of resident memory (its package imports some 160 modules whatever one asks for),
a quarter of the daemon's, against the target of 35 MB (docs/benchmarks.md).
"""
from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable, Iterator

log = logging.getLogger("dnspair")

# linux/netlink.h, linux/rtnetlink.h, linux/if_addr.h, linux/if_link.h
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP, NLM_F_EXCL, NLM_F_CREATE = 0x300, 0x200, 0x400
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 16, 17, 18, 20, 21, 22
RTMGRP_LINK = 0x1
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFA_F_NODAD = 0x02
IFLA_IFNAME, IFLA_CARRIER = 3, 33
IFF_UP = 0x1

HDR = struct.Struct("=IHHII")      # nlmsghdr: length, type, flags, seq, port
IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
IFADDR = struct.Struct("=BBBBI")   # ifaddrmsg: family, prefixlen, flags, scope, index
RTA = struct.Struct("=HH")         # rtattr: length, type
BUFSIZE = 1 << 16


class NetlinkError(OSError):
    """The kernel refused a request; `errno` is its error."""


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, value: bytes) -> bytes:
    body = RTA.pack(RTA.size + len(value), kind) + value
    return body + b"\0" * (_align(len(body)) - len(body))


def attrs(data: bytes, offset: int) -> dict[int, bytes]:
    """The route attributes from `offset` on: type -> value (the last one of a type wins)."""
    out = {}
    while offset + RTA.size <= len(data):
        length, kind = RTA.unpack_from(data, offset)
        if length < RTA.size:
            break
        out[kind & 0x3FFF] = data[offset + RTA.size:offset + length]
        offset += _align(length)
    return out


def messages(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, seq, payload) of each message in one datagram from the kernel."""
    offset = 0
    while offset + HDR.size <= len(data):
        length, kind, flags, seq, _ = HDR.unpack_from(data, offset)
        if length < HDR.size:
            break
        yield kind, flags, seq, data[offset + HDR.size:offset + length]
        offset += _align(length)


def address_request(kind: int, index: int, ip: str, prefixlen: int) -> bytes:
    """The body of RTM_NEWADDR / RTM_DELADDR for ip/prefixlen on link `index`."""
    addr = ipaddress.ip_address(ip)
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    # An IPv6 VIP skips duplicate address detection: it serves at once instead of a second
    # later, and an old owner still holding it (a partition) does not disable it.
    flags = IFA_F_NODAD if addr.version == 6 and kind == RTM_NEWADDR else 0
    packed = addr.packed
    head = IFADDR.pack(family, prefixlen, flags, 0, index)
    return head + attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed)


def link_state(payload: bytes) -> tuple[int, str | None, bool]:
    """(index, name, carrier) of an RTM_NEWLINK; carrier: the link is up and has carrier."""
    _, _, index, flags, _ = IFINFO.unpack_from(payload)
    a = attrs(payload, IFINFO.size)
    name = a[IFLA_IFNAME].rstrip(b"\0").decode() if IFLA_IFNAME in a else None
    carrier = bool(flags & IFF_UP) and a.get(IFLA_CARRIER, b"\0")[:1] == b"\1"
    return index, name, carrier


class Netlink:
    """Requests to the kernel on one socket, one at a time (a reply read by another request's
    wait would be lost to it). No call opens a file or socket: a claim must work at EMFILE."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self._index: dict[str, int] = {}
        self._seq = 0
        self._one = asyncio.Lock()

    async def open(self) -> None:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        s.setblocking(False)
        s.bind((0, 0))
        self.sock = s

    async def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    async def request(self, kind: int, flags: int, body: bytes) -> list[bytes]:
        """Send one request; the payloads of its replies (a dump's parts, or none for an ACK)."""
        async with self._one:
            return await self._request(kind, flags, body)

    async def _request(self, kind: int, flags: int, body: bytes) -> list[bytes]:
        if self.sock is None:
            raise RuntimeError("Netlink.open() was not called")
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        seq = self._seq
        self.sock.send(HDR.pack(HDR.size + len(body), kind, flags | NLM_F_REQUEST, seq, 0) + body)
        loop = asyncio.get_running_loop()
        out: list[bytes] = []
        while True:
            data = await loop.sock_recv(self.sock, BUFSIZE)
            for mkind, mflags, mseq, payload in messages(data):
                if mseq != seq:
                    continue  # the late reply of a request given up on (cancelled)
                if mkind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise NetlinkError(code, f"netlink: {errno.errorcode.get(code, code)}")
                    return out
                if mkind == NLMSG_DONE:
                    return out
                out.append(payload)
                if not mflags & NLM_F_MULTI:
                    return out

    async def index(self, ifname: str) -> int:
        if ifname not in self._index:
            name = attr(IFLA_IFNAME, ifname.encode() + b"\0")
            try:
                replies = await self.request(RTM_GETLINK, 0, IFINFO.pack(0, 0, 0, 0, 0) + name)
            except NetlinkError:
                raise LookupError(f"no interface {ifname}") from None
            self._index[ifname] = link_state(replies[0])[0]
        return self._index[ifname]

    async def _on_link(self, ifname: str, kind: int, make) -> None:
        """Send make(index); once more with the index looked up again if the link is gone
        (an interface deleted and made again has a new index)."""
        flags = NLM_F_ACK | (NLM_F_CREATE | NLM_F_EXCL if kind == RTM_NEWADDR else 0)
        for last in (False, True):
            try:
                await self.request(kind, flags, make(await self.index(ifname)))
                return
            except NetlinkError as e:
                if e.errno != errno.ENODEV or last:
                    raise
                self._index.pop(ifname, None)

    async def addresses(self, ifname: str) -> set[str]:
        try:
            idx = await self.index(ifname)
        except LookupError:
            return set()
        found = set()
        for payload in await self.request(RTM_GETADDR, NLM_F_DUMP, IFADDR.pack(0, 0, 0, 0, 0)):
            family, _, _, _, index = IFADDR.unpack_from(payload)
            value = attrs(payload, IFADDR.size).get(IFA_ADDRESS)
            if index == idx and value:
                found.add(str(ipaddress.ip_address(value)))
        return found

    async def add(self, ifname: str, ip: str, prefixlen: int) -> None:
        """Idempotent: an address already there is fine."""
        try:
            await self._on_link(ifname, RTM_NEWADDR, lambda i: address_request(RTM_NEWADDR, i, ip, prefixlen))
        except NetlinkError as e:
            if e.errno != errno.EEXIST:
                raise

    async def remove(self, ifname: str, ip: str, prefixlen: int) -> None:
        """Idempotent: an address already gone, or its interface, is fine."""
        try:
            await self._on_link(ifname, RTM_DELADDR, lambda i: address_request(RTM_DELADDR, i, ip, prefixlen))
        except NetlinkError as e:
            if e.errno not in (errno.EADDRNOTAVAIL, errno.ENODEV):
                raise
        except LookupError:
            pass

    async def carrier(self, ifname: str) -> bool:
        try:
            replies = await self.request(RTM_GETLINK, 0, IFINFO.pack(0, 0, await self.index(ifname), 0, 0))
        except (LookupError, NetlinkError):
            return False
        return any(link_state(p)[2] for p in replies)


async def watch_carrier(ifnames: set[str], on_change: Callable[[str, bool], object]) -> None:
    """Calls on_change(ifname, up) for every link event on the given interfaces. If the kernel
    dropped events (ENOBUFS: the loop was slow), each interface's state is read again."""
    loop = asyncio.get_running_loop()
    mon = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    mon.setblocking(False)
    mon.bind((0, RTMGRP_LINK))
    try:
        while True:
            try:
                data = await loop.sock_recv(mon, BUFSIZE)
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                log.warning("link events were lost (ENOBUFS); reading the links again")
                nl = Netlink()
                await nl.open()
                try:
                    for name in sorted(ifnames):
                        on_change(name, await nl.carrier(name))
                finally:
                    await nl.close()
                continue
            for kind, _, _, payload in messages(data):
                if kind in (RTM_NEWLINK, RTM_DELLINK):
                    _, link, up = link_state(payload)
                    if link in ifnames:
                        on_change(link, up and kind == RTM_NEWLINK)
    finally:
        mon.close()


def release_all(vips) -> list[str]:
    """For the unit's stop hook: remove every configured VIP still present. Sync on purpose."""
    async def run():
        nl = Netlink()
        await nl.open()
        done = []
        try:
            for v in vips:
                if v.ip in await nl.addresses(v.interface):
                    await nl.remove(v.interface, v.ip, v.prefixlen)
                    done.append(v.address)
        finally:
            await nl.close()
        return done
    return asyncio.run(run())
