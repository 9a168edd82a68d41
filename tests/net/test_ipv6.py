"""IPv6 on a par with IPv4, on the namespace network with IPv6 on (2001:db8::/32 only): IPv6 VIPs
through node death, bind stopped and bind hung within the IPv4 outage budgets, the client's
neighbour cache (`ip -6 neigh`) moved by unsolicited Neighbour Advertisements, a pair mixing
IPv4 and IPv6 VIPs, and the heartbeat over an IPv6 link."""
import socket
import time
from pathlib import Path

import pytest
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import Ether

import lab as labmod
from campaign import BUDGET
from pair import Pair, vip_yaml
from test_faults_common import Background, Watcher, outage

VIP1, VIP2 = labmod.VIP1, labmod.VIP2
VIP6A, VIP6B = labmod.VIP6A, labmod.VIP6B
SLACK = 0.5            # the shared 2-core machine, on top of the campaign's budgets
ARP_COUNT, ARP_SPACING = 5, 0.3   # the defaults: one burst is 5 announcements 0.3 s apart
V6_PAIR = vip_yaml((f"{VIP6A}/64", "node1"), (f"{VIP6B}/64", "node2"))


class Capture(Background):
    """Every IPv6 frame the client's eth0 receives, with its arrival time, from a packet socket."""

    def __init__(self, lab):
        self.sock = lab.socket("client", socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86DD))
        self.sock.bind(("eth0", 0x86DD))
        self.sock.settimeout(0.1)
        self.frames: list[tuple[float, bytes]] = []
        self._init_thread()

    def close(self):
        self.sock.close()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.frames.append((time.monotonic(), self.sock.recv(2048)))
            except TimeoutError:
                continue

    def advertisements(self, target: str, since: float) -> list[tuple[float, Ether]]:
        out = []
        for t, raw in list(self.frames):
            pkt = Ether(raw)
            if t >= since and ICMPv6ND_NA in pkt and pkt[ICMPv6ND_NA].tgt == target:
                out.append((t, pkt))
        return out


def served_at_once(lab, node: str, ip: str) -> dict:
    """The address on `node` as the kernel has it: added without DAD, so not tentative."""
    info = next((a for a in lab.address_info(node) if a["local"] == ip), None)
    assert info is not None, f"{ip} not on {node}"
    assert info.get("nodad") and not info.get("tentative") and not info.get("dadfailed"), info
    return info


def checksum_ok(pkt: Ether) -> bool:
    na = pkt[ICMPv6ND_NA]
    sent = na.cksum
    del na.cksum
    return Ether(bytes(pkt))[ICMPv6ND_NA].cksum == sent


def test_ipv6_vip_node_death_moves_the_client_neighbour_cache_with_override_nas(lab6):
    p = Pair(lab6, vips=V6_PAIR)
    p.start()
    p.wait_served(VIP6A, "node1")
    p.wait_served(VIP6B, "node2")
    assert lab6.arp_owner(VIP6A) == "node1", lab6.run("client", "ip", "-6", "neigh").stdout
    served_at_once(lab6, "node1", VIP6A)
    with Capture(lab6) as cap, Watcher(lab6, vips=(VIP6A,), timeout=0.1) as w:
        time.sleep(0.5)   # the client's entry for VIP6A is REACHABLE at node1 now: only an
        t0 = time.monotonic()   # advertisement with the override flag replaces it
        lab6.link_down("node1")
        p.wait(lambda: lab6.arp_owner(VIP6A) == "node2", "client's neighbour cache on node2")
        time.sleep(ARP_COUNT * ARP_SPACING + 0.5)
        t1 = time.monotonic()
    took = outage(w, VIP6A, "node2", t0)
    print(f"\nIPv6 node death: answered by node2 after {took:.3f} s; {w.summary(t0, t1)}")
    assert took <= BUDGET["link"] + SLACK, w.summary(t0, t1)
    served_at_once(lab6, "node2", VIP6A)
    mac2 = lab6.node_mac("node2")
    nas = [(t, pkt) for t, pkt in cap.advertisements(VIP6A, t0) if pkt.src == mac2]
    assert len(nas) >= ARP_COUNT, f"a burst of {ARP_COUNT}: {len(nas)} seen"
    for _t, pkt in nas:
        ip6, na = pkt[IPv6], pkt[ICMPv6ND_NA]
        assert pkt.dst == "33:33:00:00:00:01" and ip6.dst == "ff02::1" and ip6.hlim == 255
        assert (na.R, na.S, na.O) == (0, 0, 1)
        assert na[ICMPv6NDOptDstLLAddr].lladdr == mac2
        assert checksum_ok(pkt), pkt.show(dump=True)
    burst = [t for t, _ in nas[:ARP_COUNT]]
    assert burst[-1] - burst[0] >= (ARP_COUNT - 1) * ARP_SPACING * 0.8, "spread like the ARP burst"


