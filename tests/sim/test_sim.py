"""The simulator in CI: its models (client ARP cache, network faults, the shell), determinism,
shrinking, the regression schedules, and a fixed plus a random set of seeds on five configs.
Plain pytest, no root."""
from __future__ import annotations

import heapq
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from dnspair.core.actions import Send, Step
from dnspair.core.events import Datagram, Resumed, Start, Tick

from . import checks, client, known, regressions, run, schedule, toy, world

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {
    "example": (ROOT / "example" / "dnspair.yaml").read_text(),
    "two_links": (Path(__file__).parent / "configs" / "two_links.yaml").read_text(),
    "auto": (Path(__file__).parent / "configs" / "auto.yaml").read_text(),
    "ipv6": (Path(__file__).parent / "configs" / "ipv6.yaml").read_text(),
    "witness": (Path(__file__).parent / "configs" / "witness.yaml").read_text(),
}
EXAMPLE = CONFIGS["example"]


# --- the client's ARP cache ---------------------------------------------------------------

class Lan:
    """A minimal clock and LAN for the ARP cache alone: `has` says who holds the VIP."""

    def __init__(self):
        self.now = 0.0
        self.rng = random.Random(1)
        self.q: list = []
        self.n = 0
        self.has: set[str] = set()

    def at(self, t, prio, fn, *args):
        heapq.heappush(self.q, (t, prio, self.n, fn, args))
        self.n += 1

    def run(self, until):
        while self.q and self.q[0][0] <= until:
            t, _, _, fn, args = heapq.heappop(self.q)
            self.now = t
            fn(*args)
        self.now = until

    def answers_arp(self, node, vip):
        return node in self.has

    def arp_responders(self, vip):
        return sorted(self.has)


def test_arp_gratuitous_does_not_create_an_entry():
    lan = Lan()
    c = client.ArpCache(lan, 1)
    c.garp("a", 0)
    assert c.peek(0) is None and c.entries[0].state == client.NONE


def test_arp_resolves_by_broadcast_and_gratuitous_updates_the_entry():
    lan = Lan()
    lan.has = {"a"}
    c = client.ArpCache(lan, 1)
    assert c.target(0) == "a" and c.entries[0].state == client.REACHABLE
    c.garp("b", 0)   # an existing entry follows the announcement, as STALE
    assert c.peek(0) == "b" and c.entries[0].state == client.STALE


def test_arp_unresolved_retries_then_fails_and_an_announcement_rescues_it():
    lan = Lan()
    c = client.ArpCache(lan, 1)
    assert c.target(0) is None and c.entries[0].state == client.INCOMPLETE
    lan.run(3.5)
    assert c.entries[0].state == client.FAILED
    c.garp("a", 0)   # FAILED entries still exist: the announcement updates them
    assert c.peek(0) == "a"


def test_arp_stale_entry_goes_delay_probe_failed_then_broadcast():
    lan = Lan()
    lan.has = {"a"}
    c = client.ArpCache(lan, 1)
    c.target(0)
    until = c.entries[0].until
    assert client.REACHABLE_MIN <= until <= client.REACHABLE_MAX
    lan.has = {"b"}            # "a" lost the address, "b" took it without announcing
    lan.run(until + 0.1)
    assert c.target(0) == "a" and c.entries[0].state == client.DELAY   # STALE used: DELAY
    lan.run(until + 0.1 + client.DELAY_FIRST_PROBE + 0.01)
    assert c.entries[0].state == client.PROBE and c.target(0) == "a"   # unicast probes to "a"
    lan.run(until + 0.1 + client.DELAY_FIRST_PROBE + 3 * client.RETRANS + 0.01)
    assert c.entries[0].state == client.FAILED
    assert c.target(0) == "b"   # re-resolved by broadcast


