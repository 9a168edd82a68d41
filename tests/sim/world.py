"""The simulated world: a virtual clock, a LAN with heartbeat links, two nodes' shells, a client.

Everything runs on one event queue ordered by (time, priority, insertion number), so a run is
a pure function of the config and the schedule (docs/simulator.md).
"""
from __future__ import annotations

import dataclasses
import functools
import heapq
import random
import traceback
from collections import deque

from dnspair.core import config as configmod
from dnspair.core import wire
from dnspair.core.actions import (
    Announce,
    CheckDns,
    CheckListening,
    CheckWitness,
    CheckZones,
    Claim,
    Log,
    Notify,
    Release,
    Reply,
    Save,
    Send,
    Stopped,
    Transition,
)
from dnspair.core.engine import DNS_PENDING
from dnspair.core.events import (
    Carrier,
    Command,
    Datagram,
    DnsResult,
    Listening,
    Resumed,
    Start,
    Tick,
    WitnessResult,
)

from .client import ArpCache

KEY = bytes(range(32))
SOCKBUF = 200            # datagrams a heartbeat socket holds while the daemon is frozen
BASE_DELAY = 0.0002      # one LAN hop, plus up to as much again of jitter
QUERY_GAP = (0.02, 0.05)
BUSY_LIMIT = 200         # ticks in a row that ask for a past deadline and do nothing: a busy loop
SPIN_STEP = 1e-6         # how far the real clock has moved when a past deadline runs
WITNESS_RTT = (0.001, 0.04)   # s: ping to the witness and its answer handled (40 ms: a busy loop)
# bind opens its socket on a new address this long after it appears (plus the node's lag, as
# bind shares the loaded machine); a query reaching the node before that is refused
SOCKET_DELAY = 0.002
# A cable plugged back in: the node's port sends nothing for up to this long, while it already
# receives (namespace network, 2026-12-04: node2's heartbeats reached node1 0.36 s before
# node1's reached node2). Drawn from a generator of its own, so other draws do not shift.
LINK_SETTLE = 0.5
STOP_LIMIT = 5.0         # systemd's stop timeout: an orderly stop must finish within it
# priorities at one instant: faults, then deliveries (the daemon drains its sockets first),
# then timers, then the client
P_FAULT, P_DELIVER, P_TIMER, P_CLIENT = 0, 1, 2, 3

HEALTHY, STOPPED, HUNG, SLOW = "healthy", "stopped", "hung", "slow"


# One parse per config text, not per run: a schedule is checked in ~30 ms, and parsing
# the YAML took 4 of them. The Config is frozen; nothing writes into it.
parse_config = functools.lru_cache(maxsize=8)(configmod.parse)


def incarnation(counter: int, nonce: int) -> int:
    f = getattr(wire, "incarnation", None)
    return f(counter, nonce) if f else counter << 32 | nonce


def default_engine(cfg, me, key, inc, now):
    from dnspair.core.engine import Engine
    return Engine(cfg, me, key, inc, now)



class _Answered:
    """bind's answer waiting in the prober's socket; its latency is known when it is read."""
    __slots__ = ("sent",)

    def __init__(self, sent: float):
        self.sent = sent

class SimError(Exception):
    pass


@dataclasses.dataclass
class Record:
    """What happened, for the checkers (checks.py) and for people reading a failing run."""
    queries: list = dataclasses.field(default_factory=list)   # (t, vip, answered, pointed_bad, target)
    addrs: list = dataclasses.field(default_factory=list)     # (t, vip, holders)
    # (t, eligible, hear, extra delay, on LAN, lossy, heard by: per node, its peer's datagrams reach it)
    states: list = dataclasses.field(default_factory=list)
    marks: list = dataclasses.field(default_factory=list)     # (t, kind, extra budget): fault edges
    errors: list = dataclasses.field(default_factory=list)    # (t, node, text)
    garps: list = dataclasses.field(default_factory=list)     # (t, node, vip): frames the client got
    logs: list = dataclasses.field(default_factory=list)      # (t, node, level, text)
    # (t, node, vip, peer alive, last heard, bye, peer ever live in this run of the daemon)
    claims: list = dataclasses.field(default_factory=list)
    witness: list = dataclasses.field(default_factory=list)   # (t sent, node): pings the witness answered
    converged: dict = dataclasses.field(default_factory=dict)  # phase -> snapshot
    # (t, node, kept state?, sticky it kept, pins it obeys, the peer's `away` then)
    starts: list = dataclasses.field(default_factory=list)
    transitions: list = dataclasses.field(default_factory=list)   # (t, node, Transition)
    faults_end: float = 0.0
    events: int = 0
    calls: int = 0
    spins: int = 0       # ticks that asked for a deadline already past and did nothing
    digest: object = None


