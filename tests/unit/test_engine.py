"""The decision rules, scenario by scenario (two engines over a simulated network)."""
import pytest

from dnspair.core import actions, engine, events, wire
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


def test_orderly_stop_hands_over_before_letting_go():
    """With a live, healthy peer a stop is a hand-over: the peer claims and announces VIP1
    before this node releases it, so no query falls between the two."""
    p = Pair()
    settle(p)
    n = len(p.acted)
    t0 = p.now
    p.stop(A)
    while p.up[A]:
        p.step(0.001)
        assert p.holders()[V1], "VIP1 held by nobody during the stop"
        assert p.now - t0 < engine.STOP_HANDOVER
    assert p.holders() == {V1: [B], V2: [B]}
    acted = p.acted[n:]
    assert acted.index((B, actions.Announce(V1))) < acted.index((A, actions.Release(V1))), acted
    assert any("handing 192.0.2.11 over to" in line for line in p.logs)


@pytest.mark.parametrize("peer", ["dead", "in standby"])
def test_orderly_stop_with_no_peer_to_take_over_releases_at_once(peer):
    """A peer that could not take the VIPs (dead, in standby; likewise bind failed, not ready)
    gets no hand-over to wait for: the stop lets go at once and says bye, as before."""
    p = Pair()
    settle(p)
    if peer == "dead":
        p.kill(B)
    else:
        p.cmd(B, "standby")
    p.run(0.5)
    assert p.holders() == {V1: [A], V2: [A]}
    _stops_at_once(p)


def test_a_second_stop_during_the_hand_over_stops_at_once():
    p = Pair()
    settle(p)
    p.link[B] = False          # B hears nothing more: A's hand-over cannot end by itself
    p.stop(A)
    assert p.up[A] and p.e[A].leave_by is not None
    _stops_at_once(p)


def _stops_at_once(p):
    p.stop(A)
    p.step(0.01)
    assert not p.up[A] and p.addresses[A] == set()


def test_commands_during_a_stop_s_hand_over_are_refused():
    p = Pair()
    settle(p)
    p.link[B] = False
    p.stop(A)
    for args in [("unstandby",), ("cleanup",), ("move", "192.0.2.11", A)]:
        with pytest.raises(ValueError, match="^stopping"):
            p.cmd(A, *args)
    assert p.e[A].standby and p.e[A].leave_by is not None


def test_a_hand_over_the_peer_never_takes_ends_at_its_limit():
    p = Pair()
    settle(p)
    p.link[B] = False
    t0 = p.now
    p.stop(A)
    while p.up[A]:
        p.step(0.01)
        assert p.now - t0 < engine.STOP_HANDOVER + engine.BYE_SPACING * engine.BYE_REPEATS + 0.05
    assert p.addresses[A] == set()


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
    p.carrier(A, False)
    p.link[A] = False          # its heartbeats share the cable
    p.kill(B)                  # even with the peer gone, nothing is claimed without carrier
    p.run(0.5)
    assert p.addresses[A] == set()


def test_carrier_return_listens_before_claiming_the_peers_vip():
    p = Pair()
    settle(p)
    p.carrier(A, False)
    p.link[A] = False
    assert settle(p, 1.0) == {V1: [B], V2: [B]}
    p.link[A] = True
    p.carrier(A, True)
    assert p.addresses[A] == set(), "nothing claimed on the stale view"
    assert settle(p, 0.5) == {V1: [B], V2: [B]}, "manual failback: the peer keeps them"


def test_a_thawed_node_listens_before_claiming():
    p = Pair()
    settle(p)
    p.freeze(A)                           # frozen: no ticks, no sends, no receives
    p.run(1.0)
    p.thaw(A)
    assert p.addresses[A] == {V1}, "keeps what it holds, claims nothing new"
    p.run(0.5)
    assert p.holders()[V2] == [B]
    assert not p.double


def test_witness_must_answer_after_the_peer_went_quiet():
    p = Pair(EXAMPLE + "\nwitness: 192.0.2.254\n")
    for n in p.names:
        p.witness(n, True)
    settle(p)
    p.kill(A)
    p.run(0.5)
    assert p.addresses[B] == {V2}, "an old witness answer proves nothing"
    p.witness(B, True)
    assert p.addresses[B] == {V1, V2}