def test_arp_probe_answered_confirms():
    lan = Lan()
    lan.has = {"a"}
    c = client.ArpCache(lan, 1)
    c.target(0)
    lan.run(c.entries[0].until + 0.1)
    c.target(0)
    lan.run(lan.now + client.DELAY_FIRST_PROBE + 0.01)
    assert c.entries[0].state == client.REACHABLE and c.peek(0) == "a"


def test_ndp_override_moves_a_valid_entry_without_it_only_reachable_goes_stale():
    lan = Lan()
    lan.has = {"a"}
    c = client.ArpCache(lan, 1)
    c.na("b", 0)
    assert c.entries[0].state == client.NONE, "an unsolicited advertisement creates nothing"
    assert c.target(0) == "a" and c.entries[0].state == client.REACHABLE
    c.na("b", 0, override=False)     # keepalived's confusion: the old MAC stays
    assert c.peek(0) == "a" and c.entries[0].state == client.STALE
    c.na("b", 0, override=False)
    assert c.peek(0) == "a" and c.entries[0].state == client.STALE
    c.na("b", 0)                     # what dnspair sends
    assert c.peek(0) == "b" and c.entries[0].state == client.STALE
    c.na("b", 0)
    assert c.entries[0].state == client.STALE, "the same MAC leaves the state as it is"


def test_ndp_incomplete_entry_takes_any_advertisement():
    lan = Lan()
    c = client.ArpCache(lan, 1)
    assert c.target(0) is None and c.entries[0].state == client.INCOMPLETE
    c.na("b", 0, override=False)
    assert c.peek(0) == "b" and c.entries[0].state == client.STALE


def test_an_ipv6_vip_follows_its_owner_only_with_the_override_flag():
    """A power cut of the IPv6 VIP's holder: the client's REACHABLE entry must move to the new
    owner at once. Without the Override flag it stays on the dead node for its probes' ~8 s."""
    sch = {"seed": 7, "duration": 14.0, "counters": [0, 0], "start": [0.0, 0.0],
           "faults": [{"kind": "power", "node": 0, "at": 5.0, "dur": 3.0}]}
    results = {}
    for override in (True, False):
        w = world.World(CONFIGS["ipv6"], sch)
        w.na_override = override
        rec = w.run()
        results[override] = {v.invariant for v in checks.check(rec, w.cfg, sch)}
        assert w.cfg.vips[0].family == 6 and any(v == 0 for _, _, v in rec.garps), \
            "the new owner announced VIP1"
    assert results[True] == set(), results
    assert {"answered", "pointed"} <= results[False], results


# --- the network and the shell ------------------------------------------------------------------

class Recorder:
    """An engine that sends a numbered datagram every 10 ms and records what it is handed."""
    logs: dict = {}

    def __init__(self, cfg, me, key, inc, now):
        self.me, self.n, self.seen = me, 0, []
        Recorder.logs[me] = self.seen

    def handle(self, now, ev):
        self.seen.append((now, ev))
        acts = []
        if isinstance(ev, (Start, Tick)):
            self.n += 1
            acts.append(Send(f"{self.me}:{self.n}".encode()))
        return Step(acts, now + 0.01)


def _world(faults, cfg=EXAMPLE, duration=3.0):
    Recorder.logs = {}
    sch = {"seed": 1, "duration": duration, "counters": [0, 0], "start": [0.0, 0.0], "faults": faults}
    w = world.World(cfg, sch, engine_factory=Recorder)
    from . import faults as faultsmod
    for n in w.nodes:
        w.at(0.0, world.P_FAULT, w._boot, n)
    for f in faults:
        faultsmod.schedule(w, f)
    w.run_until(duration)
    return w


def _received(name, t0=0.0, t1=99.0):
    return [ev for t, ev in Recorder.logs[name] if isinstance(ev, Datagram) and t0 <= t < t1]


def test_network_delivers_with_source_and_link():
    _world([])
    got = _received("dns-pm02")
    assert len(got) > 250
    assert got[0].src == "192.0.2.1" and got[0].link == 0 and got[0].data.startswith(b"dns-pm01:")