class Node:
    def __init__(self, world: World, name: str, idx: int, counter: int):
        self.w = world
        self.name = name
        self.idx = idx
        self.addrs: set[int] = set()
        self.listen_at: dict[int, float] = {}   # bind listens on this new address from then
        self.counter = counter       # the state directory's start counter (-1: none yet)
        self.saved = None            # the state directory's state file (the last Save)
        self.powered = True
        self.engine = None
        self.gen = 0                 # process generation: timers of a dead process are void
        self.frozen = 0
        self.stopping = False
        self.standby = False
        self.carrier_down = [0] * world.nlinks
        self.tx_from = [0.0] * world.nlinks   # after a carrier return: sends nothing before
        self.isolated = 0
        self.fd_flood = 0            # its file table is full: opening anything fails (EMFILE)
        self.binds: list = []        # active bind faults: (mode, latency)
        self.lag = 0.0
        self.buf: deque = deque()
        self.pending: list = []      # events that reached a frozen daemon
        self.deferred: list = []     # ARP frames of a frozen daemon
        self.dns_token = 0
        self.dns_out: set[int] = set()
        self.dns_sent: dict[int, float] = {}
        self.burst_until = [0.0] * len(world.cfg.vips)
        self.witness_busy = False
        self.wake = None
        self.wake_token = 0
        self.burst = [0] * len(world.cfg.vips)
        self.sent: list = []         # (t, data), kept when the schedule replays or injects
        self._spins = 0

    # --- reachability -----------------------------------------------------------------

    def on_lan(self) -> bool:
        return self.tx_up(0)

    def link_up(self, k: int) -> bool:
        """Receives on link k."""
        return self.powered and not self.carrier_down[k] and not self.isolated

    def tx_up(self, k: int) -> bool:
        """Sends on link k: its port has settled since the carrier came back."""
        return self.link_up(k) and self.w.now >= self.tx_from[k]

    def bind_mode(self):
        if not self.powered:
            return STOPPED, 0.0
        if not self.binds:
            return HEALTHY, 0.0   # the usual case, asked at every query
        modes = [m for m, _ in self.binds]
        if STOPPED in modes:
            return STOPPED, 0.0
        if HUNG in modes:
            return HUNG, 0.0
        if SLOW in modes:
            return SLOW, max(lat for m, lat in self.binds if m == SLOW)
        return HEALTHY, 0.0

    def bind_answers(self) -> bool:
        return self.bind_mode()[0] in (HEALTHY, SLOW)

    def eligible(self) -> bool:
        """Up, reachable, bind healthy as its checks see it, not in standby: can serve a VIP."""
        if self.engine is None or self.frozen or self.stopping or self.standby or not self.on_lan():
            return False
        mode, lat = self.bind_mode()
        return mode == HEALTHY or (mode == SLOW and lat < self.w.cfg.dns_check.timeout)

    # --- the process --------------------------------------------------------------------

    def start(self) -> None:
        w = self.w
        self.counter += 1
        inc = incarnation(self.counter, w.rng.getrandbits(32))
        self.gen += 1
        self.frozen = 0
        self.stopping = False
        self.standby = False
        self.buf.clear()
        self.pending.clear()
        self.deferred.clear()
        self.witness_busy = False
        self.dns_out = set()
        self.dns_sent.clear()
        self.wake = None
        self.wake_token += 1
        try:
            self.engine = w.engine_factory(w.cfg, self.name, w.key, inc, w.now)
        except Exception:  # noqa: BLE001 - recorded as a violation
            w.error(self.name, "Engine() raised:\n" + traceback.format_exc())
            return
        peer = w.peer(self).engine
        s = self.saved
        # the pins it will obey: its kept admin's or the peer's, whichever is newer (an operator
        # may have pinned a VIP on the peer while this node was down)
        admins = [a for a in (s.admin if s else None, getattr(peer, "admin", None)) if a is not None]
        pins = max(admins, key=lambda a: (a.counter, a.node)).pins if admins else ()
        w.rec.starts.append((w.now, self.name, s is not None, s.sticky if s else frozenset(),
                             pins, frozenset(getattr(peer, "away", ()))))
        self.handle(Start(held=frozenset(self.addrs), saved=s) if s is not None
                    else Start(held=frozenset(self.addrs)))
        for k in range(w.nlinks):
            if self.carrier_down[k]:
                self.handle(Carrier(w.iface(k), False))

    def kill(self) -> None:
        """The process is gone (SIGKILL, power): its timers, sockets and bursts with it."""
        self.engine = None
        self.gen += 1
        self.stopping = False
        self.frozen = 0
        self.buf.clear()
        self.pending.clear()
        self.deferred.clear()
        self.wake = None
        self.wake_token += 1
        self.burst = [b + 1 for b in self.burst]

    def handle(self, ev) -> None:
        w = self.w
        eng = self.engine
        if eng is None:
            return
        now = w.now
        w.rec.calls += 1
        try:
            step = eng.handle(now, ev)
        except Exception:  # noqa: BLE001 - recorded as a violation
            w.error(self.name, f"handle({ev!r:.200}) raised:\n" + traceback.format_exc())
            self._crashed()
            return
        if w.trace is not None:
            w.trace.update(f"{now!r} {self.name} {ev!r} -> {step.actions!r} {step.wake_at!r}\n".encode())
        gen = self.gen
        for a in step.actions:
            if self.gen != gen:
                return
            self.do(a)
        if self.gen != gen or self.engine is None:
            return
        wa = step.wake_at
        if wa is not None and wa <= now:
            # The real loop runs a past deadline at once, and its clock has moved on by then.
            wa = now + SPIN_STEP
            if isinstance(ev, Tick) and not step.actions:
                self._spins += 1
                w.rec.spins += 1
                if self._spins == BUSY_LIMIT:
                    w.error(self.name, f"busy loop: {BUSY_LIMIT} ticks in a row asked for a deadline "
                                       f"already past and did nothing (from t={now:.6f})")
                if self._spins >= BUSY_LIMIT:
                    wa = now + 1e-3   # it spins on; simulating every microsecond costs too much
        else:
            self._spins = 0
        if wa is None:
            self.wake = None
            self.wake_token += 1
        elif wa != self.wake:
            self.wake = wa
            self.wake_token += 1
            t = wa
            if self.lag:
                t += w.rng.uniform(0.0, self.lag)
            w.at(t, P_TIMER, self.on_tick, self.wake_token)

    def _crashed(self) -> None:
        """An exception kills the real daemon; systemd's hook and restart follow."""
        self.kill()
        w = self.w
        w.at(w.now + 0.1, P_FAULT, self._hook, self.gen)
        w.at(w.now + 1.0, P_FAULT, self._restart_after_crash, self.gen)
        w.mark("crash")

    def _hook(self, gen: int) -> None:
        if self.gen == gen and self.engine is None:
            self.addrs.clear()
            self.listen_at.clear()
            self.w.addr_changed()
            self.w.mark("hook")

    def _restart_after_crash(self, gen: int) -> None:
        if self.gen == gen and self.engine is None and self.powered:
            self.start()
            self.w.mark("restart")

    def on_tick(self, token: int) -> None:
        if token != self.wake_token or self.engine is None:
            return
        if self.frozen:
            return   # resume ticks anyway
        self.wake = None
        self.handle(Tick())

    def deliver(self, ev) -> None:
        """An event from outside (datagram, result, carrier, command) reaching the daemon."""
        if self.engine is None:
            return
        if isinstance(ev, _Answered) and not self.frozen:
            ev = DnsResult(ok=True, latency=self.w.now - ev.sent)
        if self.frozen:
            if isinstance(ev, Datagram):
                if len(self.buf) < SOCKBUF:
                    self.buf.append(ev)
            else:
                self.pending.append(ev)
            return
        self.handle(ev)

    def resume(self) -> None:
        w = self.w
        self.handle(Resumed())
        while self.buf and self.engine is not None and not self.frozen:
            self.handle(self.buf.popleft())
        while self.pending and self.engine is not None and not self.frozen:
            ev = self.pending.pop(0)
            if isinstance(ev, _Answered):
                ev = DnsResult(ok=True, latency=self.w.now - ev.sent)
            self.handle(ev)
        frames, self.deferred = self.deferred, []
        for vip, token, left in frames:
            w.at(w.now, P_TIMER, self._frame, vip, token, left, self.gen)
        if self.engine is not None and not self.frozen:
            self.wake = None
            self.handle(Tick())

    # --- actions ------------------------------------------------------------------------

    def do(self, a) -> None:
        w = self.w
        t = type(a)
        if t is Send:
            self.send(a.data)
        elif t is CheckDns:
            if a.forget:
                self.dns_out.clear()
            self.check_dns()
        elif t is Claim:
            e = self.engine   # what it knew of its peer (checks.witness_backed, needless_claim)
            if hasattr(e, "peer_alive"):   # not the toy engines of the checker's own tests
                w.rec.claims.append((w.now, self.name, a.vip, e.peer_alive(w.now), e.peer.last_heard,
                                     e.peer.left, e.peer.ever_heard))
            if a.vip not in self.addrs:
                self.listen_at[a.vip] = w.now + SOCKET_DELAY + self.lag
            self.addrs.add(a.vip)
            w.addr_changed()
        elif t is CheckListening:
            w.at(w.now, P_TIMER, self._listening, self.gen, a.vip)
        elif t is Release:
            self.addrs.discard(a.vip)
            self.listen_at.pop(a.vip, None)
            self.burst[a.vip] += 1
            w.addr_changed()
        elif t is Announce:
            if a.refresh and w.now < self.burst_until[a.vip]:
                return   # a burst still runs: the real announcer skips a refresh
            count = 1 if a.refresh else w.cfg.arp.count
            self.burst_until[a.vip] = w.now + w.cfg.arp.spacing * (count - 1)
            self.burst[a.vip] += 1
            self._frame(a.vip, self.burst[a.vip], count, self.gen)
        elif t is Log:
            w.rec.logs.append((w.now, self.name, a.level, a.text))
        elif t is CheckWitness:
            self.check_witness()
        elif t is Stopped:
            self.kill()
            w.mark("stopped")
        elif t is Reply:
            w.rec.logs.append((w.now, self.name, "reply", f"{'ok' if a.ok else 'refused'}: {a.text}"))
        elif t is Notify:
            pass
        elif t is CheckZones:
            pass   # zone serials are not modelled: the VIP rules never read them
        elif t is Save:
            self.saved = a.state
        elif t is Transition:
            w.rec.transitions.append((w.now, self.name, a))
        else:
            w.error(self.name, f"unknown action {a!r}")

    def send(self, data: bytes) -> None:
        w = self.w
        if w.keep_sent:
            self.sent.append((w.now, data))
        peer = w.peer(self)
        rnd = w.rng.random
        for k in range(w.nlinks):
            if not self.tx_up(k):
                continue
            loss, delay, jitter, dup = w.net[(k, self.idx)]
            copies = 2 if dup and rnd() < dup else 1
            for _ in range(copies):
                if loss and rnd() < loss:
                    continue
                t = w.now + BASE_DELAY * (1 + rnd()) + delay + (jitter * rnd() if jitter else 0.0)
                w.at(t, P_DELIVER, peer.arrive, k, data, w.addr_of(self, k))

    def arrive(self, k: int, data: bytes, src: str) -> None:
        if self.link_up(k):
            self.deliver(Datagram(link=k, data=data, src=src))

    def check_dns(self) -> None:
        # Like the real prober: the answer to any query still out counts and ends them all,
        # and a hung bind never answers: the engine's timeout judges.
        w = self.w
        self.dns_token += 1
        self.dns_out.add(self.dns_token)
        mode, lat = self.bind_mode()
        if mode == HEALTHY:
            d = w.rng.uniform(0.0005, 0.003)
            res = DnsResult(ok=True, latency=d)
        elif mode == STOPPED:
            d, res = 0.0, DnsResult(ok=False, error="refused")
        elif mode == SLOW:
            d, res = lat, DnsResult(ok=True, latency=lat)
        else:
            return
        self.dns_sent[self.dns_token] = w.now
        w.at(w.now + d, P_TIMER, self._dns_done, self.gen, self.dns_token, res)

    def listens(self, vip: int) -> bool:
        return self.w.now >= self.listen_at.get(vip, float("-inf"))

    def _listening(self, gen: int, vip: int) -> None:
        if gen == self.gen:
            self.deliver(Listening(vip, vip in self.addrs and self.listens(vip)))

    def _dns_done(self, gen: int, token: int, res) -> None:
        if gen == self.gen and token in self.dns_out and token > self.dns_token - DNS_PENDING:
            # Like the prober: an answer settles its query and those before it.
            later = {t for t in self.dns_out if t > token}
            if res.ok:   # the prober measures from its query to its read: a freeze counts
                res = _Answered(self.dns_sent[token])
            else:
                later = set()
            self.dns_out = later
            self.dns_sent = {t: s for t, s in self.dns_sent.items() if t in later}
            self.deliver(res)

    def check_witness(self) -> None:
        """One ping, one at a time (the shell drops an ask while one is out). Its answer takes
        WITNESS_RTT (a loaded Pi's loop), and gets back only if the node is on the LAN both
        when the echo goes out and when the reply comes in; else False after the timeout."""
        w = self.w
        if w.cfg.witness is None or self.witness_busy:
            return
        self.witness_busy = True
        sent = w.now
        if self.on_lan():
            w.at(w.now + w.rng.uniform(*WITNESS_RTT), P_TIMER, self._witness_reply, self.gen, sent)
        else:
            w.at(w.now + w.cfg.witness.timeout, P_TIMER, self._witness_done, self.gen, WitnessResult(False))

    def _witness_reply(self, gen: int, sent: float) -> None:
        if gen != self.gen:
            return
        if not self.on_lan():   # the reply is lost: the ping times out
            at = max(self.w.now, sent + self.w.cfg.witness.timeout)
            self.w.at(at, P_TIMER, self._witness_done, gen, WitnessResult(False))
            return
        self.w.rec.witness.append((sent, self.name))
        self._witness_done(gen, WitnessResult(True))

    def _witness_done(self, gen: int, res) -> None:
        if gen == self.gen:
            self.witness_busy = False
            self.deliver(res)

    def _frame(self, vip: int, token: int, left: int, gen: int) -> None:
        w = self.w
        if gen != self.gen or token != self.burst[vip] or left <= 0:
            return
        if self.frozen:
            self.deferred.append((vip, token, left))
            return
        if self.fd_flood and w.open_per_announce:
            w.rec.logs.append((w.now, self.name, "warning", f"announcing VIP{vip + 1}: EMFILE"))
        elif self.on_lan() and vip in self.addrs:
            if w.cfg.vips[vip].family == 6:
                w.client.na(self.name, vip, w.na_override)
            else:
                w.client.garp(self.name, vip)
            w.rec.garps.append((w.now, self.name, vip))
        if left > 1:
            w.at(w.now + w.cfg.arp.spacing, P_TIMER, self._frame, vip, token, left - 1, gen)


