"""Unsolicited Neighbour Advertisements (RFC 4861 7.2.6): IPv6's gratuitous ARP.

One ICMPv6 message per announcement, to all nodes (ff02::1) with hop limit 255 (receivers
drop anything less: it proves the sender is on the link), the Override flag set (without it
Linux keeps a cached MAC and only marks it stale: the client would keep asking the old
owner) and the target link-layer address option carrying our MAC. Sent on a raw ICMPv6
socket: the kernel picks the source address and computes the checksum over the IPv6
pseudo-header (RFC 3542 3.1: it does so for every ICMPv6 raw socket, whatever the field holds).
"""
from __future__ import annotations

import fcntl
import socket
import struct

ALL_NODES = "ff02::1"
NA = 136
FLAG_OVERRIDE = 0x20000000        # R=0 (not a router), S=0 (unsolicited), O=1
OPT_TARGET_LLADDR = 2
ICMP6_FILTER = 1                   # linux/icmpv6.h
IPV6_MULTICAST_ALL = 29            # linux/in6.h: 0 = only groups this socket joined
SIOCGIFHWADDR = 0x8927


def na_message(mac: str, ip: str) -> bytes:
    """The ICMPv6 part (type, code, checksum 0 for the kernel, flags, target, option): 32 bytes."""
    hw = bytes.fromhex(mac.replace(":", ""))
    return struct.pack("!BBHI16sBB6s", NA, 0, 0, FLAG_OVERRIDE,
                       socket.inet_pton(socket.AF_INET6, ip), OPT_TARGET_LLADDR, 1, hw)


def icmp6_socket(ifname: str) -> socket.socket:
    """A raw ICMPv6 socket that sends on `ifname` only and receives nothing: without the
    filter every ICMPv6 packet the node gets would queue up on it, unread."""
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        s.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, b"\xff" * 32)   # block every type
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_MULTICAST_ALL, 0)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, socket.if_nametoindex(ifname))
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        s.setblocking(False)
    except OSError:
        s.close()
        raise
    return s


def mac_of(sock: socket.socket, ifname: str) -> str | None:
    """The interface's current MAC: one ioctl on the socket we hold, no file to open."""
    try:
        res = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, struct.pack("256s", ifname.encode()))
    except (OSError, ValueError):
        return None
    return res[18:24].hex(":")


def send_na(sock: socket.socket, mac: str, ip: str) -> None:
    sock.sendto(na_message(mac, ip), (ALL_NODES, 0))
