"""Failover on a real network: two node namespaces, real bind9, the real daemons, a client."""
import signal
import time

import lab as labmod
from pair import Pair
from test_faults_common import log_time

VIP1, VIP2 = labmod.VIP1, labmod.VIP2


def test_startup_each_vip_on_its_node_and_answered_by_its_bind(lab):
    p = Pair(lab)
    p.start()
    p.wait_served(VIP1, "node1")
    p.wait_served(VIP2, "node2")
    assert p.owners("node1") == {VIP1: "dns-pm01", VIP2: "dns-pm02"}
    assert p.owners("node2") == {VIP1: "dns-pm01", VIP2: "dns-pm02"}
    assert lab.vips_on("node1") == [VIP1] and lab.vips_on("node2") == [VIP2]
    text = p.cli("node1", "status")
    assert text.returncode == 0
    assert "Online: [ dns-pm01 dns-pm02 ]" in text.stdout
    assert "192.0.2.11/24 (eth0): Started dns-pm01" in text.stdout
    assert "authkey" not in text.stdout and open(lab.workdir / "authkey").read().strip() not in text.stdout


def test_node_death_by_link_down_moves_both_vips_and_the_client_arp(lab):
    p = Pair(lab)
    p.start()
    p.wait_served(VIP1, "node1")
    assert lab.arp_owner(VIP1) == "node1"
    lab.link_down("node1")
    p.wait(lambda: VIP1 in lab.vips_on("node2"), "VIP1 lands on node2")
    # bind's interface scan picks the new address up by itself: answered at once.
    p.wait_served(VIP1, "node2", timeout=1.0)
    p.wait_served(VIP2, "node2")
    assert lab.arp_owner(VIP1) == "node2", "the gratuitous ARP moved the client's cache"
    assert lab.vips_on("node1") == [], "no carrier: node1 let its VIP go"
    st = p.status("node2")
    assert not next(n for n in st["nodes"] if not n["self"])["online"]
    assert any(f["what"] == "peer_lost" for f in st["failed_actions"])


def test_bind_stopped_then_manual_failback_with_cleanup(lab):
    p = Pair(lab)
    p.start()
    p.wait_served(VIP1, "node1")
    lab.stop_bind("node1")
    p.wait_served(VIP1, "node2")
    st = p.status("node1")
    assert any(f["what"] == "dns_check" and "refused" in f["why"] for f in st["failed_actions"])
    lab.restore_bind("node1")
    p.wait(lambda: p.me("node1")["dns"]["ok"], "node1 DNS healthy again")
    time.sleep(1.0)
    assert p.owners() == {VIP1: "dns-pm02", VIP2: "dns-pm02"}, "manual failback: stays"
    assert "stays until `dnspair cleanup`" in p.cli("node1", "status").stdout
    r = p.cli("node1", "cleanup")
    assert r.returncode == 0, r.stderr
    p.wait_served(VIP1, "node1")
    assert p.status("node2")["failed_actions"] == []


def test_bind_hung_moves_the_vip(lab):
    p = Pair(lab)
    p.start()
    p.wait_served(VIP1, "node1")
    lab.hang_bind("node1")
    try:
        p.wait_served(VIP1, "node2")
        assert any("timeout" in f["why"] for f in p.status("node1")["failed_actions"])
    finally:
        lab.resume_bind("node1")


def test_auto_failback_after_hold_down(lab):
    p = Pair(lab, extra="hold_down: 3", failback="auto")
    p.start()
    p.wait_served(VIP1, "node1")
    lab.stop_bind("node1")
    p.wait_served(VIP1, "node2")
    lab.restore_bind("node1")
    p.wait_served(VIP1, "node1", timeout=15)
    # Measured between node1's own log lines, not by polling `status`: a loaded machine
    # starts the CLI late, and the hold-down would look short.
    healthy = log_time(lab, "node1", "local DNS healthy again")
    back = log_time(lab, "node1", "claimed VIP 192.0.2.11/24", after=healthy)
    assert back - healthy >= 2.5, f"back {back - healthy:.2f} s after DNS healthy: before the hold-down"


def test_standby_and_unstandby(lab):
    p = Pair(lab)
    p.start()
    p.wait_served(VIP1, "node1")
    r = p.cli("node1", "standby")
    assert r.returncode == 0, r.stderr
    p.wait_served(VIP1, "node2")
    st = p.status("node2")
    assert next(n for n in st["nodes"] if n["name"] == "dns-pm01")["standby"]
    assert p.cli("node1", "unstandby").returncode == 0
    p.wait_served(VIP1, "node1")


def test_orderly_stop_hands_over_before_the_dead_time(lab):
    p = Pair(lab, extra="heartbeat: {interval: 0.5, dead_time: 5, suspect_after: 1}")
    p.start()
    p.wait_served(VIP1, "node1")
    t0 = time.monotonic()
    assert p.stop("node1") == 0
    p.wait_served(VIP1, "node2", timeout=4)
    assert time.monotonic() - t0 < 4.5, "took over on bye, not after the 5 s dead time"
    assert lab.vips_on("node1") == []


def test_partition_and_heal_leave_one_owner_per_vip(lab):
    p = Pair(lab)
    p.start()
    p.wait_served(VIP1, "node1")
    p.wait_served(VIP2, "node2")
    lab.partition()
    p.wait(lambda: VIP2 in lab.vips_on("node1") and VIP1 in lab.vips_on("node2"), "both take all")
    p.wait(lambda: lab.arp_owner(VIP2) == "node1" or lab.arp_owner(VIP1) == "node2",
           "an announcement during the partition moved the client")
    lab.heal()
    p.wait(lambda: lab.vips_on("node1") == [VIP1] and lab.vips_on("node2") == [VIP2], "one owner each")
    p.wait(lambda: lab.arp_owner(VIP1) == "node1" and lab.arp_owner(VIP2) == "node2",
           "the owners announced again")


def test_forged_and_replayed_heartbeats_are_ignored(lab):
    import socket
    p = Pair(lab)
    p.start()
    p.wait_served(VIP1, "node1")
    before = p.owners("node2")
    # Send node2 garbage and a wrong-key message from node1's own heartbeat address and port.
    from dnspair.core import wire
    forged = wire.encode(wire.Message(cluster="clst-01", sender="dns-pm01", incarnation=2**62, seq=1,
                                      nvips=2, held=0, dns_ok=False), b"x" * 32)
    s = lab.socket("node1")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("192.0.2.1", 7405))  # only the peer's heartbeat address and port get in
    try:
        for data in (b"\x00" * 50, forged, b"DP" + b"\xff" * 300):
            s.sendto(data, ("192.0.2.2", 7405))
    finally:
        s.close()
    time.sleep(0.5)
    st = p.status("node2")
    assert p.owners("node2") == before
    assert st["heartbeat"]["dropped"].get("bad_mac", 0) >= 1
    assert sum(st["heartbeat"]["dropped"].values()) >= 3


def test_crash_release_hook_and_clean_restart(lab):
    p = Pair(lab)
    p.start()
    p.wait_served(VIP1, "node1")
    p.stop("node1", sig=signal.SIGKILL)
    assert lab.vips_on("node1") == [VIP1], "a crash leaves the address behind..."
    r = lab.dnspair_cli("node1", "release", "--config", str(p.configs["node1"]))
    assert r.returncode == 0 and "released 192.0.2.11/24" in r.stdout
    assert lab.vips_on("node1") == []
    p.wait_served(VIP1, "node2")
    p.start("node1")
    time.sleep(1.0)
    assert p.owners("node1") == {VIP1: "dns-pm02", VIP2: "dns-pm02"}, "manual failback after a crash"
