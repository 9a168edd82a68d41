"""The decision rules, scenario by scenario (two engines over a simulated network)."""
from dnspair.core import engine, wire
from pairsim import EXAMPLE, KEY, Pair

A, B = "dns-pm01", "dns-pm02"
V1, V2 = 0, 1


def settle(p, s=0.5):
    p.run(s)
    return p.holders()


def test_startup_puts_each_vip_on_its_preferred_node():
    p = Pair()
    assert settle(p) == {V1: [A], V2: [B]}
    assert p.e[A].ready and p.e[B].ready
    assert not p.double
    assert not any("claimed VIP 192.0.2.12" in line for line in p.logs if line.split()[1] == A + ":")


def test_silent_node_death_moves_both_vips_within_dead_time():
    p = Pair()
    settle(p)
    p.kill(A)
    t0 = p.now
    while p.holders()[V1] != [B]:
        p.step(0.005)
        assert p.now - t0 < 0.5
    assert p.now - t0 <= p.cfg.heartbeat.dead_time + 0.02
    assert p.holders() == {V1: [B], V2: [B]}
    assert (B, V1) in p.announced
    assert any("peer dns-pm01 lost" in line for line in p.logs)


def test_dns_failure_moves_vips_and_manual_failback_waits_for_cleanup():
    p = Pair()
    settle(p)
    p.dns[A] = False
    assert settle(p, 0.3) == {V1: [B], V2: [B]}
    p.dns[A] = True
    assert settle(p, 2.0) == {V1: [B], V2: [B]}, "manual failback: stays until cleanup"
    assert p.e[B].failures == {} and p.e[A].failures[("dns_check", A)].count >= 1
    p.cmd(A, "cleanup")
    assert settle(p, 0.3) == {V1: [A], V2: [B]}
    assert p.e[A].failures == {}
    assert not p.double


def test_failure_threshold_counts_consecutive_failures():
    p = Pair(EXAMPLE.replace("failure_threshold: 1", "failure_threshold: 3"))
    settle(p)
    p.dns[A] = False
    p.run(0.25)      # two failed checks at 0.1 s
    assert p.holders()[V1] == [A]
    p.run(0.2)
    assert p.holders()[V1] == [B]


def test_auto_failback_after_hold_down():
    p = Pair(EXAMPLE.replace("failback: manual", "failback: auto\nhold_down: 2"))
    settle(p)
    p.dns[A] = False
    assert settle(p, 0.3)[V1] == [B]
    p.dns[A] = True
    assert settle(p, 1.5)[V1] == [B], "held down"
    assert settle(p, 1.0)[V1] == [A], "back home after hold-down"
    assert not p.double


def test_standby_drains_without_a_gap_and_unstandby_brings_vips_home():
    p = Pair()
    settle(p)
    p.cmd(A, "standby")
    for _ in range(40):
        assert p.holders()[V1], "a planned move never leaves the VIP unheld"
        p.step(0.005)
    assert p.holders() == {V1: [B], V2: [B]}
    p.cmd(A, "unstandby")
    for _ in range(40):
        assert p.holders()[V1]
        p.step(0.005)
    assert p.holders() == {V1: [A], V2: [B]}
    assert not p.double


def test_move_pins_a_vip_until_cleanup_of_that_vip():
    p = Pair()
    settle(p)
    p.cmd(B, "move", "192.0.2.11", A)   # already there: no change
    p.cmd(A, "move", "192.0.2.12", A)
    assert settle(p, 0.3) == {V1: [A], V2: [A]}
    p.cmd(B, "cleanup", "192.0.2.12")
    assert settle(p, 0.3) == {V1: [A], V2: [B]}


def test_bad_commands_raise_and_change_nothing():
    p = Pair()
    settle(p)
    admin = p.e[A].admin
    for args in [("move", "192.0.2.99", B), ("move", "192.0.2.11", "nobody"), ("cleanup", "10.0.0.1"),
                 ("reboot",)]:
        try:
            p.cmd(A, *args)
        except ValueError:
            pass
        else:
            raise AssertionError(f"{args} accepted")
    assert p.e[A].admin == admin


def test_orderly_stop_hands_over_at_once():
    p = Pair()
    settle(p)
    p.stop(A)
    p.step(0.001)
    assert p.holders() == {V1: [B], V2: [B]}


def test_after_an_orderly_stop_the_vip_goes_home_on_return():
    p = Pair()
    settle(p)
    p.stop(A)
    p.addresses[A].clear()
    settle(p, 0.5)
    p.restart(A, incarnation=2)
    assert settle(p, 0.5) == {V1: [A], V2: [B]}, "a planned restart is not a failover"


def test_partition_heals_to_one_owner_per_vip_and_owner_announces():
    p = Pair()
    settle(p)
    p.link[A] = False
    assert settle(p, 0.5) == {V1: [A, B], V2: [A, B]}, "both take everything while apart"
    p.link[A] = True
    n = len(p.announced)
    assert settle(p, 0.2) == {V1: [A], V2: [B]}
    assert (A, V1) in p.announced[n:] and (B, V2) in p.announced[n:]