def test_a_witness_answer_counts_from_when_its_ping_was_sent():
    """Found on the namespace network: a ping out when the peer was last heard, answered just
    after, was taken as proof that the witness answered after the peer went quiet. So a node
    cut off from the LAN in between took the peer's VIP. The answer now counts from its ping;
    an ask while that ping was out goes once it is back."""
    p = Pair(EXAMPLE + "\nwitness: {address: 192.0.2.254, interval: 0.2, timeout: 0.2}\n")
    for n in p.names:
        p.witness(n, True)
    settle(p)
    start = len(p.asked)
    while len(p.asked) == start or p.asked[-1][1] != B:
        p.step(0.001)
    sent = p.now                 # B's ping goes out, and the peer is still heard after it
    p.run(0.05, dt=0.001)
    p.kill(A)                    # ... then the peer falls silent and B is cut off
    p.run(0.3, dt=0.001)         # B finds A dead; its ask for a fresh ping is held back
    assert [t for t, n in p.asked if n == B and t > sent] == []
    p.witness(B, True)           # the answer to the ping sent before A went quiet
    p.run(0.3, dt=0.001)
    assert p.addresses[B] == {V2}, p.logs[-5:]
    again = [t for t, n in p.asked if n == B and t > sent]
    assert again and again[0] == pytest.approx(sent + 0.35, abs=0.002), again   # asked once it was back
    p.witness(B, True)           # a ping sent after A went quiet: it is A that is gone
    assert p.addresses[B] == {V1, V2}


def test_a_node_back_from_a_cut_listens_before_it_takes_the_peers_vip():
    """Seen on the namespace network: when the cut heals, the witness may answer before the
    peer's next heartbeat arrives; the node took VIP1 for that moment and the client followed."""
    p = Pair(EXAMPLE + "\nwitness: {address: 192.0.2.254, interval: 0.2, timeout: 0.2}\n")
    for n in p.names:
        p.witness(n, True)
    settle(p)
    p.link[B] = False            # B cut off: no heartbeats, no witness
    p.run(0.3, dt=0.001)
    p.witness(B, False)
    start = len(p.asked)
    while len(p.asked) == start or p.asked[-1][1] != B:
        p.step(0.001)
    assert p.addresses[B] == {V2}
    p.witness(B, True)           # healed: the witness answers the ping just sent ...
    assert p.addresses[B] == {V2}, p.logs[-4:]
    p.link[B] = True             # ... before A's next heartbeat arrives
    p.run(0.3, dt=0.001)
    assert p.addresses[B] == {V2} and p.addresses[A] == {V1}, p.logs[-6:]


def test_witness_unreachable_blocks_takeover_but_keeps_own_vip():
    p = Pair(EXAMPLE + "\nwitness: 192.0.2.254\n")
    for n in p.names:
        p.witness(n, True)
    settle(p)
    p.witness(B, False)
    p.link[A] = False
    p.run(0.5)
    p.witness(A, True)
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
    good = [d for _, n, d in p.sent if n == A][-1]     # A's newest heartbeat, already applied
    before = (set(e.held), e.peer.msg, e.admin)
    evil = [good,                                           # replay
            wire.encode(p.e[A].message(p.now), b"x" * 32),  # wrong key
            b"\x00" * 100, b"", good[:-3],
            wire.encode(wire.Message(cluster="other", sender=A, incarnation=9, seq=1), KEY),
            wire.encode(wire.Message(cluster="clst-01", sender="mallory", incarnation=9, seq=1), KEY)]
    logs = []
    for d in evil:
        logs += e.handle(p.now, events.Datagram(0, d)).actions
    assert (set(e.held), e.peer.msg, e.admin) == before
    assert set(e.drops) == {"replay", "bad_mac", "truncated", "wrong_cluster", "wrong_sender"}
    assert len([a for a in logs if isinstance(a, actions.Log) and "dropped" in a.text]) == len(e.drops), \
        "logged once per reason"


def test_config_digest_mismatch_is_noticed():
    p = Pair()
    settle(p)
    other = Pair(EXAMPLE.replace("failback: manual", "failback: auto"))
    msg = other.e[A].message(p.now)
    # a restart of A (higher start counter) that echoes B, with another config
    msg = wire.Message(**{**msg._asdict(), "incarnation": wire.incarnation(50, 1),
                          "echo": p.e[B].incarnation, "ack_seq": p.e[B].seq})
    acts = p.e[B].handle(p.now, events.Datagram(0, wire.encode(msg, KEY))).actions
    assert any("different config" in a.text for a in acts if isinstance(a, actions.Log))
    assert p.e[B].peer_digest_ok is False


# --- incarnations, echoes and contests (issue: correct under any schedule of faults) -------

