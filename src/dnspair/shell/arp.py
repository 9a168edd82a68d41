"""Gratuitous ARP announcements, so clients and switches move to us at once.

The frames are 42 bytes built with struct and sent on a raw AF_PACKET socket. scapy (the
packet library the tests dissect these frames with) is not loaded in the daemon: it alone
would cost more resident memory (about 34 MB) than the rest of the daemon's libraries.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import struct

log = logging.getLogger("dnspair")
ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6


def garp_frames(mac: str, ip: str) -> list[bytes]:
    """A request and a reply, both claiming ip for mac: some stacks only heed one kind."""
    hw = bytes.fromhex(mac.replace(":", ""))
    pa = socket.inet_aton(ip)
    frames = []
    for op, target_hw in ((1, b"\0" * 6), (2, BROADCAST)):
        eth = BROADCAST + hw + struct.pack("!H", ETH_P_ARP)
        arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, hw, pa, target_hw, pa)
        frames.append(eth + arp)
    return frames


class Announcer:
    def __init__(self, count: int, spacing: float):
        self.count, self.spacing = count, spacing
        self._sockets: dict[str, socket.socket] = {}
        self._tasks: dict[str, asyncio.Task] = {}

    def _socket(self, ifname: str) -> socket.socket:
        if ifname not in self._sockets:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
            s.bind((ifname, ETH_P_ARP))
            s.setblocking(False)
            self._sockets[ifname] = s
        return self._sockets[ifname]

    @staticmethod
    def _mac(ifname: str) -> str:
        with open(f"/sys/class/net/{ifname}/address") as f:
            return f.read().strip()

    def announce(self, ifname: str, ip: str) -> None:
        """Send a burst: one now, the rest `spacing` apart (a newer burst replaces an older one)."""
        self.cancel(ip)
        self._tasks[ip] = asyncio.get_running_loop().create_task(self._burst(ifname, ip))

    async def _burst(self, ifname: str, ip: str) -> None:
        try:
            frames = garp_frames(self._mac(ifname), ip)
            for k in range(self.count):
                if k:
                    await asyncio.sleep(self.spacing)
                sock = self._socket(ifname)
                for f in frames:
                    sock.send(f)
        except OSError as e:
            old = self._sockets.pop(ifname, None)
            if old:
                old.close()
            log.warning("gratuitous ARP for %s on %s failed: %s", ip, ifname, e)

    def cancel(self, ip: str) -> None:
        """Stop announcing an address we no longer hold."""
        old = self._tasks.pop(ip, None)
        if old:
            old.cancel()

    def close(self):
        for t in self._tasks.values():
            t.cancel()
        for s in self._sockets.values():
            s.close()