def test_carrier_loss_releases_and_claims_nothing():
    p = Pair()
    settle(p)
    p._apply(A, p.e[A].on_carrier(p.now, "eth0", False))
    p.link[A] = False          # its heartbeats share the cable
    p.kill(B)                  # even with the peer gone, nothing is claimed without carrier
    p.run(0.5)
    assert p.addresses[A] == set()


def test_carrier_return_listens_before_claiming_the_peers_vip():
    p = Pair()
    settle(p)
    p._apply(A, p.e[A].on_carrier(p.now, "eth0", False))
    p.link[A] = False
    assert settle(p, 1.0) == {V1: [B], V2: [B]}
    p.link[A] = True
    p._apply(A, p.e[A].on_carrier(p.now, "eth0", True))
    assert p.addresses[A] == set(), "nothing claimed on the stale view"
    assert settle(p, 0.5) == {V1: [B], V2: [B]}, "manual failback: the peer keeps them"


def test_a_thawed_node_listens_before_claiming():
    p = Pair()
    settle(p)
    p.up[A] = False                       # frozen: no ticks, no sends, no receives
    p.run(1.0)
    p.up[A] = True
    p._apply(A, p.e[A].resync(p.now, "stalled"))
    assert p.addresses[A] == {V1}, "keeps what it holds, claims nothing new"
    p.run(0.5)
    assert p.holders()[V2] == [B]
    assert not p.double


def test_witness_must_answer_after_the_peer_went_quiet():
    p = Pair(EXAMPLE + "\nwitness: 192.0.2.254\n")
    for n in p.names:
        p._apply(n, p.e[n].on_witness(0.0, True))
    settle(p)
    p.kill(A)
    p.run(0.5)
    assert p.addresses[B] == {V2}, "an old witness answer proves nothing"
    p._apply(B, p.e[B].on_witness(p.now, True))
    assert p.addresses[B] == {V1, V2}


def test_witness_unreachable_blocks_takeover_but_keeps_own_vip():
    p = Pair(EXAMPLE + "\nwitness: 192.0.2.254\n")
    for n in p.names:
        p._apply(n, p.e[n].on_witness(0.0, True))
    settle(p)
    p._apply(B, p.e[B].on_witness(p.now, False))
    p.link[A] = False
    p.run(0.5)
    p._apply(A, p.e[A].on_witness(p.now, True))
    assert p.addresses[B] == {V2}
    assert p.addresses[A] == {V1, V2}


def test_restart_adopts_held_addresses_without_flapping():
    p = Pair()
    settle(p)
    p.kill(A)
    p.restart(A, incarnation=2)
    released = [line for line in p.logs if "released" in line]
    p.run(0.5)
    assert p.holders() == {V1: [A], V2: [B]}
    assert [line for line in p.logs if "released" in line] == released


def test_restart_after_crash_release_keeps_vip_on_survivor_in_manual_mode():
    p = Pair()
    settle(p)
    p.kill(A)
    p.addresses[A].clear()      # the unit's stop hook removed the addresses
    p.run(0.5)
    p.restart(A, incarnation=2)
    assert settle(p, 1.0) == {V1: [B], V2: [B]}


def test_forged_replayed_and_garbage_datagrams_change_nothing():
    p = Pair()
    settle(p)
    e = p.e[B]
    good = wire.encode(p.e[A].message(p.now), KEY)
    p._apply(B, e.on_datagram(p.now, 0, good))
    before = (set(e.held), e.peer.applied, e.admin)
    evil = [good,                                           # replay
            wire.encode(p.e[A].message(p.now), b"x" * 32),  # wrong key
            b"\x00" * 100, b"", good[:-3],
            wire.encode(wire.Message(cluster="other", sender=A, incarnation=9, seq=1), KEY),
            wire.encode(wire.Message(cluster="clst-01", sender="mallory", incarnation=9, seq=1), KEY)]
    logs = []
    for d in evil:
        logs += e.on_datagram(p.now, 0, d)
    assert (set(e.held), e.peer.applied, e.admin) == before
    assert set(e.drops) == {"replay", "bad_mac", "truncated", "wrong_cluster", "wrong_sender"}
    assert len([a for a in logs if isinstance(a, engine.Log)]) == len(e.drops), "logged once per reason"


def test_config_digest_mismatch_is_noticed():
    p = Pair()
    settle(p)
    other = Pair(EXAMPLE.replace("failback: manual", "failback: auto"))
    msg = other.e[A].message(p.now)
    msg = wire.Message(**{**msg.__dict__, "incarnation": 99})
    acts = p.e[B].on_datagram(p.now, 0, wire.encode(msg, KEY))
    assert any("different config" in a.text for a in acts if isinstance(a, engine.Log))
    assert p.e[B].peer_digest_ok is False
