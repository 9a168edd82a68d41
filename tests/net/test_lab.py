"""The namespace lab itself: real bind answers, real carrier loss, real ARP, real loss rules.

No timing assertions here (the machine is shared); speed belongs in bench/.
"""

import shutil
import socket
import subprocess
import time

import pytest

import lab as labmod
from lab import ANSWER, CLIENT_ADDR, NODE_ADDR, NODE_ADDR2, NODES, VIP1

pytestmark = pytest.mark.net


def test_bind_answers_on_each_node_address(lab):
    for node in NODES:
        a = lab.query(NODE_ADDR[node])
        assert a is not None, lab.bind_log(node)[-2000:]
        assert a.rcode == 0
        assert a.addresses == [ANSWER[node]]
        assert a.node == node
        # the health-check name, asked inside the node itself
        h = lab.query("127.0.0.1", "localhost", where=node)
        assert h is not None and h.addresses == ["127.0.0.1"]


def test_bind_answers_on_an_address_added_later(lab):
    """A VIP that lands on a node is answered by that node's bind (listen-on any)."""
    assert lab.who_answers(VIP1, timeout=0.5) is None
    lab.add_address("node2", f"{VIP1}/24")
    assert lab.wait_answer(VIP1, "node2", timeout=60)
    assert lab.vips_on("node2") == [VIP1]
    lab.del_address("node2", f"{VIP1}/24")
    assert lab.vips_on("node2") == []


def test_link_down_makes_node_unreachable(lab):
    lab.link_down("node1")
    assert not lab.carrier("node1")
    assert lab.query(NODE_ADDR["node1"], timeout=1.0) is None
    assert lab.who_answers(NODE_ADDR["node2"]) == "node2"
    lab.link_up("node1")
    assert lab.carrier("node1")
    assert lab.wait_answer(NODE_ADDR["node1"], "node1", timeout=60)


def test_arp_cache_readable(lab):
    assert lab.who_answers(NODE_ADDR["node1"]) == "node1"
    assert lab.arp_entry("client", NODE_ADDR["node1"]) == lab.node_mac("node1")
    assert lab.arp_owner(NODE_ADDR["node1"]) == "node1"
    assert lab.arp_entry("node1", CLIENT_ADDR) == lab.mac("client")
    lab.flush_arp("client")
    assert lab.arp_entry("client", NODE_ADDR["node1"]) is None


