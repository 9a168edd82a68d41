"""The invariants: each a small function over a run's record returning violations with times.

Budgets (docs/simulator.md): a failed or misdirected query is excused while it is within the
failover budget of the latest fault edge (any fault's start or end, a stop hook, a restart):
0.25 s, 0.4 s after a bind hang or slow bind, the engine's start listening time more after a
daemon starts, a freeze's own duration more after its start,
plus any extra heartbeat delay the network faults add, twice a lagging loop's lag (a check
and its timeout each fire late), and the witness's interval and timeout
when one is configured.
"""
from __future__ import annotations

import bisect
from typing import NamedTuple

DEATH_BUDGET = 0.25
HANG_BUDGET = 0.4
STARTS = ("start", "restart", "crash_end", "stop_end", "power_end")   # a daemon (re)starts here
# A cut that heals: what a node announced while cut off may never have reached the client,
# and nothing tells it so; it announces again within engine.REFRESH while its peer is not live.
HEALS = ("isolate_end", "partition_end", "loss_end", "carrier_end")
SETTLED = 2.0          # after the last fault ends (plus hold_down with failback: auto)


class Violation(NamedTuple):
    invariant: str
    t: float
    text: str
    vip: int | None = None
    node: str | None = None     # where the client pointed

    def __str__(self) -> str:
        return f"{self.invariant} at t={self.t:.3f}: {self.text}"


class _Budget:
    """Is moment q within the failover budget of some fault edge?"""

    def __init__(self, rec, cfg):
        self.marks = rec.marks
        self.times = [m[0] for m in rec.marks]
        self.timeset = set(self.times)
        self.base = 0.0
        if cfg.witness is not None:
            self.base += cfg.witness.interval + cfg.witness.timeout
        self.states = rec.states
        self.stimes = [s[0] for s in rec.states]
        # A daemon that starts alone listens for its peer first (engine.START_LISTEN, at least
        # the dead time), so the budget after a start is that much longer.
        from dnspair.core import engine
        self.start = max(cfg.heartbeat.dead_time, getattr(engine, "START_LISTEN", 0.0))
        self.refresh = getattr(engine, "REFRESH", 0.0)
        self.longest = (max(HANG_BUDGET, self.start + DEATH_BUDGET, self.refresh + DEATH_BUDGET)
                        + max([m[2] for m in rec.marks] + [0.0])
                        + self.base + cfg.heartbeat.dead_time + 0.1)

    def state(self, q: float):
        i = bisect.bisect_right(self.stimes, q) - 1
        return self.states[i] if i >= 0 else (0.0, (), False, 0.0, (), False, (False, False))

    def covered(self, q: float) -> bool:
        extra = self.base + self.state(q)[3]
        if self.state(q)[5]:
            # Heartbeats are being lost: a bye or a contest may never reach the peer, which
            # then learns nothing; its refresh (engine.REFRESH) bounds what a client sees.
            extra += self.refresh
        i = bisect.bisect_right(self.times, q) - 1
        while i >= 0:
            t, kind, more = self.marks[i]
            if q - t > self.longest:
                return False
            b = (HANG_BUDGET if kind in ("hung", "slow") else
                 self.start + DEATH_BUDGET if kind in STARTS else
                 self.refresh + DEATH_BUDGET if kind in HEALS else DEATH_BUDGET)
            if q - t <= b + more + extra:
                return True
            i -= 1
        return False

    def lossy_short(self, s: float, q: float) -> bool:
        """Under heartbeat loss a false death (and its hand-back) can come at any moment, not
        at a fault edge: an outage that began at s under loss is excused for one budget."""
        return self.state(s)[5] and q - s <= DEATH_BUDGET + self.state(s)[3]

    def last_mark(self, q: float) -> str:
        i = bisect.bisect_right(self.times, q) - 1
        return f"{self.marks[i][1]} at {self.marks[i][0]:.3f}" if i >= 0 else "none"


def _stretches(bad: list, gap: float = 0.2):
    """Group (t, vip, detail) by VIP into runs whose points are less than `gap` apart."""
    out = []
    open_: dict = {}
    for t, vip, detail in bad:
        cur = open_.get(vip)
        if cur and t - cur[1] <= gap:
            cur[1] = t
        else:
            cur = [t, t, vip, detail]
            open_[vip] = cur
            out.append(cur)
    return out