def test_a_restart_with_a_smaller_incarnation_is_heard_again():
    """A Pi without a clock, or with its state directory lost, starts "earlier"."""
    p = Pair()
    settle(p)
    p.kill(B)
    p.run(0.5)
    p.restart(B, incarnation=wire.incarnation(0, 1))   # smaller than before in every bit
    p.run(0.5)
    assert p.e[A].peer_alive(p.now) and p.e[B].peer_alive(p.now)
    p.dns[A] = False
    p.run(0.5)
    assert p.holders() == {V1: [B], V2: [B]}


def _forged(p, sender, **kw):
    msg = p.e[sender].message(p.now)
    return wire.encode(wire.Message(**{**msg._asdict(), **kw}), KEY)


def test_one_datagram_with_the_largest_incarnation_locks_nobody_out():
    p = Pair()
    settle(p)
    p.deliver(A, events.Datagram(0, _forged(p, B, incarnation=2**64 - 1, seq=2**64 - 1)))
    p.run(1.0)
    assert p.e[A].peer_alive(p.now), "the real peer is live again after the dead time at most"
    p.kill(B)
    p.run(0.5)
    p.restart(B, incarnation=wire.incarnation(2, 9))
    p.run(0.5)
    assert p.e[A].peer_alive(p.now)
    p.dns[A] = False
    p.run(0.5)
    assert p.holders() == {V1: [B], V2: [B]}


def test_replayed_heartbeats_of_an_earlier_incarnation_are_not_a_live_peer():
    p = Pair()
    settle(p)
    recorded = [d for _, n, d in p.sent if n == B]
    p.kill(B)
    p.kill(A)
    p.addresses[A].clear()
    p.restart(A, incarnation=wire.incarnation(2, 77))
    for k in range(150):            # replay B's heartbeats to the fresh A, 10 ms apart
        p.deliver(A, events.Datagram(0, recorded[k % len(recorded)]))
        p.step(0.01)
    assert not p.e[A].peer_alive(p.now)
    assert p.addresses[A] == {V1, V2}, "the fresh node takes the silent peer's VIP"


def test_after_a_freeze_the_node_that_keeps_a_vip_announces_it_last():
    """The freeze black-hole: B claimed VIP1 while A was frozen, then A kept it; the client
    still pointed at B. The final owner must announce after the loser's last announcement."""
    for frozen in (0.15, 0.21, 0.25, 0.3, 0.5):
        p = Pair()
        settle(p)
        p.freeze(A)
        p.run(frozen, dt=0.005)
        p.thaw(A)
        p.run(1.0, dt=0.005)
        holder = p.holders()[V1]
        assert len(holder) == 1, (frozen, holder)
        last = [n for n, i in p.announced if i == V1]
        assert last and last[-1] == holder[0], (frozen, p.announced, p.logs[-20:])


def test_a_peer_at_the_largest_admin_counter_does_not_stop_commands():
    p = Pair()
    settle(p)
    for counter in (0x60000000, 0xC0000000, 0xFFFFFFFF):   # serial numbers: they wrap
        top = wire.Admin(counter, 1, (0, 0))
        p.e[B].admin = top                                  # the peer advertises it
        p.run(0.2)
        assert p.e[A].admin == top
    p.cmd(A, "move", "192.0.2.12", A)
    p.run(0.5)
    assert p.e[A].admin.counter == 1 and p.e[B].admin.counter == 1
    assert p.holders()[V2] == [A]


def test_a_hung_bind_fails_its_check_when_the_engine_s_timeout_runs_out():
    p = Pair()
    settle(p)
    p.dns[A] = "hung"
    t0 = p.now
    while p.holders()[V1] != [B]:
        p.step(0.005)
        assert p.now - t0 < 1.0
    check = p.cfg.dns_check
    assert p.now - t0 <= check.interval + check.timeout + 0.02
    assert "timeout after" in p.e[A].dns_error
    p.dns[A] = True
    p.run(0.5)
    assert p.e[A].dns_ok and p.e[A].dns_error is None


def test_a_slow_answer_settles_only_the_checks_sent_before_it():
    """bind slower than the check interval, then hung: the last slow answer settles its own
    check and the ones before it; the timeout runs from the first check it did not answer."""
    p = Pair()
    settle(p)
    e, check = p.e[A], p.cfg.dns_check
    p.dns[A] = "hung"            # from here answers come only by hand
    while len(e.dns_out) < 2:
        p.step(0.005)
    t1, t2 = e.dns_out
    p.deliver(A, events.DnsResult(True, p.now - t1))   # the answer to t1, slow
    assert e.dns_out == [t2] and e.dns_asked == t2 and e.dns_ok
    while e.dns_ok:
        p.step(0.002)
    assert p.now <= t2 + check.timeout + 0.005, (p.now, t2)
    assert "timeout after" in e.dns_error