@pytest.mark.parametrize("fault", ["bind_stop", "bind_hang"])
def test_ipv6_vip_bind_stopped_or_hung_moves_within_the_ipv4_budget_and_cleanup_brings_it_home(
        lab6, fault):
    p = Pair(lab6, vips=V6_PAIR)
    p.start()
    p.wait_served(VIP6A, "node1")
    p.wait_served(VIP6B, "node2")
    with Watcher(lab6, vips=(VIP6A,), timeout=0.1) as w, Watcher(lab6, vips=(VIP6B,)) as w2:
        time.sleep(0.5)
        t0 = time.monotonic()
        if fault == "bind_stop":
            lab6.stop_bind("node1")
        else:
            lab6.hang_bind("node1")
        try:
            p.wait(lambda: lab6.arp_owner(VIP6A) == "node2", "client's neighbour cache on node2")
            p.wait_served(VIP6A, "node2")
            time.sleep(0.5)
            t1 = time.monotonic()
        finally:
            lab6.restore_bind("node1")
    took = outage(w, VIP6A, "node2", t0)
    print(f"\nIPv6 {fault}: answered by node2 after {took:.3f} s; {w.summary(t0, t1)}")
    assert took <= BUDGET[fault] + SLACK, w.summary(t0, t1)
    assert w.answerers(VIP6A, t0, t1) == ["node1", "node2"] or w.answerers(VIP6A, t0, t1) == ["node2"]
    assert w2.lost(VIP6B, t0, t1) == 0 and w2.answerers(VIP6B, t0, t1) == ["node2"], w2.summary(t0, t1)
    why = " ".join(f["why"] for f in p.status("node1")["failed_actions"])
    assert ("refused" if fault == "bind_stop" else "timeout") in why, why
    p.wait(lambda: p.me("node1")["dns"]["ok"], "node1 DNS healthy again")
    assert p.cli("node1", "cleanup").returncode == 0
    p.wait_served(VIP6A, "node1")
    p.wait(lambda: lab6.arp_owner(VIP6A) == "node1", "client's neighbour cache back on node1")
    assert lab6.addresses("node2", family="inet6").count(VIP6A) == 0


def test_a_mixed_pair_moves_its_ipv4_and_ipv6_vips_together(lab6):
    vips = vip_yaml(("192.0.2.11/24", "node1"), (f"{VIP6A}/64", "node1"), ("192.0.2.12/24", "node2"))
    p = Pair(lab6, vips=vips)
    p.start()
    for vip, node in ((VIP1, "node1"), (VIP6A, "node1"), (VIP2, "node2")):
        p.wait_served(vip, node)
    text = p.cli("node1", "status").stdout
    assert f"{VIP6A}/64 (eth0): Started dns-pm01" in text and "192.0.2.11/24 (eth0): Started dns-pm01" in text
    with Watcher(lab6, vips=(VIP1,), timeout=0.1) as w4, Watcher(lab6, vips=(VIP6A,), timeout=0.1) as w6:
        time.sleep(0.5)
        t0 = time.monotonic()
        lab6.link_down("node1")
        p.wait(lambda: lab6.arp_owner(VIP1) == "node2" and lab6.arp_owner(VIP6A) == "node2",
               "both neighbour caches on node2")
        time.sleep(0.5)
    took4, took6 = outage(w4, VIP1, "node2", t0), outage(w6, VIP6A, "node2", t0)
    print(f"\nmixed pair, node death: IPv4 VIP after {took4:.3f} s, IPv6 VIP after {took6:.3f} s")
    assert took4 <= BUDGET["link"] + SLACK and took6 <= BUDGET["link"] + SLACK, (took4, took6)
    assert sorted(p.owners("node2").values()) == ["dns-pm02"] * 3
    served_at_once(lab6, "node2", VIP6A)