def test_network_partition_one_way_and_loss():
    _world([{"kind": "partition", "link": "all", "dir": 0, "at": 1.0, "dur": 1.0}])
    assert not _received("dns-pm02", 1.01, 2.0)           # node 0 -> node 1 cut
    assert len(_received("dns-pm01", 1.01, 2.0)) > 90      # the other way flows
    _world([{"kind": "loss", "link": 0, "dir": 2, "p": 0.5, "at": 0.0, "dur": 3.0}])
    n = len(_received("dns-pm02"))
    assert 100 < n < 200                                   # about half of ~300


def test_network_duplicates_and_delay_reorders():
    _world([{"kind": "dup", "link": 0, "dir": 0, "p": 0.5, "at": 0.0, "dur": 3.0}])
    datas = [d.data for d in _received("dns-pm02")]
    assert len(datas) - len(set(datas)) > 50
    _world([{"kind": "delay", "link": 0, "dir": 0, "delay": 0.05, "jitter": 0.05, "at": 0.0, "dur": 3.0}])
    nums = [int(d.data.split(b":")[1]) for d in _received("dns-pm02")]
    assert nums != sorted(nums)                            # jitter past the 10 ms gap reorders


def test_two_links_each_carry_a_copy_and_carrier_cuts_one():
    cfg = CONFIGS["two_links"]
    _world([{"kind": "carrier", "node": 0, "link": 1, "at": 1.0, "dur": 1.0}], cfg=cfg)
    got = _received("dns-pm02", 1.01, 2.0)
    assert got and {d.link for d in got} == {0}
    assert {(d.link, d.src) for d in _received("dns-pm02", 0.0, 1.0)} == {(0, "192.0.2.1"), (1, "192.0.2.65")}


def test_freeze_buffers_then_resumed_drain_tick_in_that_order():
    _world([{"kind": "freeze", "node": 1, "at": 1.0, "dur": 3.0}], duration=4.5)
    seen = [(t, ev) for t, ev in Recorder.logs["dns-pm02"] if 1.0 < t <= 4.0 + 1e-9]
    assert all(t == 4.0 for t, _ in seen)                 # nothing reached it while frozen
    evs = [ev for _, ev in seen]
    assert isinstance(evs[0], Resumed) and isinstance(evs[-1], Tick)
    assert all(isinstance(e, Datagram) for e in evs[1:-1])
    assert len(evs) - 2 == world.SOCKBUF                  # the socket buffer is bounded


# --- the whole simulator ------------------------------------------------------------------------

def test_same_seed_same_run_bit_for_bit():
    sch = schedule.generate(11)
    assert schedule.generate(11) == sch
    d1 = run.run_one(EXAMPLE, sch, trace=True)[0].digest
    d2 = run.run_one(EXAMPLE, schedule.generate(11), trace=True)[0].digest
    d3 = run.run_one(EXAMPLE, schedule.generate(12), trace=True)[0].digest
    assert d1 == d2 and d1 != d3


def test_schedule_json_round_trip():
    sch = schedule.generate(5)
    assert schedule.loads(schedule.dumps(sch)) == sch


def test_checkers_find_a_known_bad_engine_and_the_shrinker_minimises():
    """The toy engine never takes over from a dead peer: a power cut must be caught, and the
    noise around it shrunk away."""
    sch = {"seed": 3, "duration": 20.0, "counters": [0, 0], "start": [0.0, 0.0], "faults": [
        {"kind": "delay", "link": 0, "dir": 2, "delay": 0.002, "jitter": 0.001, "at": 2.0, "dur": 3.0},
        {"kind": "dup", "link": 0, "dir": 0, "p": 0.2, "at": 4.0, "dur": 2.0},
        {"kind": "power", "node": 1, "at": 8.0, "dur": 4.0},
        {"kind": "loss", "link": 0, "dir": 1, "p": 0.1, "at": 13.0, "dur": 2.0},
        {"kind": "garbage", "node": 0, "count": 3, "at": 16.0, "dur": 0.0},
    ]}
    viol = run.run_one(EXAMPLE, sch, engine_factory=toy.Forgetful)[1]
    assert "answered" in {v.invariant for v in viol}
    assert not run.run_one(EXAMPLE, dict(sch, faults=[]), engine_factory=toy.Forgetful)[1]
    small, sv = run.shrink(EXAMPLE, sch, run.same_invariants({"answered"}),
                           engine_factory=toy.Forgetful, budget_s=60)
    assert [f["kind"] for f in small["faults"]] == ["power"] and sv


