"""Gratuitous ARP announcements, so clients and switches move to us at once.

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


class Announcer:
    """Gratuitous ARP bursts that never depend on opening anything at that moment: the packet
    socket per interface is opened once (at `open`, or at first use) and kept; the MAC is read
    from that socket. A frame that fails to go out is tried again at the next spacing."""

    def __init__(self, count: int, spacing: float, opener=_packet_socket):
        self.count, self.spacing = count, spacing
        self._open_socket = opener
        self._sockets: dict[str, socket.socket] = {}
        self._macs: dict[str, str] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self._failing: dict[str, set[str]] = {}   # interface -> failure kinds already logged

    def open(self, ifnames) -> None:
        """Open every interface's socket now, before any announcement is needed. A failure is
        logged; that interface is tried again at its first burst."""
        for ifname in ifnames:
            try:
                self._socket(ifname)
            except OSError as e:
                self._failed(ifname, None, "open", e)

    def _socket(self, ifname: str) -> socket.socket:
        if ifname not in self._sockets:
            s = self._open_socket(ifname)
            try:
                self._macs[ifname] = _mac_of(s) or self._read_mac(ifname)
            except OSError:
                s.close()
                raise
            self._sockets[ifname] = s
        return self._sockets[ifname]

    @staticmethod
    def _read_mac(ifname: str) -> str:
        """Only when the socket cannot tell (once per socket opened)."""
        with open(f"/sys/class/net/{ifname}/address") as f:
            return f.read().strip()

    def _mac(self, ifname: str, sock: socket.socket) -> str:
        mac = _mac_of(sock)
        if mac and mac != self._macs.get(ifname):
            self._macs[ifname] = mac  # the interface's address was changed under us
        return self._macs[ifname]

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
        sent = tries = 0
        while sent < count and tries < 2 * count:
            if tries:
                await asyncio.sleep(self.spacing)
            tries += 1
            phase = "open"
            try:
                sock = self._socket(ifname)
                phase = "send"
                for f in garp_frames(self._mac(ifname, sock), ip):
                    sock.send(f)
            except OSError as e:
                self._failed(ifname, ip, phase, e)
                continue
            sent += 1
        if sent == count:
            if self._failing.pop(ifname, None):
                log.info("gratuitous ARP on %s works again", ifname)
        else:
            log.warning("gratuitous ARP for %s on %s: %d of %d frames went out", ip, ifname,
                        sent, self.count)

    def _failed(self, ifname: str, ip: str | None, phase: str, e: OSError) -> None:
        """Log each kind of failure once while an interface keeps failing; reopen a broken socket."""
        if phase == "send" and e.errno in BROKEN:
            old = self._sockets.pop(ifname, None)
            if old:
                old.close()
        kind = f"{phase} {errno.errorcode.get(e.errno or 0, e.errno)}"
        seen = self._failing.setdefault(ifname, set())
        if kind not in seen:
            seen.add(kind)
            log.warning("gratuitous ARP%s on %s: %s failed: %s (retried; not logged again "
                        "until it works)", f" for {ip}" if ip else "", ifname, phase,
                        e.strerror or e)

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