def test_arp_cache_follows_a_gratuitous_arp(lab):
    """The mechanism failover relies on: an address moves and its new owner announces it."""
    lab.add_address("node1", f"{VIP1}/24")
    assert lab.wait_answer(VIP1, "node1", timeout=60)
    assert lab.arp_owner(VIP1) == "node1"
    lab.del_address("node1", f"{VIP1}/24")
    lab.add_address("node2", f"{VIP1}/24")
    # iputils arping is not assumed; send the gratuitous ARP with a raw packet socket.
    s = lab.socket("node2", socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    try:
        s.bind(("eth0", 0))
        mac = bytes.fromhex(lab.node_mac("node2").replace(":", ""))
        ip = socket.inet_aton(VIP1)
        frame = (b"\xff" * 6 + mac + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x01"
                 + mac + ip + b"\x00" * 6 + ip)
        s.send(frame)
    finally:
        s.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and lab.arp_owner(VIP1) != "node2":
        time.sleep(0.05)
    assert lab.arp_owner(VIP1) == "node2"
    assert lab.wait_answer(VIP1, "node2", timeout=60)


def test_bind_stop_and_hang(lab):
    lab.stop_bind("node1")
    assert not lab.bind_running("node1")
    assert lab.query(NODE_ADDR["node1"], timeout=1.0) is None
    lab.restore_bind("node1")
    assert lab.who_answers(NODE_ADDR["node1"]) == "node1"
    lab.hang_bind("node1")
    assert lab.bind_running("node1")
    assert lab.query(NODE_ADDR["node1"], timeout=1.0) is None
    lab.resume_bind("node1")
    assert lab.wait_answer(NODE_ADDR["node1"], "node1", timeout=60)


def _blast(lab, sender, receiver, dst, count=2000, port=5999):
    """Send `count` datagrams in small batches, draining the receiver as we go; return
    how many arrived."""
    rx = lab.socket(receiver)
    rx.bind((dst, port))
    tx = lab.socket(sender)
    got = 0

    def drain(wait):
        nonlocal got
        rx.settimeout(wait)
        while True:
            try:
                rx.recv(64)
                got += 1
                rx.settimeout(0.01)
            except (TimeoutError, BlockingIOError):
                return

    try:
        for i in range(count):
            tx.sendto(b"hb%d" % i, (dst, port))
            if i % 20 == 19:
                drain(0.01)
        drain(1.0)
        return got
    finally:
        rx.close()
        tx.close()


def test_loss_rule_drops_about_the_asked_fraction(lab):
    assert _blast(lab, "node1", "node2", NODE_ADDR["node2"]) == 2000
    lab.drop_heartbeats("node2", 30)
    got = _blast(lab, "node1", "node2", NODE_ADDR["node2"])
    assert 2000 * 0.55 < got < 2000 * 0.85, got          # ~70 % arrive
    assert 2000 * 0.15 < lab.drop_counter("node2") < 2000 * 0.45
    # the client is not a peer: its packets are untouched
    assert _blast(lab, "client", "node2", NODE_ADDR["node2"]) == 2000
    lab.drop_heartbeats("node2", 0)
    assert _blast(lab, "node1", "node2", NODE_ADDR["node2"]) == 2000


def test_loss_rule_narrowed_to_a_port(lab):
    lab.drop_heartbeats("node2", 100, port=6000)
    assert _blast(lab, "node1", "node2", NODE_ADDR["node2"], count=200, port=6000) == 0
    assert _blast(lab, "node1", "node2", NODE_ADDR["node2"], count=200, port=6001) == 200


def test_partition_keeps_clients(lab2):
    lab2.partition()
    for node, peer in (("node1", "node2"), ("node2", "node1")):
        assert lab2.query(NODE_ADDR[peer], where=node, timeout=1.0) is None
        assert lab2.query(NODE_ADDR2[peer], where=node, timeout=1.0) is None
        assert lab2.who_answers(NODE_ADDR[node]) == node
    lab2.heal()
    assert lab2.query(NODE_ADDR2["node2"], where="node1").node == "node2"


def test_second_link_is_separate(lab2):
    assert lab2.query(NODE_ADDR2["node2"], where="node1").node == "node2"
    lab2.link_down("node2", 1)
    assert lab2.query(NODE_ADDR2["node2"], where="node1", timeout=1.0) is None
    assert lab2.query(NODE_ADDR["node2"], where="node1").node == "node2"


def test_getent_through_resolv_conf(lab):
    lab.resolv_conf([NODE_ADDR["node1"], NODE_ADDR["node2"]], options="timeout:1 attempts:1")
    dt, addr = lab.getent()
    assert addr == ANSWER["node1"]
    lab.stop_bind("node1")
    dt, addr = lab.getent()
    assert addr == ANSWER["node2"]


def test_processes_and_namespaces_are_removed():
    why = labmod.requirements_missing()
    if why:
        pytest.skip(why)
    lab = labmod.Lab()
    lab.start()
    p = lab.popen("client", ["sleep", "600"])
    pids = [p.pid] + [lab.bind_process(n).pid for n in NODES]
    names = list(lab.ns.values())
    lab.hang_bind("node2")  # a stopped process must still be cleaned up
    lab.close()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for n in names:
        assert n not in listed.split()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                assert f.read().split()[2] == "Z"
        except FileNotFoundError:
            pass
    assert not lab.workdir.exists()


def test_refuses_addresses_outside_test_net(lab):
    with pytest.raises(labmod.LabError):
        lab.query("10.0.0.1")
    with pytest.raises(labmod.LabError):
        lab.resolv_conf(["8.8.8.8"])


def test_daemon_command_is_found(lab):
    cmd = lab.dnspair_command()
    assert cmd and isinstance(cmd, list)


def test_bench_smoke(tmp_path):
    """The benchmark runs end to end on the lab (one keepalived run, no timing asserted)."""
    why = labmod.requirements_missing()
    if why:
        pytest.skip(why)
    if not shutil.which("keepalived", path="/usr/sbin:/usr/bin") or not shutil.which("dig"):
        pytest.skip("needs keepalived and dig (apt-get install keepalived bind9-dnsutils)")
    import json
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "-m", "bench", "--runs", "1", "--systems",
                        "keepalived-tuned", "--faults", "orderly_stop", "--no-loss",
                        "--no-rest", "--json", str(out)], cwd=repo, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| orderly stop of the HA daemon |" in r.stdout
    res = json.loads(out.read_text())["results"]["keepalived-tuned"]["faults"]["orderly_stop"]
    assert "error" not in res[0], res
    assert res[0]["outage"] is not None
