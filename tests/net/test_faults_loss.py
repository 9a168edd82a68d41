"""Random heartbeat loss for 60 s: no failover, no flap, as a client sees it.

Both nodes drop N % of the heartbeat datagrams arriving from the peer (nftables
`numgen random mod 100 < N drop` on UDP 7405, in each node's input). Loss is not death: the
probes sent every 2 ms after 0.13 s of silence must find the peer alive every time.
"""
import time

import pytest

import lab as labmod
from pair import Pair
from test_faults_common import Watcher, failovers, held

VIP1, VIP2 = labmod.VIP1, labmod.VIP2
DURATION = 60.0
HOME = {VIP1: "node1", VIP2: "node2"}


@pytest.mark.parametrize("percent", [20, 40])
def test_random_heartbeat_loss_is_no_failover_and_no_flap(lab, percent):
    p = Pair(lab)
    p.start()
    p.wait_served(VIP1, "node1")
    p.wait_served(VIP2, "node2")
    owners0 = p.owners("node1")
    f0 = failovers(p)
    assert owners0 == {VIP1: "dns-pm01", VIP2: "dns-pm02"}
    for node in labmod.NODES:
        lab.drop_heartbeats(node, percent, port=7405)
    bad_holds = []
    with Watcher(lab) as w:
        t0 = time.monotonic()
        while time.monotonic() - t0 < DURATION:
            h1, h2 = held(lab, "node1"), held(lab, "node2")
            if h1 != {VIP1} or h2 != {VIP2}:
                bad_holds.append((round(time.monotonic() - t0, 3), sorted(h1), sorted(h2)))
            time.sleep(0.25)
        t1 = time.monotonic()
    dropped = {n: lab.drop_counter(n) for n in labmod.NODES}
    for node in labmod.NODES:
        lab.clear_drops(node)
    sts = {n: p.status(n) for n in labmod.NODES}
    print(f"\n{percent} % loss for {DURATION:.0f} s: heartbeats dropped by nftables {dropped}; "
          f"client: {w.summary(t0, t1)}; failovers "
          f"{ {n: s['failovers']['count'] for n, s in sts.items()} }; "
          f"rtt {sts['node1']['heartbeat']['rtt_ms']} ms")
    assert all(d > 100 for d in dropped.values()), f"the loss rule did drop heartbeats: {dropped}"
    for vip, home in HOME.items():
        assert w.answerers(vip, t0, t1) == [home], \
            f"{vip} answered only by {home} throughout:\n{w.summary(t0, t1)}\n{p.logs()}"
        n = len(w.of(vip, t0, t1))
        assert n > DURATION / 0.2, f"the watcher kept asking ({n} queries)"
        assert w.lost(vip, t0, t1) <= max(3, n // 100), \
            f"DNS traffic is not dropped, so nearly every query is answered: {w.summary(t0, t1)}"
    assert bad_holds == [], f"each node held exactly its own VIP all along: {bad_holds[:10]}"
    for node, st in sts.items():
        assert st["failovers"]["count"] == f0[node], (node, f0, st["failovers"], p.logs())
        assert not [f for f in st["failed_actions"] if f["what"] == "peer_lost"], \
            (node, st["failed_actions"], p.logs())
        assert all(n["online"] for n in st["nodes"]), st["nodes"]
        assert p.owners(node) == owners0
