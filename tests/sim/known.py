"""Known engine defects, reported to the lead: a signature per defect over a violation and
its run's record. The runner prints every violation; only the CI test tolerates these (and
each has a regression in regressions.py marked as expected to fail until it is fixed).
"""
from __future__ import annotations


def _holders(rec, vip: int, t: float) -> tuple:
    h: tuple = ()
    for ta, v, hs in rec.addrs:
        if ta > t:
            break
        if v == vip:
            h = hs
    return h


def stale_announce(v, rec, cfg, sch) -> bool:
    """The client follows the announcement of node T, which then released the VIP; the node
    H that kept it held it at that moment too but never announced again (it did not see the
    contest: the peer's claim was lost, or came during a partition)."""
    if v.invariant not in ("answered", "pointed", "converged") or v.vip is None or v.node is None:
        return False
    t, vip, target = v.t, v.vip, v.node
    if target in _holders(rec, vip, t):
        return False
    last = [(tg, n) for tg, n, g in rec.garps if g == vip and tg <= t]
    if not last or last[-1][1] != target:
        return False
    tg = last[-1][0]
    others = [n for n in _holders(rec, vip, t) if n != target]
    return bool(others) and others[0] in _holders(rec, vip, tg)


def pin_beats_health(v, rec, cfg, sch) -> bool:
    """A VIP pinned by `dnspair move` stays on its node while that node's DNS fails (pinned
    ranks above DNS healthy), so it goes unanswered although the peer could serve it."""
    if v.invariant != "answered" or v.vip is None:
        return False
    pins = {}
    for f in sorted(sch["faults"], key=lambda f: f["at"]):
        if f["at"] > v.t:
            break
        if f["kind"] == "move":
            pins[f["vip"] % len(cfg.vips)] = cfg.node_names[f["to"] % 2]
        elif f["kind"] == "cleanup" and f.get("vip") in (None, v.vip):
            pins.pop(v.vip, None)
    return pins.get(v.vip) is not None and pins.get(v.vip) == v.node


def busy_loop(v, rec, cfg, sch) -> bool:
    """Not ready while the first DNS check takes longer than the dead time (bind hung or slow
    at start): wake_at() keeps returning started + dead_time, already past."""
    return v.invariant == "raised" and "busy loop" in v.text


def _state(rec, t: float):
    cur = (0.0, (), False, 0.0, (), False)
    for st in rec.states:
        if st[0] > t:
            break
        cur = st
    return cur


def failed_node_holds(v, rec, cfg, sch) -> bool:
    """The client points at a reachable node that holds the VIP while its own DNS check fails:
    a node that finds its peer dead (partition, one-way loss) claims or keeps every VIP even
    with its local DNS failed, and a peer that still hears it does not take the VIP (it waits
    for a yield that never comes)."""
    if v.invariant != "answered" or v.vip is None or v.node is None:
        return False
    elig, lan = _state(rec, v.t)[1], _state(rec, v.t)[4]
    return v.node in _holders(rec, v.vip, v.t) and v.node in lan and v.node not in elig


def announce_lost(v, rec, cfg, sch) -> bool:
    """The node that serves the VIP now announced it only while it was cut off itself
    (isolated: carrier up, nothing gets through), so no frame reached the client, and it never
    announces again; the client stays on the old owner (unreachable, or without the address)."""
    if v.invariant not in ("answered", "pointed", "converged") or v.vip is None or v.node is None:
        return False
    elig = _state(rec, v.t)[1]
    for h in _holders(rec, v.vip, v.t):
        if h == v.node or h not in elig:
            continue
        since = max((t for t, vip, hs in rec.addrs if vip == v.vip and t <= v.t and h not in hs),
                    default=0.0)
        if not any(n == h and g == v.vip and since <= t <= v.t for t, n, g in rec.garps):
            return True
    return False


def unreachable_holder(v, rec, cfg, sch) -> bool:
    """The client points at a holder that went off the LAN (isolated, carrier down); the other
    node held the VIP too (after a contest), so losing its peer claimed nothing and announced
    nothing: the client stays on the unreachable node."""
    if v.invariant not in ("answered", "converged") or v.vip is None or v.node is None:
        return False
    elig, lan = _state(rec, v.t)[1], _state(rec, v.t)[4]
    hs = _holders(rec, v.vip, v.t)
    if v.node not in hs or v.node in lan:
        return False
    last_x = max((t for t, n, g in rec.garps if n == v.node and g == v.vip and t <= v.t), default=0.0)
    return any(h in elig and not any(n == h and g == v.vip and last_x <= t <= v.t
                                     for t, n, g in rec.garps) for h in hs if h != v.node)


KNOWN = {"stale_announce": stale_announce, "pin_beats_health": pin_beats_health, "busy_loop": busy_loop,
         "failed_node_holds": failed_node_holds, "announce_lost": announce_lost,
         "unreachable_holder": unreachable_holder}


def classify(v, rec, cfg, sch) -> str | None:
    for name, fn in KNOWN.items():
        if fn(v, rec, cfg, sch):
            return name
    return None

