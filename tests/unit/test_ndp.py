"""The unsolicited Neighbour Advertisement, dissected by scapy, and the announcer's choice of
NA for an IPv6 VIP (ARP for IPv4), on the same interface."""
import asyncio

from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr
from scapy.layers.l2 import ARP, Ether

from dnspair.shell import ndp
from dnspair.shell.arp import Announcer, Kind

MAC = "02:00:5e:00:01:00"
VIP6 = "2001:db8::53"


def test_na_is_unsolicited_with_override_and_our_mac_as_target_lladdr():
    msg = ndp.na_message(MAC, "2001:DB8:0::53")
    na = ICMPv6ND_NA(msg)
    assert len(msg) == 32
    assert (na.type, na.code) == (136, 0)
    assert (na.R, na.S, na.O) == (0, 0, 1), "override: replace a cached MAC; not solicited"
    assert na.tgt == VIP6
    opt = na[ICMPv6NDOptDstLLAddr]
    assert (opt.type, opt.len, opt.lladdr) == (2, 1, MAC)


def test_na_matches_what_scapy_builds():
    # The checksum stays 0: the kernel computes it for every ICMPv6 raw socket (RFC 3542 3.1);
    # tests/net/test_ipv6.py checks it on the wire.
    ours = ndp.na_message(MAC, VIP6)
    theirs = bytes(ICMPv6ND_NA(R=0, S=0, O=1, tgt=VIP6, cksum=0) / ICMPv6NDOptDstLLAddr(lladdr=MAC))
    assert ours == theirs


class FakeSocket:
    def __init__(self):
        self.sent = []

    def getsockname(self):
        return ("eth0", 0x0806, 0, 1, bytes.fromhex(MAC.replace(":", "")))

    def send(self, frame):
        self.sent.append(frame)

    def sendto(self, data, addr):
        self.sent.append((data, addr))

    def fileno(self):
        return -1

    def close(self):
        pass


def test_an_ipv6_vip_is_announced_by_na_to_all_nodes_an_ipv4_one_by_arp():
    s4, s6 = FakeSocket(), FakeSocket()
    opened = []

    def open4(ifname):
        opened.append((ifname, 4))
        return s4

    def open6(ifname):
        opened.append((ifname, 6))
        return s6
    kind6 = Kind("unsolicited NA", open6, lambda s, i: MAC, ndp.send_na)
    a = Announcer(3, 0.001, opener=open4, kind6=kind6)
    a.open(["eth0"], 4)
    a.open(["eth0"], 6)

    async def go():
        for ip in ("192.0.2.11", VIP6):
            a.announce("eth0", ip)
            await a._tasks[ip]
    asyncio.run(go())
    assert opened == [("eth0", 4), ("eth0", 6)], "one socket per family, opened once"
    assert [ARP in Ether(f) for f in s4.sent] == [True] * 6
    assert len(s6.sent) == 3, "a burst of arp.count advertisements"
    for data, addr in s6.sent:
        assert addr == ("ff02::1", 0)
        assert ICMPv6ND_NA(data).tgt == VIP6 and ICMPv6ND_NA(data).O == 1