def test_heartbeat_over_an_ipv6_link_with_the_dns_check_on_ipv6_loopback(lab6):
    p = Pair(lab6, vips=V6_PAIR, dns_server="::1",
             addresses=(f"['{labmod.NODE6['node1']}']", f"['{labmod.NODE6['node2']}']"))
    p.start()
    p.wait_served(VIP6A, "node1")
    p.wait_served(VIP6B, "node2")
    peer = next(n for n in p.status("node1")["nodes"] if not n["self"])
    assert peer["online"] and peer["links"][0]["address"] == labmod.NODE6["node2"] and peer["links"][0]["up"]
    assert p.me("node1")["dns"]["ok"], "bind answers the check on ::1"
    assert lab6.addresses("node1", family="inet6").count(VIP6B) == 0, "one owner: they hear each other"
    # Cut only the IPv6 heartbeat: if it did not ride on IPv6, nothing would change.
    nft = labmod._which("nft")
    for node, peer_addr in (("node1", labmod.NODE6["node2"]), ("node2", labmod.NODE6["node1"])):
        lab6.run(node, nft, "-f", "-", input=f"""
table ip6 dplab6 {{
    chain input {{
        type filter hook input priority -10; policy accept;
        ip6 saddr {peer_addr} udp dport 7405 drop
    }}
}}
""")
    p.wait(lambda: VIP6B in lab6.addresses("node1", family="inet6")
           and VIP6A in lab6.addresses("node2", family="inet6"), "both take both: a partition")
    for node in labmod.NODES:
        lab6.run(node, nft, "delete", "table", "ip6", "dplab6")
    p.wait(lambda: lab6.addresses("node1", family="inet6").count(VIP6B) == 0
           and lab6.addresses("node2", family="inet6").count(VIP6A) == 0, "one owner each again")
    p.wait(lambda: lab6.arp_owner(VIP6A) == "node1" and lab6.arp_owner(VIP6B) == "node2",
           "the owners announced again")
    # A failover decided over the IPv6 heartbeat, found by the check on ::1.
    with Watcher(lab6, vips=(VIP6A,), timeout=0.1) as w:
        time.sleep(0.5)
        t0 = time.monotonic()
        lab6.stop_bind("node1")
        p.wait_served(VIP6A, "node2")
        time.sleep(0.3)
    took = outage(w, VIP6A, "node2", t0)
    print(f"\nIPv6 heartbeat, bind stopped: answered by node2 after {took:.3f} s")
    assert took <= BUDGET["bind_stop"] + SLACK, w.summary(t0)
    assert any("refused" in f["why"] for f in p.status("node1")["failed_actions"])


def test_the_images_bind_options_answer_on_an_ipv6_vip_added_after_start(lab6):
    """The image's named.conf.options as rendered (core/bindconf.py; only its directories moved
    into the lab): bind listens on IPv6 and picks up an address that lands after it started,
    as a VIP does."""
    from dnspair.core import bindconf, config
    d = lab6.workdir / "imagebind"
    d.mkdir()
    repo = Path(__file__).resolve().parents[2]
    cfg = config.parse((repo / "example/dnspair.yaml").read_text()
                       + f"bind: {{cache_dir: {d}, run_dir: {d}, etc_dir: {d}}}\n")
    options = bindconf.options(cfg, "dns-pm01", None) + bindconf.key_file(bytes(32))
    zone = ("$TTL 60\n@ IN SOA localhost. root.localhost. 1 3600 600 86400 60\n"
            "@ IN NS localhost.\nlocalhost IN A 127.0.0.1\n")
    (d / "root.zone").write_text(zone)
    # A local root: with `recursion yes`, bind never looks for the real root servers.
    root = f'zone "." {{ type primary; file "{d}/root.zone"; }};\n'
    (d / "named.conf").write_text(options + "controls { };\n" + root)
    lab6.stop_bind("node1")   # the lab's own bind on node1 steps aside
    named = lab6.popen("node1", [labmod._which("named"), "-f", "-g", "-n", "1", "-c", str(d / "named.conf")],
                       log=d / "named.log", what="named (image options)")
    deadline = time.monotonic() + 30
    while lab6.query("127.0.0.1", "localhost", where="node1", timeout=0.5) is None:
        assert named.poll() is None and time.monotonic() < deadline, (d / "named.log").read_text()[-2000:]
    lab6.run("node1", "ip", "addr", "add", f"{VIP6A}/64", "dev", "eth0", "nodad")
    t0 = time.monotonic()
    answer = None
    while answer is None and time.monotonic() - t0 < 5:
        answer = lab6.query(VIP6A, "localhost", timeout=0.2)
    assert answer is not None and answer.addresses == ["127.0.0.1"], (d / "named.log").read_text()[-2000:]
    print(f"\nthe image's bind answered on {VIP6A} {time.monotonic() - t0:.3f} s after it was added")


