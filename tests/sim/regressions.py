"""Schedules that found (or guard against) engine defects; test_sim.py replays each.

Node 0 is dns-pm01 (home of VIP1), node 1 dns-pm02 (home of VIP2). Each entry: a schedule and
`bites`, a check on the run's record that the scenario really happened (so a test cannot pass
by missing it). The defects (a)-(e) are the issue's; later ones were found by the simulator.
"""
from __future__ import annotations

U64 = 2 ** 64 - 1


def _logged(node: str, text: str):
    return lambda rec: any(n == node and text in t for _, n, _, t in rec.logs)


REGRESSIONS = {
    # (a) dns-pm02 crashes and restarts at once with its state directory lost: a lower start
    # counter (0 < 500) while dns-pm01 still hears the old incarnation. It must be taken as
    # the peer again (not locked out), so after the cleanup VIP2 goes home.
    "a_lower_incarnation": {
        "schedule": {"seed": 0, "duration": 6.0, "counters": [5, 500], "start": [0.0, 0.05], "faults": [
            {"kind": "crash", "node": 1, "at": 3.0, "hook": 0.05, "dur": 0.12, "lose_state": True},
        ]},
        "bites": _logged("dns-pm01", "peer dns-pm02 is online"),
    },
    # (b) a validly signed datagram as dns-pm02 with incarnation 2^64-1, injected to dns-pm01:
    # it must not lock out the real dns-pm02 (lower incarnation).
    "b_max_incarnation": {
        "schedule": {"seed": 0, "duration": 6.0, "counters": [5, 5], "start": [0.0, 0.05], "faults": [
            {"kind": "inject", "node": 0, "at": 3.0, "fields": {"incarnation": U64}},
        ]},
        "bites": lambda rec: any(k == "inject" for _, k, _ in rec.marks),
    },
    # (c) dns-pm02's recorded datagrams replayed to a freshly started dns-pm01 while dns-pm02
    # is down: dns-pm01 must not take them for a live peer, and must hold both VIPs.
    "c_replay_to_fresh_node": {
        "schedule": {"seed": 0, "duration": 9.0, "counters": [5, 5], "start": [0.0, 0.05], "faults": [
            {"kind": "power", "node": 1, "at": 3.0, "dur": 5.5, "lose_state": False},
            {"kind": "crash", "node": 0, "at": 4.0, "hook": 0.05, "dur": 0.5, "lose_state": False},
            {"kind": "replay", "node": 0, "at": 4.5, "count": 60, "gap": 0.01},
        ]},
        "bites": lambda rec: any(k == "replay" for _, k, _ in rec.marks),
    },
    # (d) dns-pm01 frozen 0.15 s (at several phases of its heartbeat, so that in at least one
    # dns-pm02 finds it dead and claims VIP1): after the thaw dns-pm01 keeps VIP1 and must
    # announce it again, or the client stays pointed at dns-pm02, which no longer has it.
    "d_short_freeze": {
        "schedule": {"seed": 0, "duration": 16.0, "counters": [5, 5], "start": [0.0, 0.05], "faults": [
            {"kind": "freeze", "node": 0, "at": 3.0 + 2.013 * i, "dur": 0.15} for i in range(6)
        ]},
        "bites": _logged("dns-pm02", "claimed VIP 192.0.2.11/24"),
    },
    # (e) a peer advertising admin counter 0xFFFFFFFF, then operator cleanups on both nodes:
    # nothing may raise, and the cleanup must still take effect (VIPs go home).
    "e_admin_counter_wrap": {
        "schedule": {"seed": 0, "duration": 6.0, "counters": [5, 5], "start": [0.0, 0.05], "faults": [
            {"kind": "inject", "node": 0, "at": 3.0, "fields": {"admin.counter": 0xFFFFFFFF}},
            {"kind": "cleanup", "node": 0, "at": 3.5},
            {"kind": "cleanup", "node": 1, "at": 4.0},
        ]},
        "bites": lambda rec: any(k == "inject" for _, k, _ in rec.marks),
    },
}
