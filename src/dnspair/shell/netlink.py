"""VIP addresses and carrier, through netlink (pyroute2)."""
from __future__ import annotations

import asyncio
import logging

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTMGRP_LINK

EEXIST, EADDRNOTAVAIL, ENODEV = 17, 99, 19
IFA_F_NODAD = 0x02   # linux/if_addr.h
log = logging.getLogger("dnspair")


class Netlink:
    def __init__(self) -> None:
        self.ipr: AsyncIPRoute | None = None
        self._index: dict[str, int] = {}

    async def open(self) -> None:
        self.ipr = AsyncIPRoute()

    async def close(self) -> None:
        if self.ipr is not None:
            self.ipr.close()

    @property
    def _ipr(self) -> AsyncIPRoute:
        if self.ipr is None:
            raise RuntimeError("Netlink.open() was not called")
        return self.ipr

    async def index(self, ifname: str) -> int:
        if ifname not in self._index:
            found = await self._ipr.link_lookup(ifname=ifname)
            if not found:
                raise LookupError(f"no interface {ifname}")
            self._index[ifname] = found[0]
        return self._index[ifname]

    async def addresses(self, ifname: str) -> set[str]:
        try:
            idx = await self.index(ifname)
        except LookupError:
            return set()
        return {m.get_attr("IFA_ADDRESS") async for m in await self._ipr.addr("dump", index=idx)}

    async def add(self, ifname: str, ip: str, prefixlen: int) -> None:
        """Idempotent: an address already there is fine. An IPv6 address skips duplicate
        address detection: it serves at once instead of a second later (tentative until
        then), and the old owner still holding it (a partition) does not disable it."""
        extra = {"flags": IFA_F_NODAD} if ":" in ip else {}
        try:
            await self._ipr.addr("add", index=await self.index(ifname), address=ip,
                                 prefixlen=prefixlen, **extra)
        except NetlinkError as e:
            if e.code != EEXIST:
                raise

    async def remove(self, ifname: str, ip: str, prefixlen: int) -> None:
        """Idempotent: an address already gone is fine."""
        try:
            await self._ipr.addr("del", index=await self.index(ifname), address=ip, prefixlen=prefixlen)
        except NetlinkError as e:
            if e.code not in (EADDRNOTAVAIL, ENODEV):
                raise
        except LookupError:
            pass

    async def carrier(self, ifname: str) -> bool:
        try:
            links = await self._ipr.link("get", index=await self.index(ifname))
        except (LookupError, NetlinkError):
            return False
        return any(bool(m.get_attr("IFLA_CARRIER")) and m["flags"] & 1 for m in links)


async def watch_carrier(ifnames: set[str], on_change) -> None:
    """Calls on_change(ifname, up) for every link event on the given interfaces."""
    mon = AsyncIPRoute()
    await mon.bind(groups=RTMGRP_LINK)
    try:
        while True:  # get() yields what has arrived, then ends
            async for msg in mon.get():
                name = msg.get_attr("IFLA_IFNAME")
                if name in ifnames:
                    up = bool(msg.get_attr("IFLA_CARRIER")) and bool(msg["flags"] & 1)
                    on_change(name, up)
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