@pytest.mark.parametrize("name", sorted(regressions.REGRESSIONS))
def test_regression(name):
    """The issue's defects (a)-(e) and the simulator's fixed finds: no violation, and the
    scenario really happened."""
    r = regressions.REGRESSIONS[name]
    rec, viol, _ = run.run_one(CONFIGS[r.get("config", "example")], r["schedule"])
    assert r["bites"](rec), f"{name}: the schedule no longer reaches its scenario"
    assert not viol, "\n".join(map(str, viol))


@pytest.mark.parametrize("name", sorted(regressions.FOUND))
def test_found_defect(name):
    """Defects the simulator found in the engine (reported to the lead): xfail while the
    schedule still shows that defect; once fixed it passes: then move the entry to
    REGRESSIONS with a `bites` check."""
    r = regressions.FOUND[name]
    rec, viol, w = run.run_one(EXAMPLE, r["schedule"])
    labels = {known.classify(v, rec, w.cfg, r["schedule"]) for v in viol}
    if viol:
        assert r["known"] in labels, f"{name}: the violations changed: {[str(v) for v in viol]}"
        pytest.xfail(f"known engine defect {r['known'] or name}: {viol[0]}")
    assert not viol


@pytest.mark.parametrize("name", ["a_lower_incarnation", "b_max_incarnation", "c_replay_to_fresh_node",
                                  "d_short_freeze", "e_admin_counter_wrap", "q_witness_answer_from_before",
                                  "r_witness_answer_from_before_a_bye", "s_witness_ping_between_heartbeats",
                                  "u_bind_slow_then_hung", "v_one_way_replay_after_death",
                                  "y_claim_before_bind_listens", "z_cable_back_one_way",
                                  "za_control_nested_deep", "zb_fd_flood_takeover",
                                  "zc_handover_waits_for_bind", "zd_one_way_contest_reannounced"])
def test_regression_fails_with_its_fix_taken_out(name):
    """Each regression under a mutant engine that has its fix taken out (mutants.py)."""
    from . import mutants
    r = regressions.REGRESSIONS[name]
    with mutants.MUTANTS[name]():
        viol = run.run_one(CONFIGS[r.get("config", "example")], r["schedule"])[1]
    assert viol


FIXED = {"example": range(1, 151), "two_links": range(1, 51), "auto": range(1, 51), "ipv6": range(1, 51),
         "witness": range(1, 51)}
RANDOM_SLICE = 150


def _seeds():
    base = int(os.environ.get("SIM_SEED_BASE", random.SystemRandom().randrange(10 ** 6, 10 ** 9)))
    out = [(c, s) for c, r in FIXED.items() for s in r]
    out += [("example", base + i) for i in range(RANDOM_SLICE)]
    return base, out


def _one(args):
    cfg_name, seed = args
    sch = schedule.generate(seed)
    rec, viol, w = run.run_one(CONFIGS[cfg_name], sch)
    return cfg_name, seed, [(str(v), known.classify(v, rec, w.cfg, sch)) for v in viol]