def answered(rec, cfg) -> list[Violation]:
    """(1) While a node with healthy bind is up and reachable, every VIP is answered within budget."""
    b = _Budget(rec, cfg)
    bad = []
    since: dict = {}
    for t, vip, ok, _, target in rec.queries:
        if ok:
            since.pop(vip, None)
            continue
        s = since.setdefault(vip, t)
        if b.state(t)[1] and not b.covered(t) and not b.lossy_short(s, t):
            bad.append((t, vip, target))
    return [Violation("answered", s, f"VIP{v + 1} ({cfg.vips[v].ip}) unanswered {s:.3f}-{e:.3f} "
                      f"(client points at {target}; nodes able to serve: {', '.join(b.state(s)[1])}; "
                      f"last fault edge: {b.last_mark(s)})", v, target)
            for s, e, v, target in _stretches(bad)]


def pointed(rec, cfg) -> list[Violation]:
    """(2) The client is never pointed at a node without the address (another holds it) past budget."""
    b = _Budget(rec, cfg)
    bad = []
    since: dict = {}
    for t, vip, _, isbad, target in rec.queries:
        if not isbad:
            since.pop(vip, None)
            continue
        s = since.setdefault(vip, t)
        if not b.covered(t) and not b.lossy_short(s, t):
            bad.append((t, vip, target))
    return [Violation("pointed", s, f"VIP{v + 1} ({cfg.vips[v].ip}): client's ARP points at {target}, "
                      f"which lacks the address, {s:.3f}-{e:.3f} (last fault edge: {b.last_mark(s)})",
                      v, target)
            for s, e, v, target in _stretches(bad)]


def single_owner(rec, cfg) -> list[Violation]:
    """(3) While both nodes hear each other, no VIP is held by both longer than a hand-over."""
    handover = 2 * cfg.heartbeat.interval + 0.05
    b = _Budget(rec, cfg)
    out = []
    end = rec.converged.get("after_cleanup", {}).get("t", float("inf"))
    ivals: dict = {}
    for t, vip, holders in rec.addrs + [(end, v, ()) for v in range(len(cfg.vips))]:
        if len(holders) == 2:
            ivals.setdefault(vip, t)
        elif vip in ivals:
            s = ivals.pop(vip)
            v = _double(b, s, t, handover)
            if v is not None:
                out.append(Violation("single_owner", v, f"VIP{vip + 1} ({cfg.vips[vip].ip}) held by both "
                                     f"{s:.3f}-{t:.3f} while they heard each other "
                                     f"(last fault edge: {b.last_mark(v)})"))
    return out


def _double(b: _Budget, s: float, e: float, handover: float) -> float | None:
    """The first moment in [s, e) by which both held for `handover` since the later of s, the
    moment they could hear each other and the latest fault edge; None if there is none."""
    points = sorted({s} | {t for t in b.stimes if s < t < e} | {t for t in b.times if s < t < e})
    since = None
    for i, p in enumerate(points):
        st = b.state(p)
        hear, extra = st[2], st[3]
        if not hear:
            since = None
        elif since is None or p in b.timeset and p > s:
            since = p
        nxt = points[i + 1] if i + 1 < len(points) else e
        if since is not None and nxt - since > handover + extra:
            return since + handover + extra
    return None


def converged(rec, cfg, moves: bool = False) -> list[Violation]:
    """(4) Once faults stop the pair converges: one holder per VIP and the client on it; with
    failback auto (and no pin) or after a cleanup, every VIP on its home node."""
    out = []
    names = cfg.node_names
    homes = [v.home(names) for v in cfg.vips]
    for phase, snap in rec.converged.items():
        for i, v in enumerate(snap["vips"]):
            want_home = phase == "after_cleanup" or (cfg.failback == "auto" and not moves)
            hs = v["holders"]
            why = None
            if len(hs) != 1:
                why = f"held by {list(hs) or 'nobody'}"
            elif want_home and hs[0] != homes[i]:
                why = f"held by {hs[0]}, not its home {homes[i]}"
            elif not v["answered"] or v["target"] != hs[0]:
                why = f"client points at {v['target']} (answered: {v['answered']}), holder {hs[0]}"
            if why:
                out.append(Violation("converged", snap["t"], f"{phase}: VIP{i + 1} ({cfg.vips[i].ip}) {why}",
                                     i, v["target"]))
    return out


KEPT_WINDOW = 2.0      # a restarted node has heard its peer and taken its VIPs back by then


