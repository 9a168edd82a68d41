"""Whether bind has a UDP socket on an address yet: /proc/net/udp and udp6 of this namespace.

bind (`listen-on { any; }`, automatic-interface-scan) opens its socket on a VIP only after the
kernel tells it the address appeared; on a loaded machine that took up to 20 ms here (measured
2026-12-03 with three busy loops on the 2-core VM; under 1 ms at rest). A query reaching the new
owner in that window is refused (ICMP port unreachable): lost. So the actuator announces the
VIP, and sends the heartbeat that lets the old holder release it, only once this says yes, or
after WAIT (a bind that listens on the wildcard address is seen at once; a bind that never opens
the socket cannot answer anyway, and the engine's DNS check judges it). Heartbeats queue behind the claim
meanwhile, so the wait is also kept under half the peer's suspect_after: a slow bind must not
make this node look silent.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Callable

log = logging.getLogger("dnspair")
WAIT = 1.0      # s: at most this long between adding a VIP and announcing it
POLL = 0.002    # s


def bound_wait(suspect_after: float) -> float:
    return min(WAIT, suspect_after / 2)


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


async def until_bound(ip: str, port: int, check: Callable[[str, int], bool] = bound,
                      wait: float = WAIT) -> float | None:
    """Wait until `check(ip, port)`; seconds it took, None if `wait` ran out (logged)."""
    t0 = time.monotonic()
    while not check(ip, port):
        if time.monotonic() - t0 >= wait:
            log.warning("VIP %s: no socket on port %d after %.1f s; announcing anyway", ip, port, wait)
            return None
        await asyncio.sleep(POLL)
    return time.monotonic() - t0