def test_seeds_fixed_and_random_slice():
    """No violation at all on the fixed seeds of five configs and a random slice of the
    example's (its seeds are printed; replay one with `python3 -m tests.sim --seed S --log`).
    Every defect known.py describes is fixed; a label only helps reading a failure."""
    import multiprocessing
    base, seeds = _seeds()
    print(f"\nsim seeds: fixed {dict((k, f'{r.start}-{r.stop - 1}') for k, r in FIXED.items())}, "
          f"random slice {base}-{base + RANDOM_SLICE - 1} (SIM_SEED_BASE={base} repeats it)")
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map(_one, seeds, chunksize=4)
    new = [f"{cfg_name} seed {seed}: {text}" + (f" [like {label}]" if label else "")
           for cfg_name, seed, viol in results for text, label in viol]
    print(f"sim: {len(seeds)} schedules, {len(new)} violations")
    assert not new, "violations:\n" + "\n".join(new[:20])


# --- the command line ---------------------------------------------------------------------------

def _cli(*args):
    return subprocess.run([sys.executable, "-m", "tests.sim", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_cli_runs_seeds_and_ends_with_one_summary_line():
    p = _cli("--seeds", "3", "--first", "100", "--jobs", "2", "--shrink", "0")
    assert p.stdout.strip().splitlines()[-1].startswith("sim: 3 schedules, ")
    assert "schedules/min" in p.stderr


def test_cli_replays_a_schedule_file(tmp_path):
    f = tmp_path / "s.json"
    f.write_text(json.dumps(regressions.REGRESSIONS["d_short_freeze"]["schedule"]))
    p = _cli("--schedule", str(f))
    assert p.returncode == 0 and p.stdout.strip().splitlines()[-1] == "sim: 1 schedules, 0 violations"


def test_cli_bad_input_one_line_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    p = _cli("--schedule", str(bad))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "bad schedule" in p.stderr
    p = _cli("--seeds", "1", "--config", str(tmp_path / "missing.yaml"))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "bad config" in p.stderr


def test_checker_budget_excuses_only_what_follows_a_fault_edge():
    rec = world.Record()
    rec.marks = [(1.0, "power", 0.0)]
    rec.states = [(0.0, ("dns-pm01",), True, 0.0, ("dns-pm01",), False)]
    rec.queries = [(1.2, 0, False, False, "dns-pm02"), (1.3, 0, False, False, "dns-pm02"),
                   (1.32, 0, True, False, "dns-pm01")]
    cfg = world.configmod.parse(EXAMPLE)
    v = checks.answered(rec, cfg)
    assert len(v) == 1 and v[0].t == 1.3


def test_checker_budget_after_bind_comes_back_slow_is_its_latency_more():
    """A bind_end mark carries the bind's remaining latency: a query that fails within the
    budget plus that latency is excused, one just after it is not."""
    rec = world.Record()
    rec.marks = [(1.0, "bind_end", 0.2)]
    rec.states = [(0.0, ("dns-pm01",), True, 0.0, ("dns-pm01",), False)]
    late = 1.0 + checks.DEATH_BUDGET + 0.2
    rec.queries = [(late - 0.01, 0, False, False, "dns-pm02"), (late - 0.005, 0, True, False, "dns-pm01"),
                   (late + 0.01, 1, False, False, "dns-pm02"), (late + 0.02, 1, True, False, "dns-pm01")]
    v = checks.answered(rec, world.configmod.parse(EXAMPLE))
    assert [(x.vip, round(x.t, 3)) for x in v] == [(1, round(late + 0.01, 3))]


def test_sticky_kept_invariant_bites_without_the_state_file():
    """Seeds 3 and 17 restart a node that held a VIP as a failover's, with its state kept:
    with the state restored the VIP comes back to it; with restore taken out it does not."""
    from unittest import mock

    from dnspair.core import engine
    cfg = open(run.DEFAULT_CONFIG).read()
    for seed in (3, 17):
        sch = schedule.generate(seed)
        _, viol, _ = run.run_one(cfg, sch)
        assert not viol, viol
        with mock.patch.object(engine.Engine, "_restore", lambda self, saved: []):
            _, viol, _ = run.run_one(cfg, sch)
        assert any(v.invariant == "sticky_kept" for v in viol), (seed, viol)