class World:
    # The shell's announcer opens its packet socket once, before it is needed (shell/arp.py);
    # True is the old shell, which opened a file for every burst (issue 10, defect 3).
    open_per_announce = False

    def __init__(self, cfg_text: str, schedule: dict, engine_factory=None, key: bytes = KEY,
                 trace: bool = False):
        self.cfg = parse_config(cfg_text)
        self.schedule = schedule
        self.engine_factory = engine_factory or default_engine
        self.key = key
        self.trace = None
        if trace:
            import hashlib
            self.trace = hashlib.sha256()
        self.names = self.cfg.node_names
        self.nlinks = min(len(self.cfg.nodes[n].addresses) for n in self.names)
        self.nvips = len(self.cfg.vips)
        self.rng = random.Random(f"world:{schedule.get('seed', 0)}")
        self.settle_rng = random.Random(f"settle:{schedule.get('seed', 0)}")
        self.now = 0.0
        self._heap: list = []
        self._seq = 0
        self.rec = Record()
        kinds = {f["kind"] for f in schedule["faults"]}
        self.keep_sent = bool(kinds & {"replay", "inject", "garbage"})
        counters = schedule.get("counters", [0, 0])
        self.nodes = [Node(self, n, i, counters[i]) for i, n in enumerate(self.names)]
        self.by_name = {n.name: n for n in self.nodes}
        self.client = ArpCache(self, self.nvips)
        self.na_override = True   # the shell's Neighbour Advertisements set the Override flag
        self.link_faults: dict = {(k, i): [] for k in range(self.nlinks) for i in (0, 1)}
        self.net: dict = {key_: (0.0, 0.0, 0.0, 0.0) for key_ in self.link_faults}
        self._last_state = None
        self._holders = [()] * self.nvips

    # --- plumbing -----------------------------------------------------------------------

    def at(self, t: float, prio: int, fn, *args) -> None:
        heapq.heappush(self._heap, (t, prio, self._seq, fn, args))
        self._seq += 1

    def run_until(self, until: float) -> None:
        heap = self._heap
        pop = heapq.heappop
        n = 0
        while heap and heap[0][0] <= until:
            t, _, _, fn, args = pop(heap)
            self.now = t
            fn(*args)
            n += 1
        self.now = until
        self.rec.events += n

    def peer(self, node: Node) -> Node:
        return self.nodes[1 - node.idx]

    def addr_of(self, node: Node, k: int) -> str:
        return self.cfg.nodes[node.name].addresses[k]

    def iface(self, k: int) -> str:
        return self.cfg.vips[0].interface if k == 0 else f"hb{k}"

    def error(self, node: str, text: str) -> None:
        self.rec.errors.append((self.now, node, text))

    # --- what the client and the checkers see -------------------------------------------------

    def answers_arp(self, name: str, vip: int) -> bool:
        n = self.by_name[name]
        return n.on_lan() and vip in n.addrs

    def arp_responders(self, vip: int) -> list:
        return [n.name for n in self.nodes if n.on_lan() and vip in n.addrs]

    def addr_changed(self) -> None:
        for v in range(self.nvips):
            h = tuple(n.name for n in self.nodes if v in n.addrs)
            if h != self._holders[v]:
                self._holders[v] = h
                self.rec.addrs.append((self.now, v, h))

    def mark(self, kind: str, extra: float = 0.0) -> None:
        """A fault edge: the failover budget runs from here; the state snapshot may change."""
        self.rec.marks.append((self.now, kind, extra))
        self.state_changed()

    def state_changed(self) -> None:
        elig = tuple(n.name for n in self.nodes if n.eligible())
        a, b = self.nodes
        hear = False
        if all(n.engine is not None and not n.frozen and not n.stopping for n in self.nodes):
            hear = any(a.tx_up(k) and b.tx_up(k) and self.net[(k, 0)][0] == 0
                       and self.net[(k, 1)][0] == 0 for k in range(self.nlinks))
        # Delay slows the news between the nodes by itself; loss by up to a dead time (past
        # that the peer would be found dead): both widen the failover budget.
        extra = max(d + j for _, d, j, _ in self.net.values())
        # A lagging loop fires each timer up to its lag late: a check's send and its timeout
        # are two (seed 300013621: a hang found 0.43 s after it began, 0.063 s of lag).
        extra += 2 * max(n.lag for n in self.nodes)
        lossy = any(loss for loss, _, _, _ in self.net.values())
        if lossy:
            extra += self.cfg.heartbeat.dead_time
        lan = tuple(n.name for n in self.nodes if n.on_lan())
        st = (elig, hear, extra, lan, lossy, (self._hears(a, b), self._hears(b, a)))
        if st != self._last_state:
            self._last_state = st
            self.rec.states.append((self.now, *st))

    def _hears(self, n: Node, src: Node) -> bool:
        """Every datagram src's daemon sends reaches n's daemon (on some link, none lost)."""
        if any(m.engine is None or m.frozen or m.stopping for m in (n, src)):
            return False
        return any(src.tx_up(k) and n.link_up(k) and self.net[(k, src.idx)][0] == 0
                   for k in range(self.nlinks))

    def query(self, vip: int) -> None:
        target = self.client.target(vip)
        ok = bad = False
        if target is not None:
            n = self.by_name[target]
            has = vip in n.addrs and n.powered
            ok = has and n.on_lan() and n.bind_answers() and n.listens(vip)
            if not has:
                # Only a holder whose daemon runs can announce: an address left behind by a
                # killed daemon (until its stop hook) is no one's to fix, and its restart is a
                # fault edge with its own budget (seed 790: both nodes failed at once).
                bad = any(m.on_lan() and vip in m.addrs and m.engine is not None
                          for m in self.nodes if m is not n)
        self.rec.queries.append((self.now, vip, ok, bad, target))
        self.at(self.now + self.rng.uniform(*QUERY_GAP), P_CLIENT, self.query, vip)

    def snapshot(self) -> dict:
        snap = {"t": self.now, "vips": []}
        for v in range(self.nvips):
            last = next((q for q in reversed(self.rec.queries) if q[1] == v), None)
            snap["vips"].append({"holders": self._holders[v], "answered": bool(last and last[2]),
                                 "target": last[4] if last else None})
        snap["running"] = [n.engine is not None for n in self.nodes]
        return snap

    # --- faults ---------------------------------------------------------------------------------

    def set_link(self, f: dict, on: bool) -> None:
        links = range(self.nlinks) if f.get("link", "all") == "all" else [f["link"] % self.nlinks]
        dirs = {0: (0,), 1: (1,)}.get(f.get("dir", 2), (0, 1))
        for k in links:
            for d in dirs:
                lst = self.link_faults[(k, d)]
                if on:
                    lst.append(f)
                else:
                    lst.remove(f)
                keep = 1.0
                delay = jitter = dup = 0.0
                for g in lst:
                    kind = g["kind"]
                    if kind == "partition":
                        keep = 0.0
                    elif kind == "loss":
                        keep *= 1 - g["p"]
                    elif kind == "delay":
                        delay += g["delay"]
                        jitter += g.get("jitter", 0.0)
                    elif kind == "dup":
                        dup = max(dup, g["p"])
                self.net[(k, d)] = (1 - keep, delay, jitter, dup)

    def run(self, settle: float | None = None, cleanup_settle: float = 1.5) -> Record:
        """Start both daemons, play the schedule, then let the pair settle and check it twice:
        as the faults left it, and after an operator cleanup."""
        from . import faults
        sch = self.schedule
        starts = sch.get("start", [0.0, 0.0])
        for n, t0 in zip(self.nodes, starts, strict=True):
            self.at(t0, P_FAULT, self._boot, n)
        for v in range(self.nvips):
            self.at(self.rng.uniform(*QUERY_GAP), P_CLIENT, self.query, v)
        end = 0.0
        for f in sch["faults"]:
            faults.schedule(self, f)
            end = max(end, f["at"] + f.get("dur", 0.0))
        end = max(end, sch.get("duration", 0.0))
        self.rec.faults_end = end
        if settle is None:
            settle = 2.0 + (self.cfg.hold_down if self.cfg.failback == "auto" else 0.0)
        self.run_until(end + settle)
        self.rec.converged["faults_over"] = self.snapshot()
        self.mark("cleanup")
        self.nodes[0].deliver(Command("cleanup"))
        self.run_until(end + settle + cleanup_settle)
        self.rec.converged["after_cleanup"] = self.snapshot()
        if self.trace is not None:
            self.trace.update(repr((self.rec.queries, self.rec.addrs, self.rec.logs)).encode())
            self.rec.digest = self.trace.hexdigest()
        return self.rec

    def _boot(self, n: Node) -> None:
        if n.engine is None and n.powered:
            n.start()
            self.mark("start")
