"""Each regression against the engine with its fix taken out again: proof the test can fail.

The first `engine:` commit on main already carried every fix, so there is no unfixed engine
with this interface to run; instead each mutant patches the one rule back (in this process
only). `python3 -m tests.sim.mutants` prints, per regression, the violations its mutant causes.
"""
from __future__ import annotations

import contextlib
import json
import sys
from unittest import mock

from dnspair.core import engine, liveness, requests, wire

from . import regressions, run, world


@contextlib.contextmanager
def ordered_incarnations():
    """Before: incarnations were ordered; a lower one never replaced the live one."""
    def may_replace(self, inc, now):
        return self.established is None or inc >= self.established
    with mock.patch.object(liveness.Liveness, "_may_replace", may_replace):
        yield


@contextlib.contextmanager
def no_echo():
    """Before: any fresh, validly signed datagram made the peer live (no echo of ours)."""
    orig = liveness.Liveness.receive

    def receive(self, inc, echo, ours, now):
        return orig(self, inc, ours, ours, now)
    with mock.patch.object(liveness.Liveness, "receive", receive):
        yield


@contextlib.contextmanager
def no_contest():
    """Before: a node never took a VIP as contested after a freeze (only when the peer came
    back from dead), so it did not announce it again."""
    orig = engine.Engine.decide

    def decide(self, now):
        self.contested.clear()
        return orig(self, now)
    with mock.patch.object(engine.Engine, "decide", decide):
        yield


@contextlib.contextmanager
def unmasked_admin():
    """Before: the admin counter was neither wrapped nor masked: counter + 1 overflowed the
    4-byte field, and a plain > let 0xFFFFFFFF stop every later change."""
    def nxt(self, node, pins, cleanup_mask=0, cleanup_all=False):
        return wire.Admin(self.counter + 1, node, pins, cleanup_mask, cleanup_all)

    def newer(self, other):
        return (self.counter, self.node) > (other.counter, other.node)
    with mock.patch.object(wire.Admin, "next", nxt), mock.patch.object(wire.Admin, "newer_than", newer):
        orig_encode = wire.Codec.encode   # what the engine sends with

        def encode(self, msg):
            if msg.admin.counter > wire.U32:
                raise OverflowError(f"admin counter {msg.admin.counter} does not fit 4 bytes")
            return orig_encode(self, msg)
        with mock.patch.object(wire.Codec, "encode", encode):
            yield


@contextlib.contextmanager
def witness_answer_on_arrival():
    """Before: every ask went to the shell (which drops one while a ping is out), and an
    answer counted from its arrival, not from when its ping was sent."""
    def ask(self, now):
        return [engine.CheckWitness()]
    orig = engine.Engine._on_witness

    def on_witness(self, now, ok):
        self.witness_asked = None
        return orig(self, now, ok)
    with mock.patch.object(engine.Engine, "_ask_witness", ask), \
            mock.patch.object(engine.Engine, "_on_witness", on_witness):
        yield


@contextlib.contextmanager
def witness_fresh_from_last_heard():
    """Before: any answer to a ping sent after the peer's last heartbeat counted, even one
    sent in the ordinary gap before the next."""
    def fresh(self):
        if self.cfg.witness is None:
            return True
        if not self.witness_ok or self.witness_at is None:
            return False
        return self.peer.last_heard is None or self.witness_at >= self.peer.last_heard
    with mock.patch.object(engine.Engine, "witness_fresh", fresh):
        yield


@contextlib.contextmanager
def witness_as_before():
    """Both witness rules as they were (the engine the namespace test failed on)."""
    with witness_answer_on_arrival(), witness_fresh_from_last_heard():
        yield


@contextlib.contextmanager
def dns_answer_ends_all():
    """Before: any DNS answer ended every check still out (the timeout restarted after it)."""
    def answered(self, now, ok, latency):
        self.dns_out.clear()
    with mock.patch.object(engine.Engine, "_dns_answered", answered):
        yield


