"""Gratuitous ARP announcements (scapy), so clients and switches move to us at once."""
from __future__ import annotations

import asyncio
import logging

from scapy.config import conf
from scapy.layers.l2 import ARP, Ether

log = logging.getLogger("dnspair")
BROADCAST = "ff:ff:ff:ff:ff:ff"


def garp_frames(mac: str, ip: str) -> list[bytes]:
    """A request and a reply, both claiming ip for mac: some stacks only heed one kind."""
    req = Ether(src=mac, dst=BROADCAST) / ARP(op=1, hwsrc=mac, psrc=ip, hwdst="00:00:00:00:00:00", pdst=ip)
    rep = Ether(src=mac, dst=BROADCAST) / ARP(op=2, hwsrc=mac, psrc=ip, hwdst=BROADCAST, pdst=ip)
    return [bytes(req), bytes(rep)]


class Announcer:
    def __init__(self, count: int, spacing: float):
        self.count, self.spacing = count, spacing
        self._sockets = {}
        self._tasks: dict[str, asyncio.Task] = {}

    def _socket(self, ifname: str):
        if ifname not in self._sockets:
            self._sockets[ifname] = conf.L2socket(iface=ifname)
        return self._sockets[ifname]

    def _mac(self, ifname: str) -> str:
        with open(f"/sys/class/net/{ifname}/address") as f:
            return f.read().strip()

    def announce(self, ifname: str, ip: str) -> None:
        """Send a burst: one now, the rest `spacing` apart (a newer burst replaces an older one)."""
        old = self._tasks.pop(ip, None)
        if old:
            old.cancel()
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
        except asyncio.CancelledError:
            raise
        except OSError as e:
            self._sockets.pop(ifname, None)
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
