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
    bcast = Ether(src=MAC, dst="ff:ff:ff:ff:ff:ff")
    theirs = [bytes(bcast / ARP(op=1, hwsrc=MAC, psrc="192.0.2.12",
                                hwdst="00:00:00:00:00:00", pdst="192.0.2.12")),
              bytes(bcast / ARP(op=2, hwsrc=MAC, psrc="192.0.2.12",
                                hwdst="ff:ff:ff:ff:ff:ff", pdst="192.0.2.12"))]
    assert ours == theirs


# ---- the announcer: no file or socket opened at announcement time, failed frames retried

import asyncio  # noqa: E402
import builtins  # noqa: E402
import errno  # noqa: E402
import logging  # noqa: E402

import pytest  # noqa: E402

from dnspair.shell.arp import Announcer  # noqa: E402

IP = "192.0.2.12"


class FakeSocket:
    """A bound AF_PACKET socket: getsockname() carries the interface's MAC; `fail` lists the
    errnos the next sends raise (0: that send works)."""

    def __init__(self, mac=MAC, fail=()):
        self.mac, self.fail, self.sent, self.closed = mac, list(fail), [], False

    def getsockname(self):
        return ("eth0", 0x0806, 0, 1, bytes.fromhex(self.mac.replace(":", "")))

    def send(self, frame):
        e = self.fail.pop(0) if self.fail else 0
        if e:
            raise OSError(e, "fake " + errno.errorcode[e])
        self.sent.append(frame)
        return len(frame)

    def close(self):
        self.closed = True


class Opener:
    def __init__(self, *socks):
        self.socks, self.opened = list(socks), []

    def __call__(self, ifname):
        if not self.socks:
            raise OSError(errno.EMFILE, "Too many open files")
        self.opened.append(ifname)
        return self.socks.pop(0)


@pytest.fixture
def records():
    """What the daemon's logger says (it does not propagate to pytest's caplog)."""
    out = []
    h = logging.Handler()
    h.emit = out.append
    lg = logging.getLogger("dnspair")
    old = lg.level
    lg.addHandler(h)
    lg.setLevel(logging.INFO)
    yield out
    lg.removeHandler(h)
    lg.setLevel(old)


def run_bursts(a, *ips, ifname="eth0"):
    async def go():
        for ip in ips:
            a.announce(ifname, ip)
            await a._tasks[ip]
    asyncio.run(go())


def src_macs(frames):
    return {f[6:12].hex(":") for f in frames}


def test_an_opened_announcer_sends_its_bursts_with_no_file_or_socket_to_open(monkeypatch):
    sock = FakeSocket()
    opener = Opener(sock)
    a = Announcer(3, 0.001, opener=opener)
    a.open(["eth0"])
    assert opener.opened == ["eth0"]

    def no_files(*args, **kw):
        raise OSError(errno.EMFILE, "Too many open files")
    monkeypatch.setattr(builtins, "open", no_files)   # the file table is full from here on
    run_bursts(a, IP, "192.0.2.11")
    assert len(sock.sent) == 2 * 3 * 2, "every frame of both bursts went out"
    assert src_macs(sock.sent) == {MAC}
    assert opener.opened == ["eth0"], "opened once, not per burst"


def test_without_open_the_first_burst_opens_the_socket_once(monkeypatch):
    sock = FakeSocket()
    opener = Opener(sock)
    a = Announcer(2, 0.001, opener=opener)
    run_bursts(a, IP, IP)
    assert opener.opened == ["eth0"] and len(sock.sent) == 2 * 2 * 2


def test_the_mac_follows_the_interface_without_opening_a_file(monkeypatch):
    sock = FakeSocket()
    a = Announcer(1, 0.001, opener=Opener(sock))
    a.open(["eth0"])
    monkeypatch.setattr(builtins, "open", lambda *a, **k: pytest.fail("opened a file"))
    sock.mac = "02:00:5e:00:01:99"          # `ip link set eth0 address ...`
    run_bursts(a, IP)
    assert src_macs(sock.sent) == {"02:00:5e:00:01:99"}


def test_a_failed_send_is_retried_at_the_next_spacing_and_logged_once(records):
    sock = FakeSocket(fail=[0, 0, errno.ENOBUFS])   # the second slot's first frame fails
    a = Announcer(3, 0.001, opener=Opener(sock))
    a.open(["eth0"])
    run_bursts(a, IP)
    assert len(sock.sent) == 3 * 2, "three whole slots out: the failed one was sent again"
    assert not sock.closed, "a full queue is no reason to reopen"
    warnings = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "fake ENOBUFS" in warnings[0], warnings


def test_a_broken_socket_is_reopened_and_its_new_mac_used(records):
    old = FakeSocket(fail=[errno.ENXIO])            # the interface was replaced
    new = FakeSocket(mac="02:00:5e:00:01:77")
    opener = Opener(old, new)
    a = Announcer(2, 0.001, opener=opener)
    a.open(["eth0"])
    run_bursts(a, IP)
    assert old.closed and opener.opened == ["eth0", "eth0"]
    assert old.sent == [] and len(new.sent) == 2 * 2 and src_macs(new.sent) == {"02:00:5e:00:01:77"}


def test_a_failure_that_persists_is_logged_once_per_kind_not_per_frame(records):
    sock = FakeSocket(fail=[errno.ENETDOWN] * 100)
    a = Announcer(5, 0.001, opener=Opener(sock))
    a.open(["eth0"])
    run_bursts(a, IP, IP, "192.0.2.11")
    warnings = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    per_kind = [w for w in warnings if "failed" in w]
    assert len(per_kind) == 1, warnings
    assert len(warnings) == 1 + 3, f"plus one summary per burst: {warnings}"
    assert sock.fail, "a dead interface does not keep a burst going: at most 2 x count tries"
