"""The gratuitous ARP frames, dissected by scapy: what a switch and a client will read."""
from scapy.layers.l2 import ARP, Ether

from dnspair.shell.arp import garp_frames

MAC = "02:00:5e:00:01:00"


def test_frames_are_a_gratuitous_request_and_reply_for_the_vip():
    req, rep = (Ether(f) for f in garp_frames(MAC, "192.0.2.11"))
    for frame in (req, rep):
        assert len(bytes(frame)) == 42
        assert frame.dst == "ff:ff:ff:ff:ff:ff" and frame.src == MAC and frame.type == 0x0806
        arp = frame[ARP]
        assert (arp.hwtype, arp.ptype, arp.hwlen, arp.plen) == (1, 0x0800, 6, 4)
        assert arp.hwsrc == MAC and arp.psrc == "192.0.2.11" and arp.pdst == "192.0.2.11"
    assert req[ARP].op == 1 and req[ARP].hwdst == "00:00:00:00:00:00"
    assert rep[ARP].op == 2 and rep[ARP].hwdst == "ff:ff:ff:ff:ff:ff"


def test_frames_match_what_scapy_builds():
    ours = garp_frames(MAC, "192.0.2.12")
    theirs = [bytes(Ether(src=MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=MAC, psrc="192.0.2.12",
                                                                   hwdst="00:00:00:00:00:00", pdst="192.0.2.12")),
              bytes(Ether(src=MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=2, hwsrc=MAC, psrc="192.0.2.12",
                                                                   hwdst="ff:ff:ff:ff:ff:ff", pdst="192.0.2.12"))]
    assert ours == theirs
