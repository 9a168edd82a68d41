"""Witness reachability: one ICMP echo (icmplib) to the configured address."""
from __future__ import annotations

from icmplib import async_ping
from icmplib.exceptions import ICMPLibError


async def reachable(address: str, timeout: float) -> bool:
    try:
        host = await async_ping(address, count=1, timeout=timeout, privileged=True)
    except (ICMPLibError, OSError):
        return False
    return host.is_alive
