"""Gratuitous ARP announcements, so clients and switches move to us at once; for an IPv6 VIP
the same bursts are unsolicited Neighbour Advertisements (ndp.py).

The frames are 42 bytes built with struct and sent on a raw AF_PACKET socket. scapy (the
packet library the tests dissect these frames with) is not loaded in the daemon: it alone
would cost more resident memory (about 34 MB) than the rest of the daemon's libraries.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from . import ndp

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


# The socket itself is gone (interface deleted or replaced): open a new one next time.
BROKEN = {errno.ENXIO, errno.ENODEV, errno.EBADF}


def _packet_socket(ifname: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    try:
        s.bind((ifname, ETH_P_ARP))
        s.setblocking(False)
    except OSError:
        s.close()
        raise
    return s


def _mac_of(sock: socket.socket) -> str | None:
    """The interface's current MAC, from the bound socket: a syscall, no file to open."""
    try:
        hw = sock.getsockname()[4]
    except (OSError, IndexError):
        return None
    return hw.hex(":") if len(hw) == 6 else None


def _send_garp(sock: socket.socket, mac: str, ip: str) -> None:
    for f in garp_frames(mac, ip):
        sock.send(f)


@dataclass(frozen=True)
class Kind:
    """How one address family announces: open a socket, read the MAC from it, send once."""
    name: str
    opener: Callable[[str], socket.socket]
    mac: Callable[[socket.socket, str], str | None]
    send: Callable[[socket.socket, str, str], None]


ARP = Kind("gratuitous ARP", _packet_socket, lambda s, _ifname: _mac_of(s), _send_garp)
NDP = Kind("unsolicited NA", ndp.icmp6_socket, ndp.mac_of, ndp.send_na)
# An interface and a family: (eth0, 4) holds a packet socket, (eth0, 6) an ICMPv6 one.
Key = tuple[str, int]


class Announcer:
    """Announcement bursts that never depend on opening anything at that moment: the socket per
    interface and family is opened once (at `open`, or at first use) and kept; the MAC is read
    from that socket. A frame that fails to go out is tried again at the next spacing."""

    def __init__(self, count: int, spacing: float, opener=_packet_socket, kind6: Kind = NDP):
        self.count, self.spacing = count, spacing
        self._open_socket = opener
        self.kinds = {4: ARP, 6: kind6}
        self._sockets: dict[Key, socket.socket] = {}
        self._macs: dict[Key, str] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self._failing: dict[Key, set[str]] = {}   # (interface, family) -> failures already logged

    def open(self, ifnames, family: int = 4) -> None:
        """Open every interface's socket now, before any announcement is needed. A failure is
        logged; that interface is tried again at its first burst."""
        for ifname in ifnames:
            try:
                self._socket((ifname, family))
            except OSError as e:
                self._failed((ifname, family), None, "open", e)

    def _socket(self, key: Key) -> socket.socket:
        if key not in self._sockets:
            s = (self._open_socket if key[1] == 4 else self.kinds[6].opener)(key[0])
            try:
                self._macs[key] = self.kinds[key[1]].mac(s, key[0]) or self._read_mac(key[0])
            except OSError:
                s.close()
                raise
            self._sockets[key] = s
        return self._sockets[key]

    @staticmethod
    def _read_mac(ifname: str) -> str:
        """Only when the socket cannot tell (once per socket opened)."""
        with open(f"/sys/class/net/{ifname}/address") as f:
            return f.read().strip()

    def _mac(self, key: Key, sock: socket.socket) -> str:
        mac = self.kinds[key[1]].mac(sock, key[0])
        if mac and mac != self._macs.get(key):
            self._macs[key] = mac  # the interface's address was changed under us
        return self._macs[key]

    def announce(self, ifname: str, ip: str, refresh: bool = False) -> None:
        """Send a burst: one now, the rest `spacing` apart (a newer burst replaces an older one).
        A refresh is one announcement, and none while a burst for that address still runs."""
        running = self._tasks.get(ip)
        if refresh and running is not None and not running.done():
            return
        self.cancel(ip)
        count = 1 if refresh else self.count
        self._tasks[ip] = asyncio.get_running_loop().create_task(self._burst(ifname, ip, count))

    async def _burst(self, ifname: str, ip: str, count: int) -> None:
        """`count` frames out, `spacing` apart; a failed one is retried at the next spacing
        (at most `count` retries, so a dead interface does not keep a burst alive)."""
        key = (ifname, 6 if ":" in ip else 4)
        kind = self.kinds[key[1]]
        sent = tries = 0
        while sent < count and tries < 2 * count:
            if tries:
                await asyncio.sleep(self.spacing)
            tries += 1
            phase = "open"
            try:
                sock = self._socket(key)
                phase = "send"
                kind.send(sock, self._mac(key, sock), ip)
            except OSError as e:
                self._failed(key, ip, phase, e)
                continue
            sent += 1
        if sent == count:
            if self._failing.pop(key, None):
                log.info("%s on %s works again", kind.name, ifname)
        else:
            log.warning("%s for %s on %s: %d of %d frames went out", kind.name, ip, ifname,
                        sent, self.count)

    def _failed(self, key: Key, ip: str | None, phase: str, e: OSError) -> None:
        """Log each kind of failure once while an interface keeps failing; reopen a broken socket."""
        if phase == "send" and e.errno in BROKEN:
            old = self._sockets.pop(key, None)
            if old:
                old.close()
        what = f"{phase} {errno.errorcode.get(e.errno or 0, e.errno)}"
        seen = self._failing.setdefault(key, set())
        if what not in seen:
            seen.add(what)
            log.warning("%s%s on %s: %s failed: %s (retried; not logged again "
                        "until it works)", self.kinds[key[1]].name, f" for {ip}" if ip else "",
                        key[0], phase, e.strerror or e)

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
        self._sockets.clear()
