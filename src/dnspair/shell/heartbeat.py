"""Heartbeat sockets: one UDP socket per link, bound to this node's address on that link."""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import select
import socket

from ..core.wire import MAX_DATAGRAM

log = logging.getLogger("dnspair")
IP_FREEBIND = 15  # bind before the address is up (early boot); linux/in.h
IPV6_FREEBIND = 78  # the same for IPv6; linux/in6.h
EF = 0xB8           # DSCP EF: ahead of bulk traffic


def _source(addr) -> str:
    """The sender's address as the config spells it (IPv6 has several spellings)."""
    return str(ipaddress.IPv6Address(addr[0])) if ":" in addr[0] else addr[0]


def link_socket(local: str, peer: str, port: int) -> socket.socket:
    """A UDP socket bound to this node's address on one link, connected to the peer's: the
    kernel drops datagrams from anyone but the peer's heartbeat socket, so a flood from
    another LAN host never reaches (or starves) us."""
    v6 = ":" in local
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if v6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, EF)
        else:
            sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
            sock.setsockopt(socket.SOL_IP, socket.IP_TOS, EF)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((local, port))
        sock.connect((peer, port))
    except OSError:
        sock.close()
        raise
    return sock


class _Link(asyncio.DatagramProtocol):
    def __init__(self, k: int, on_datagram):
        self.k, self.on_datagram = k, on_datagram
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.on_datagram(self.k, data[:MAX_DATAGRAM + 1], _source(addr))

    def error_received(self, exc):
        # ICMP errors from a dead peer: expected while it is down.
        log.debug("heartbeat link %d: %s", self.k, exc)


class Heartbeats:
    def __init__(self, local: tuple[str, ...], peer: tuple[str, ...], port: int, on_datagram):
        self.local, self.peer, self.port = local, peer, port
        self.on_datagram = on_datagram
        self.links: list[_Link] = []
        self.send_errors = 0
        # What drain() asks before each read: at rest nothing is queued, and a recvfrom on an
        # empty socket raises (an exception and its message, twice an interval: a third of the
        # pair's CPU at rest) where poll(0) returns [].
        self._queued = select.poll()
        self._by_fd: dict[int, tuple[int, socket.socket]] = {}

    async def open(self):
        loop = asyncio.get_running_loop()
        for k, addr in enumerate(self.local):
            sock = link_socket(addr, self.peer[k], self.port)
            _, proto = await loop.create_datagram_endpoint(
                lambda k=k: _Link(k, self.on_datagram), sock=sock)
            self.links.append(proto)
            self._by_fd[sock.fileno()] = (k, sock)
            self._queued.register(sock, select.POLLIN)

    def drain(self) -> None:
        """Read what is already queued, now. Before judging the peer dead: after a stall the
        loop may run expired timers before it looks at the sockets (epoll_wait gave EINTR)."""
        for _ in range(256):
            ready = self._queued.poll(0)
            if not ready:
                return
            for fd, events in ready:
                if events & select.POLLNVAL or fd not in self._by_fd:
                    self._queued.unregister(fd)   # closed: nothing more to read there
                    self._by_fd.pop(fd, None)
                    continue
                k, sock = self._by_fd[fd]
                try:
                    data, addr = sock.recvfrom(MAX_DATAGRAM + 1)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:   # an ICMP error queued on the socket (POLLERR)
                    log.debug("heartbeat link %d: %s", k, e)
                    continue
                self.on_datagram(k, data, _source(addr))

    def send(self, data: bytes) -> None:
        for k, link in enumerate(self.links):
            if link.transport is None:
                continue
            try:
                link.transport.sendto(data)
            except OSError as e:
                self.send_errors += 1
                log.debug("heartbeat send on link %d: %s", k, e)

    def close(self):
        for fd in self._by_fd:
            self._queued.unregister(fd)
        self._by_fd.clear()
        for link in self.links:
            if link.transport:
                link.transport.close()