def test_the_units_release_hook_removes_an_ipv6_vip_a_crash_left_behind(lab6):
    import signal
    p = Pair(lab6, vips=V6_PAIR)
    p.start()
    p.wait_served(VIP6A, "node1")
    p.stop("node1", sig=signal.SIGKILL)
    assert VIP6A in lab6.addresses("node1", family="inet6"), "a crash leaves the address behind"
    r = lab6.dnspair_cli("node1", "release", "--config", str(p.configs["node1"]))
    assert r.returncode == 0 and f"released {VIP6A}/64" in r.stdout, r.stdout + r.stderr
    assert VIP6A not in lab6.addresses("node1", family="inet6")
    p.wait_served(VIP6A, "node2")
    p.wait(lambda: lab6.arp_owner(VIP6A) == "node2", "client's neighbour cache on node2")


def test_an_ipv6_pair_behind_the_generated_firewall_hears_itself_and_moves_its_vips(lab6):
    """Both nodes under `dnspair firewall --apply` (table inet dnspair, policy drop), IPv6 VIPs
    and the heartbeat over IPv6: the peer is heard, the client finds the VIPs by neighbour
    discovery (its solicitations must get in) and gets its answers over IPv6, a node's death
    moves its VIP, and a LAN host that is not the peer gets nothing from the heartbeat port."""
    from pair import NODE_NAME
    p = Pair(lab6, vips=V6_PAIR,
             addresses=(f"['{labmod.NODE6['node1']}']", f"['{labmod.NODE6['node2']}']"))
    for node in labmod.NODES:
        r = lab6.dnspair_cli(node, "firewall", "--apply", "--config", str(p.configs[node]),
                             "--node", NODE_NAME[node], "--include-dir", "", "--unit", "")
        assert r.returncode == 0 and "firewall: applied" in r.stdout, r.stdout + r.stderr
    table = lab6.run("node1", labmod._which("nft"), "list", "table", "inet", "dnspair").stdout
    assert f"ip6 saddr {labmod.NODE6['node2']} ip6 daddr {labmod.NODE6['node1']} udp dport 7405" in table
    p.start()
    p.wait_served(VIP6A, "node1")
    p.wait_served(VIP6B, "node2")
    peer = next(n for n in p.status("node1")["nodes"] if not n["self"])
    assert peer["online"] and peer["links"][0]["address"] == labmod.NODE6["node2"], peer
    assert lab6.addresses("node1", family="inet6").count(VIP6B) == 0, "one owner: they hear each other"
    assert lab6.arp_owner(VIP6A) == "node1", lab6.run("client", "ip", "-6", "neigh").stdout

    # The client is on the LAN but is not the peer: no answer on the heartbeat port, counted.
    def dropped():
        out = lab6.run("node1", labmod._which("nft"), "list", "counter", "inet", "dnspair", "dropped").stdout
        return int(out.split("packets ")[1].split()[0])
    before = dropped()
    s = lab6.socket("client", socket.AF_INET6)
    s.settimeout(1.0)
    try:
        s.bind((labmod.CLIENT6, 0))
        s.sendto(b"not a heartbeat", (labmod.NODE6["node1"], 7405))
        with pytest.raises(TimeoutError):   # without the firewall: ICMPv6 port unreachable
            s.recvfrom(2048)
    finally:
        s.close()
    assert dropped() >= before + 1

    with Watcher(lab6, vips=(VIP6A,), timeout=0.1) as w:
        time.sleep(0.5)
        t0 = time.monotonic()
        lab6.link_down("node1")
        p.wait(lambda: lab6.arp_owner(VIP6A) == "node2", "client's neighbour cache on node2")
        p.wait_served(VIP6A, "node2")
        time.sleep(0.5)
    took = outage(w, VIP6A, "node2", t0)
    print(f"\nIPv6 behind the firewall, node death: answered by node2 after {took:.3f} s")
    assert took <= BUDGET["link"] + SLACK, w.summary(t0)
