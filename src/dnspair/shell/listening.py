"""Whether bind has a UDP socket on an address yet: /proc/net/udp and udp6 of this namespace.

bind (`listen-on { any; }`, automatic-interface-scan) opens its socket on a VIP only after the
kernel tells it the address appeared. The engine announces a claimed VIP only once this says
yes (it asks with `CheckListening`, and owns the cadence and the bound: core/engine.py,
LISTEN_POLL and LISTEN_WAIT); this module only reads.
"""
from __future__ import annotations

import socket
import struct


def _hex(ip: str) -> tuple[str, str, str]:
    """(file, address as /proc prints it, the wildcard address) for ip."""
    if ":" in ip:
        words = struct.unpack("=4I", socket.inet_pton(socket.AF_INET6, ip))
        return "/proc/net/udp6", "".join(f"{w:08X}" for w in words), "0" * 32
    return "/proc/net/udp", f"{struct.unpack('=I', socket.inet_aton(ip))[0]:08X}", "0" * 8


def bound(ip: str, port: int, proc: str | None = None) -> bool:
    """A UDP socket is bound to ip:port (or to the wildcard address and port) here."""
    path, want, wild = _hex(ip)
    suffix = f":{port:04X}"
    try:
        with open(proc or path) as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if len(fields) > 1 and fields[1] in (want + suffix, wild + suffix):
                    return True
    except OSError:
        return True   # no /proc to read: do not hold up the claim
    return False
