"""The campaign's invariants over one schedule's record. Pure: no lab, no clock.

The record is what the client saw (`Sample`: each query, when it was sent and which node
answered), what the sampler saw (`Snap`: which nodes held each VIP on eth0 and where the
client's neighbour entry pointed) and what the schedule did (`Event`: each fault and each
recovery with its failover budget, and the windows when the nodes could not hear each
other). Every check returns violations as plain dicts, so they go into JSON as they are.
"""
from __future__ import annotations

from dataclasses import dataclass, field

HANDOVER = 0.1  # one heartbeat: the longest two holders may overlap while both hear each other


@dataclass
class Sample:
    t: float            # when the query was sent (monotonic)
    vip: str
    node: str | None    # whose bind answered, None: no answer within the timeout


@dataclass
class Snap:
    t: float
    holders: dict       # vip -> set of nodes with the address on eth0
    arp: dict           # vip -> node the client's neighbour entry points at, or None


@dataclass
class Event:
    t: float
    step: int           # index in the schedule (-1: start, K: the final cleanup)
    kind: str           # fault kind, 'start' or 'cleanup'
    phase: str          # 'fault' | 'recovery'
    budget: float       # failover budget from t (s), before slack
    # Heartbeat loss can make a node look dead (or alive again) at any moment of its window:
    # until the next event, the budget counts from the start of each outage, not from t.
    rolling: bool = False


@dataclass
class Record:
    samples: list = field(default_factory=list)
    snaps: list = field(default_factory=list)
    events: list = field(default_factory=list)
    deaf: list = field(default_factory=list)   # [(start, end)]: the nodes may not hear each other
    timeout: float = 0.2                       # the client's query timeout
    sample_lag: float = 0.05                   # a snap is stamped when its sampling began


def _latest_event(events, t):
    best = None
    for e in events:
        if e.t <= t and (best is None or e.t >= best.t):
            best = e
    return best


def outages(rec: Record, vip: str) -> list[tuple[float, float, bool]]:
    """[(first unanswered send, next answered send, closed)] for one VIP. An outage still
    open at the end of the record ends at the last sample, closed=False."""
    out, start, last_t = [], None, None
    for s in sorted((s for s in rec.samples if s.vip == vip), key=lambda s: s.t):
        last_t = s.t
        if s.node is None and start is None:
            start = s.t
        elif s.node is not None and start is not None:
            out.append((start, s.t, True))
            start = None
    if start is not None:
        out.append((start, last_t, False))
    return out


def _judge(rec: Record, a: float, b: float, closed: bool, slack: float, lead: float):
    """The event a span [a, b] is charged to (the latest at or before a + lead) and whether it
    ended within that event's budget plus slack."""
    e = _latest_event(rec.events, a + lead)
    if e is None:
        return None, False
    return e, closed and b <= max(e.t, a if e.rolling else e.t) + e.budget + slack


def check_answers(rec: Record, vips, slack: float):
    """(1) every VIP is answered again within the budget of the fault (or recovery) before
    the outage began. Returns (violations, outages as dicts)."""
    bad, seen = [], []
    for vip in vips:
        for a, b, closed in outages(rec, vip):
            e, ok = _judge(rec, a, b, closed, slack, rec.timeout)
            o = {"vip": vip, "start": a, "end": b, "seconds": round(b - a, 3), "closed": closed,
                 "step": e.step if e else None, "kind": e.kind if e else None,
                 "after": round(b - e.t, 3) if e else None, "budget": e.budget if e else None}
            seen.append(o)
            if not ok:
                bad.append(dict(o, invariant="1 answered within budget"))
    return bad, seen


def _spans(snaps, pred):
    """[(start, end, closed)] of stretches of consecutive snaps where pred(snap) holds."""
    out, start, last = [], None, None
    for s in snaps:
        if pred(s) and start is None:
            start = s.t
        elif not pred(s) and start is not None:
            out.append((start, s.t, True))
            start = None
        last = s.t
    if start is not None:
        out.append((start, last, False))
    return out


def check_arp(rec: Record, vips, slack: float):
    """(2) the client's neighbour entry for a VIP never points at a node without that
    address for longer than the budget of the event before."""
    bad = []
    snaps = sorted(rec.snaps, key=lambda s: s.t)
    for vip in vips:
        def stale(s, vip=vip):
            n = s.arp.get(vip)
            return n is not None and n not in s.holders.get(vip, set())
        for a, b, closed in _spans(snaps, stale):
            e, ok = _judge(rec, a, b, closed, slack, rec.sample_lag)
            if not ok:
                bad.append({"invariant": "2 neighbour entry on a holder", "vip": vip, "start": a,
                            "end": b, "seconds": round(b - a, 3), "closed": closed,
                            "step": e.step if e else None, "kind": e.kind if e else None})
    return bad


def _minus(a: float, b: float, holes) -> list[tuple[float, float]]:
    """[a, b] without the union of the intervals in holes."""
    out, cur = [], a
    for ha, hb in sorted(holes):
        if hb <= cur or ha >= b:
            continue
        if ha > cur:
            out.append((cur, ha))
        cur = max(cur, hb)
    if cur < b:
        out.append((cur, b))
    return out


def check_duplicates(rec: Record, vips, slack: float):
    """(3) while the nodes hear each other, a VIP is on both interfaces for at most a
    hand-over: every stretch of a double holding outside the deaf windows is that short."""
    bad = []
    snaps = sorted(rec.snaps, key=lambda s: s.t)
    for vip in vips:
        for a, b, closed in _spans(snaps, lambda s, vip=vip: len(s.holders.get(vip, ())) > 1):
            for ha, hb in _minus(a, b, rec.deaf):
                if hb - ha <= HANDOVER + slack and (closed or hb < b):
                    continue
                e = _latest_event(rec.events, ha)
                bad.append({"invariant": "3 one holder while they hear each other", "vip": vip,
                            "start": ha, "end": hb, "seconds": round(hb - ha, 3),
                            "closed": closed, "step": e.step if e else None,
                            "kind": e.kind if e else None})
    return bad


def worst_by_kind(outage_dicts) -> dict:
    """{fault kind: longest outage (s)} over outages charged to that kind."""
    worst: dict = {}
    for o in outage_dicts:
        k = o["kind"] or "none"
        worst[k] = max(worst.get(k, 0.0), o["seconds"])
    return worst