@contextlib.contextmanager
def announce_at_claim():
    """Before: a claim was announced, and shown held to the peer, as soon as it was made (the
    shell then waited for bind in its actuator; the simulator's shell does not wait)."""
    orig = engine.Engine._claim

    def claim(self, now, i, peer_alive):
        return orig(self, now, i, peer_alive) + self._listens(now, i)
    with mock.patch.object(engine.Engine, "_claim", claim):
        yield


@contextlib.contextmanager
def one_way_dated_on_arrival():
    """Before: a one-way heartbeat held a node back from its arrival, however old it was."""
    with mock.patch.object(engine.Engine, "_one_way_sent", lambda self, now, msg: now):
        yield


@contextlib.contextmanager
def one_way_bounded():
    """The fix tried and reverted on 2026-12-04: a run of one-way heartbeats held a node back
    for at most dead_time + interval from its first, however fresh the later ones were."""
    def sent(self, now, msg):
        hb = self.cfg.heartbeat
        first, last = getattr(self, "_ow_run", (now, now))
        if now - last > hb.dead_time:
            first = now
        self._ow_run = (first, now)
        return now if now - first <= hb.dead_time + hb.interval else now - 2 * hb.dead_time
    with mock.patch.object(engine.Engine, "_one_way_sent", sent):
        yield


@contextlib.contextmanager
def control_depth_unguarded():
    """Before: a request nested deeper than json's recursion limit raised RecursionError (not
    a ValueError), a traceback per request."""
    def parse(line):
        try:
            req = json.loads(line)
        except ValueError as e:   # caught (the socket's reader did), but not RecursionError
            raise requests.BadRequest(str(e)) from None
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            raise requests.BadRequest("a request is a JSON object with a 'cmd' string")
        return req
    with mock.patch.object(requests, "parse", parse):
        yield


@contextlib.contextmanager
def announcer_opens_per_burst():
    """Before: each ARP burst opened /sys/class/net/IF/address, and failed with EMFILE."""
    with mock.patch.object(world.World, "open_per_announce", True):
        yield


@contextlib.contextmanager
def listen_bound_always_short():
    """Before: a claimed VIP waited for bind's socket half the suspect time at most, even in a
    hand-over, where the peer still served it."""
    def bound(self, now, i):
        return min(engine.LISTEN_WAIT, self.cfg.heartbeat.suspect_after / 2)
    with mock.patch.object(engine.Engine, "_listen_bound", bound):
        yield


@contextlib.contextmanager
def one_way_contest_ignored():
    """Before: a VIP the peer, heard one way only, said it held too was not announced again."""
    with mock.patch.object(engine.Engine, "_one_way_contest", lambda self, msg: None):
        yield


MUTANTS = {
    "a_lower_incarnation": ordered_incarnations,
    "b_max_incarnation": ordered_incarnations,
    "c_replay_to_fresh_node": no_echo,
    "d_short_freeze": no_contest,
    "e_admin_counter_wrap": unmasked_admin,
    "q_witness_answer_from_before": witness_as_before,
    "r_witness_answer_from_before_a_bye": witness_answer_on_arrival,
    "s_witness_ping_between_heartbeats": witness_fresh_from_last_heard,
    "u_bind_slow_then_hung": dns_answer_ends_all,
    "y_claim_before_bind_listens": announce_at_claim,
    "v_one_way_replay_after_death": one_way_dated_on_arrival,
    "z_cable_back_one_way": one_way_bounded,
    "za_control_nested_deep": control_depth_unguarded,
    "zb_fd_flood_takeover": announcer_opens_per_burst,
    "zc_handover_waits_for_bind": listen_bound_always_short,
    "zd_one_way_contest_reannounced": one_way_contest_ignored,
}


def main() -> int:
    missed = 0
    for name, mutant in MUTANTS.items():
        r = regressions.REGRESSIONS[name]
        cfg = open(run.DEFAULT_CONFIG.parents[1] / "tests" / "sim" / "configs" / f"{r['config']}.yaml"
                   if "config" in r else run.DEFAULT_CONFIG).read()
        with mutant():
            rec, viol, _ = run.run_one(cfg, r["schedule"])
        print(f"{name} under {mutant.__name__}: {len(viol)} violations")
        for v in viol[:4]:
            print(f"    {v}"[:300])
        missed += not viol
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