def sticky_kept(rec, cfg) -> list[Violation]:
    """(6) failback: manual survives a restart that kept the state directory: a VIP the node
    held as a failover's when it went down, and that its peer (the VIP's home) took only
    while it was gone, comes back to it, if nothing else happens for KEPT_WINDOW and both
    can serve and hear each other. (A start with the state lost gets defaults: no check.)"""
    if cfg.failback != "manual":
        return []
    b = _Budget(rec, cfg)
    out = []
    for t, node, kept, sticky, pins, peer_away in rec.starts:
        due = sorted(i for i in sticky & peer_away if not (pins and pins[i]))
        end = t + KEPT_WINDOW
        if not kept or not due or end > rec.converged.get("faults_over", {}).get("t", 0.0):
            continue
        if any(t < m < end + 0.01 for m in b.times):
            continue
        st0, st1 = b.state(t), b.state(end)
        if st0 != st1 or len(st0[1]) != 2 or not st0[2] or st0[5]:
            continue
        for i in due:
            holders = next((h for ta, v, h in reversed(rec.addrs) if v == i and ta <= end), ())
            if holders != (node,):
                out.append(Violation("sticky_kept", end, f"VIP{i + 1} ({cfg.vips[i].ip}) held by "
                                     f"{list(holders) or 'nobody'} {KEPT_WINDOW:g} s after {node} "
                                     f"restarted with its state kept (it held it as a failover's)"))
    return out


def witness_backed(rec, cfg) -> list[Violation]:
    """(7) With a witness configured, a node takes a VIP while its peer is not alive only after
    the witness answered a ping sent once the peer was overdue (suspect_after past the last
    heartbeat heard) or after the peer's bye. An answer to an earlier ping proves nothing: the
    node may have been cut off from the LAN (the witness is its gateway) right after it."""
    if cfg.witness is None:
        return []
    out = []
    for t, node, vip, alive, heard, bye, _ in rec.claims:
        if alive:
            continue
        quiet = None if heard is None else heard + (0.0 if bye else cfg.heartbeat.suspect_after)
        if not any(n == node and (quiet is None or s >= quiet) and s <= t for s, n in rec.witness):
            out.append(Violation("witness_backed", t, f"{node} claimed VIP{vip + 1} ({cfg.vips[vip].ip}) "
                                 f"with no witness answer to a ping sent since its peer went quiet "
                                 f"(at {quiet if quiet is None else round(quiet, 3)})"))
    return out


def needless_claim(rec, cfg) -> list[Violation]:
    """(8) A node never takes, as from a dead peer, a VIP its peer holds and serves while the
    peer's heartbeats reach it: a cable plugged back in, or a one-way cut, makes the peer look
    dead only from the side that does not hear it. Checked when, for a dead time and an
    interval (plus any delay) before the claim, the peer's datagrams all reached the node, the
    peer could serve and held the VIP, and no fault edge fell. Not for a daemon that never had
    its peer live since it started: heartbeats that never echoed it could be a replay (defect c
    of docs/simulator.md), so it takes the VIPs."""
    b = _Budget(rec, cfg)
    names = cfg.node_names
    hb = cfg.heartbeat
    out = []
    for t, node, vip, alive, _, _, ever in rec.claims:
        if alive or not ever:
            continue
        me = names.index(node)
        peer = names[1 - me]
        st = b.state(t)
        w = hb.dead_time + hb.interval + st[3] + 0.01
        lo = bisect.bisect_right(b.times, t - w)
        if lo < len(b.times) and b.times[lo] <= t:
            continue
        pts = [t - w] + [x for x in b.stimes if t - w < x <= t]
        if not all(b.state(x)[6][me] and peer in b.state(x)[1] for x in pts):
            continue
        held = [(ta, h) for ta, v, h in rec.addrs if v == vip and ta <= t]
        before = [h for ta, h in held if ta <= t - w][-1:]
        if before and all(peer in h for h in before + [h for ta, h in held if ta > t - w]):
            out.append(Violation("needless_claim", t, f"{node} claimed VIP{vip + 1} ({cfg.vips[vip].ip}) "
                                 f"as from a dead peer while {peer} held and served it and its "
                                 f"heartbeats reached {node} (last fault edge: {b.last_mark(t)})",
                                 vip, node))
    return out


def no_errors(rec, cfg) -> list[Violation]:
    """(5) Nothing raises (nor busy-loops, nor fails to stop)."""
    return [Violation("raised", t, f"{node}: {text}") for t, node, text in rec.errors]


ALL = (answered, pointed, single_owner, converged, sticky_kept, witness_backed, needless_claim,
       no_errors)


def check(rec, cfg, schedule: dict | None = None) -> list[Violation]:
    moves = bool(schedule) and any(f["kind"] == "move" for f in schedule["faults"])
    out: list[Violation] = []
    for fn in ALL:
        out += fn(rec, cfg, moves) if fn is converged else fn(rec, cfg)
    return sorted(out, key=lambda v: v.t)
