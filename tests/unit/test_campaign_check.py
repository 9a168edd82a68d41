"""The campaign's invariant checks on hand-made records: each one passes a good record and
flags the bad one it exists for (tests/net/campaign_check.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "net"))

from campaign_check import (  # noqa: E402
    Event,
    Record,
    Sample,
    Snap,
    check_answers,
    check_arp,
    check_duplicates,
    outages,
    worst_by_kind,
)

V1, V2 = "192.0.2.11", "192.0.2.12"


def answers(vip, node_at):
    """Queries every 20 ms from 0 to 5 s; node_at(t) says who answered (None: nobody)."""
    return [Sample(i * 0.02, vip, node_at(i * 0.02)) for i in range(250)]


def record(samples=(), snaps=(), deaf=()):
    ev = [Event(0.0, -1, "start", "recovery", 0.0), Event(1.0, 0, "link", "fault", 0.25),
          Event(2.0, 0, "link", "recovery", 0.25)]
    return Record(samples=list(samples), snaps=list(snaps), events=ev, deaf=list(deaf))


def test_outages_are_the_unanswered_stretches():
    rec = record(answers(V1, lambda t: None if 1.0 <= t < 1.2 else "node1"))
    [(a, b, closed)] = outages(rec, V1)
    assert (round(a, 2), round(b, 2), closed) == (1.0, 1.2, True)


def test_an_outage_within_the_budget_after_a_fault_passes_and_is_charged_to_it():
    rec = record(answers(V1, lambda t: None if 1.0 <= t < 1.2 else "node1"))
    bad, seen = check_answers(rec, [V1], slack=0.0)
    assert bad == [] and seen[0]["kind"] == "link" and seen[0]["seconds"] == 0.2
    assert worst_by_kind(seen) == {"link": 0.2}


def test_an_outage_past_the_budget_is_a_violation():
    rec = record(answers(V1, lambda t: None if 1.0 <= t < 1.6 else "node1"))
    bad, _ = check_answers(rec, [V1], slack=0.0)
    assert [b["invariant"] for b in bad] == ["1 answered within budget"]
    assert check_answers(rec, [V1], slack=1.0)[0] == [], "slack widens the budget"


def test_an_outage_long_after_any_fault_is_a_violation():
    rec = record(answers(V1, lambda t: None if 4.0 <= t < 4.1 else "node1"))
    bad, _ = check_answers(rec, [V1], slack=1.0)
    assert len(bad) == 1 and bad[0]["kind"] == "link" and bad[0]["step"] == 0


def test_an_outage_open_at_the_end_is_a_violation():
    rec = record(answers(V2, lambda t: None if t >= 1.0 else "node2"))
    bad, _ = check_answers(rec, [V2], slack=10.0)
    assert len(bad) == 1 and bad[0]["closed"] is False


def snaps(holders_at, arp_at):
    return [Snap(i * 0.02, holders_at(i * 0.02), arp_at(i * 0.02)) for i in range(250)]


def test_neighbour_entry_on_a_node_without_the_address():
    ok = record(snaps=snaps(lambda t: {V1: {"node2"} if t >= 1.0 else {"node1"}},
                            lambda t: {V1: "node2" if t >= 1.2 else "node1"}))
    assert check_arp(ok, [V1], slack=0.0) == []
    bad = record(snaps=snaps(lambda t: {V1: {"node2"} if t >= 1.0 else {"node1"}},
                             lambda t: {V1: "node2" if t >= 3.0 else "node1"}))
    [v] = check_arp(bad, [V1], slack=1.0)
    assert v["invariant"] == "2 neighbour entry on a holder" and round(v["seconds"], 2) == 2.0


def test_double_holder_allowed_only_while_deaf_and_one_hand_over_after():
    # both hold V1 from 1.0 to 2.05; the nodes could not hear each other from 1.0 to 2.0
    holders = lambda t: {V1: {"node1", "node2"} if 1.0 <= t < 2.05 else {"node1"}}  # noqa: E731
    arp = lambda t: {V1: "node1"}  # noqa: E731
    assert check_duplicates(record(snaps=snaps(holders, arp), deaf=[(1.0, 2.0)]), [V1], 0.0) == []
    [v] = check_duplicates(record(snaps=snaps(holders, arp)), [V1], 0.0)
    assert v["invariant"] == "3 one holder while they hear each other" and v["seconds"] > 1.0
    late = lambda t: {V1: {"node1", "node2"} if 1.0 <= t < 2.5 else {"node1"}}  # noqa: E731
    [v] = check_duplicates(record(snaps=snaps(late, arp), deaf=[(1.0, 2.0)]), [V1], 0.0)
    assert round(v["start"], 2) == 2.0 and round(v["seconds"], 2) == 0.5


def test_within_a_loss_window_each_outage_gets_the_budget_from_its_own_start():
    # 90 % loss both ways from 0 to 2 s: the pair may split and heal at any moment of it
    ev = [Event(0.0, -1, "start", "recovery", 0.0), Event(0.0, 0, "loss", "fault", 0.25, rolling=True),
          Event(2.0, 0, "loss", "recovery", 0.25)]
    late = Record(samples=answers(V1, lambda t: None if 1.5 <= t < 1.7 else "node1"), events=ev)
    assert check_answers(late, [V1], slack=0.0)[0] == []
    long = Record(samples=answers(V1, lambda t: None if 1.5 <= t < 2.0 else "node1"), events=ev)
    assert len(check_answers(long, [V1], slack=0.0)[0]) == 1, "still bounded by the budget"
    fixed = Record(samples=late.samples, events=[Event(e.t, e.step, e.kind, e.phase, e.budget)
                                                 for e in ev])
    assert len(check_answers(fixed, [V1], slack=0.0)[0]) == 1, "a one-off fault's budget is from it"


def test_a_snap_taken_as_a_fault_began_is_charged_to_that_fault():
    # the snap at 1.0 was stamped a few ms before the event was recorded at 1.004
    ev = [Event(0.0, -1, "start", "recovery", 0.0), Event(1.004, 0, "link", "fault", 0.25)]
    rec = Record(snaps=snaps(lambda t: {V1: {"node2"} if t >= 1.0 else {"node1"}},
                             lambda t: {V1: "node2" if t >= 1.2 else "node1"}), events=ev)
    assert check_arp(rec, [V1], slack=0.0) == []
