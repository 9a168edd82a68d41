"""The decision engine: observations in, the VIPs this node must hold out.

Pure: no sockets, no clock. Every method takes `now` (monotonic seconds) and returns a list
of actions for the shell to carry out. Rules (docs/protocol.md has the reasoning):

* Each VIP goes to the best node by rank: pinned (`dnspair move`) > DNS healthy > sticky
  (holds it and should not lose it by preference alone) > preference score > already holds
  it > name order. Only nodes that are alive and available (carrier up, not standby) count.
* A node that takes a VIP from a failed or dead peer marks it sticky: with `failback: manual`
  it stays until `dnspair cleanup`; with `auto` until the peer has been healthy for `hold_down`.
* While the peer is alive, a VIP the peer holds is claimed only once the peer yields it; the
  yielding node keeps the address until it sees the new owner hold it, so a planned move
  loses no query and a VIP is never claimed by both.
* A peer silent for `dead_time` (or that said bye) is dead: take every VIP, but a VIP not
  already held only if the witness (when configured) answers.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from . import wire
from .config import Config


# --- actions for the shell ------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    vip: int


@dataclass(frozen=True)
class Release:
    vip: int


@dataclass(frozen=True)
class Announce:
    vip: int


@dataclass(frozen=True)
class SendNow:
    """Send a heartbeat at once: the view changed."""


@dataclass(frozen=True)
class Log:
    text: str
    level: str = "info"


# --- state ----------------------------------------------------------------------------

@dataclass
class Peer:
    last_heard: float | None = None
    left: bool = False              # said bye
    msg: wire.Message | None = None
    good_since: float | None = None  # alive, DNS healthy and not in standby since
    ever_heard: bool = False
    links_heard: dict[int, float] = field(default_factory=dict)
    guards: dict[int, wire.ReplayGuard] = field(default_factory=dict)
    applied: tuple[int, int] = (0, 0)  # (incarnation, seq) of the newest message applied


@dataclass
class Failure:
    what: str
    node: str
    first: float
    last: float
    count: int
    why: str


def _bit(mask: int, i: int) -> bool:
    return bool(mask >> i & 1)


def _mask(idx) -> int:
    return sum(1 << i for i in idx)


class Engine:
    def __init__(self, cfg: Config, me: str, key: bytes, incarnation: int, now: float):
        if me not in cfg.nodes:
            raise ValueError(f"node {me!r} is not in the config (nodes: {', '.join(cfg.node_names)})")
        self.cfg = cfg
        self.me = me
        self.peer_name = cfg.peer_of(me)
        self.key = key
        self.incarnation = incarnation
        self.seq = 0
        self.started = now
        self.n = len(cfg.vips)
        self.names = cfg.node_names
        self.homes = [v.home(self.names) for v in cfg.vips]
        # local observations
        self.dns_seen = False
        self.dns_ok = False
        self.consecutive = 0
        self.total_failures = 0
        self.dns_latency = None
        self.dns_error = None
        self.standby = False
        self.carrier: dict[str, bool] = {v.interface: True for v in cfg.vips}
        self.witness_ok = cfg.witness is None
        self.witness_at: float | None = None
        # what this node holds and how
        self.held: set[int] = set()
        self.sticky: set[int] = set()
        self.yielding: set[int] = set()
        self.contested: set[int] = set()  # held here while the peer also held them
        self.admin = wire.Admin(pins=(0,) * self.n)
        self.peer = Peer()
        self.ready = False
        self.failures: dict[tuple[str, str], Failure] = {}
        self.drops: dict[str, int] = {}
        self.failovers = 0
        self.last_failover: float | None = None
        self.sent_at: dict[int, float] = {}
        self.rtt: float | None = None
        self.last_rx: tuple[int, float] | None = None  # (peer seq, when) for acks
        self.peer_digest_ok = True
        self.peer_was_alive = False
        self.listen_until = 0.0

    # --- inputs -------------------------------------------------------------------------

    def adopt(self, now: float, held: set[int]) -> list:
        """At start: the addresses already on our interfaces are ours; no flapping."""
        self.held = set(held)
        acts = [Log(f"adopted VIP {self.cfg.vips[i].address} already on {self.cfg.vips[i].interface}")
                for i in sorted(held)]
        return acts + self.decide(now)

    def on_dns(self, now: float, ok: bool, latency: float | None, error: str | None) -> list:
        was_ok, first = self.dns_ok, not self.dns_seen
        self.dns_seen = True
        self.dns_latency = latency
        acts: list = []
        if ok:
            self.consecutive = 0
            self.dns_error = None
        else:
            self.consecutive += 1
            self.total_failures += 1
            self.dns_error = error
            self._record("dns_check", self.me, now, error or "failed")
        self.dns_ok = self.consecutive < self.cfg.failure_threshold
        if self.dns_ok != was_ok and not (first and self.dns_ok):
            acts.append(Log(f"local DNS {'healthy again' if self.dns_ok else 'FAILED'}"
                            + ("" if self.dns_ok else f" ({error}, {self.consecutive} in a row)"),
                            "info" if self.dns_ok else "warning"))
        acts += self.decide(now)
        if self.dns_ok != was_ok or first:
            acts.append(SendNow())
        return acts

    def on_carrier(self, now: float, interface: str, up: bool) -> list:
        if interface not in self.carrier or self.carrier[interface] == up:
            return []
        self.carrier[interface] = up
        if up:
            self._listen(now)  # heartbeats could not flow: the peer's silence means nothing yet
        return [Log(f"carrier {'up' if up else 'DOWN'} on {interface}", "info" if up else "warning")
                ] + self.decide(now) + [SendNow()]

    def resync(self, now: float, why: str) -> list:
        """We could not hear the peer for a while (frozen, stalled): listen before claiming."""
        self._listen(now)
        return [Log(f"{why}: listening for {self.peer_name} before claiming anything", "warning")
                ] + self.decide(now) + [SendNow()]  # and tell the peer at once that we are back

    def _listen(self, now: float) -> None:
        self.listen_until = now + self.cfg.heartbeat.dead_time

    def on_witness(self, now: float, ok: bool) -> list:
        if self.cfg.witness is None:
            return []
        acts = []
        if ok != self.witness_ok:
            acts.append(Log(f"witness {self.cfg.witness.address} {'reachable' if ok else 'UNREACHABLE'}",
                            "info" if ok else "warning"))
        self.witness_ok = ok
        if ok:
            self.witness_at = now
        return acts + self.decide(now)

    def witness_fresh(self) -> bool:
        """The witness answered after the peer went quiet: it is the peer that is gone, not us."""
        if self.cfg.witness is None:
            return True
        if not self.witness_ok or self.witness_at is None:
            return False
        return self.peer.last_heard is None or self.witness_at >= self.peer.last_heard

    def on_claim_failed(self, now: float, vip: int, error: str) -> list:
        self.held.discard(vip)
        self.sticky.discard(vip)
        self._record("claim", self.me, now, f"{self.cfg.vips[vip].address}: {error}")
        return [Log(f"could not add {self.cfg.vips[vip].address}: {error}", "error"), SendNow()]

    def on_datagram(self, now: float, link: int, data: bytes, src: str | None = None) -> list:
        """A datagram from link `link`. Bad ones are counted, logged and change nothing else."""
        try:
            peer_addrs = self.cfg.nodes[self.peer_name].addresses
            if src is not None and (link >= len(peer_addrs) or src != peer_addrs[link]):
                raise wire.Dropped("wrong_source", src)
            msg = wire.decode(data, self.key, self.cfg.cluster)
            if msg.sender != self.peer_name:
                raise wire.Dropped("wrong_sender", msg.sender)
            if msg.nvips != self.n:
                raise wire.Dropped("wrong_vips", f"{msg.nvips} VIPs")
            guard = self.peer.guards.setdefault(link, wire.ReplayGuard())
            guard.check(msg.incarnation, msg.seq, not self.peer_alive(now))
        except wire.Dropped as d:
            first = d.reason not in self.drops
            self.drops[d.reason] = self.drops.get(d.reason, 0) + 1
            if first:
                return [Log(f"dropped a datagram on link {link}: {d} (logged once per reason)", "warning")]
            return []
        guard.accept(msg.incarnation, msg.seq)
        self.peer.links_heard[link] = now
        if (msg.incarnation, msg.seq) <= self.peer.applied:
            return []  # the same message over the other link
        return self._apply_peer(now, msg)

    def _apply_peer(self, now: float, msg: wire.Message) -> list:
        acts: list = []
        was_alive = self.peer_alive(now)
        new_incarnation = self.peer.msg is not None and msg.incarnation != self.peer.msg.incarnation
        self.peer.applied = (msg.incarnation, msg.seq)
        self.peer.msg = msg
        self.peer.last_heard = now
        self.last_rx = (msg.seq, now)
        if msg.ack_seq in self.sent_at:
            self.rtt = max(0.0, now - self.sent_at[msg.ack_seq] - msg.ack_delay_us / 1e6)
        if msg.type == wire.PROBE:
            acts.append(SendNow())  # the peer suspects us: answer at once
        if msg.type == wire.BYE:
            if self.peer.left:
                return acts
            self.peer.left = True
            acts.append(Log(f"peer {self.peer_name} is leaving (orderly stop)"))
            return acts + self.decide(now) + [SendNow()]
        if self.peer.left or not was_alive:
            acts.append(Log(f"peer {self.peer_name} is online"
                            + (" (restarted)" if new_incarnation else "")))
            self.peer.left = False
            acts.append(SendNow())
            # After a partition both may have announced: whoever owns a VIP announces it
            # again once it alone holds it.
            self.contested |= self.held
        self.peer.ever_heard = True
        digest_ok = msg.digest == bytes.fromhex(self.cfg.digest)[:8]
        if digest_ok != self.peer_digest_ok:
            self.peer_digest_ok = digest_ok
            if not digest_ok:
                acts.append(Log(f"peer {self.peer_name} runs a different config (digest differs)", "warning"))
        good = msg.dns_ok and not msg.standby
        if not good:
            self.peer.good_since = None
        elif self.peer.good_since is None:
            self.peer.good_since = now
        if msg.admin.version > self.admin.version:
            acts += self._apply_admin(now, msg.admin)
        return acts + self.decide(now)

    def tick(self, now: float) -> list:
        return self.decide(now)

    # --- operator commands ----------------------------------------------------------------

    def command(self, now: float, cmd: str, arg: str | None = None, node: str | None = None) -> list:
        """standby | unstandby | cleanup [VIP] | move VIP NODE. ValueError on bad arguments."""
        if cmd in ("standby", "unstandby"):
            want = cmd == "standby"
            if self.standby == want:
                return [Log(f"{cmd}: already {'in standby' if want else 'active'}")]
            self.standby = want
            return [Log(f"operator: {'standby: draining VIPs' if want else 'unstandby: active again'}")
                    ] + self.decide(now) + [SendNow()]
        if not self.ready:
            # Until the peer was heard (or found dead) we may not know the newest shared state.
            raise ValueError("the daemon is still starting; try again in a moment")
        pins = list(self.admin.pins)
        if cmd == "cleanup":
            idx = [self.cfg.vip(arg)] if arg else list(range(self.n))
            for i in idx:
                pins[i] = 0
            admin = wire.Admin(self.admin.counter + 1, self.names.index(self.me), tuple(pins),
                               _mask(idx), arg is None)
        elif cmd == "move":
            i = self.cfg.vip(arg or "")
            if node not in self.names:
                raise ValueError(f"unknown node {node!r} (nodes: {', '.join(self.names)})")
            pins[i] = self.names.index(node) + 1
            admin = wire.Admin(self.admin.counter + 1, self.names.index(self.me), tuple(pins), 0, False)
        else:
            raise ValueError(f"unknown command {cmd!r}")
        return self._apply_admin(now, admin) + self.decide(now) + [SendNow()]

    def _apply_admin(self, now: float, admin: wire.Admin) -> list:
        acts = []
        self.admin = admin
        origin = self.names[admin.node] if admin.node < len(self.names) else "?"
        for i in range(self.n):
            if _bit(admin.cleanup_mask, i) and i in self.sticky:
                self.sticky.discard(i)
        if admin.cleanup_all:
            self.failures.clear()
            self.total_failures = 0
            acts.append(Log(f"cleanup (from {origin}): failures forgotten, VIPs may go home"))
        elif admin.cleanup_mask:
            acts.append(Log(f"cleanup of {', '.join(self.cfg.vips[i].ip for i in range(self.n) if _bit(admin.cleanup_mask, i))} (from {origin})"))
        for i, p in enumerate(admin.pins):
            if p:
                acts.append(Log(f"VIP {self.cfg.vips[i].ip} pinned to {self.names[p - 1]} (from {origin})"))
        return acts

    # --- the decision -----------------------------------------------------------------------

    def peer_alive(self, now: float) -> bool:
        p = self.peer
        return (p.last_heard is not None and not p.left
                and now - p.last_heard <= self.cfg.heartbeat.dead_time)

    def peer_suspect(self, now: float) -> bool:
        """Quiet for longer than usual: the shell probes rapidly to tell loss from death."""
        p = self.peer
        return (self.peer_alive(now) and now - p.last_heard > self.cfg.heartbeat.suspect_after)

    def available(self, i: int) -> bool:
        return not self.standby and self.carrier.get(self.cfg.vips[i].interface, False)

    def _rank(self, node: str, i: int):
        if node == self.me:
            healthy, sticky, holds = self.dns_ok, i in self.sticky or (
                i in self.held and self.homes[i] == self.me), i in self.held
        else:
            m = self.peer.msg
            # A peer still starting has no DNS result yet: not a failure.
            healthy, sticky, holds = m.dns_ok or not m.ready, _bit(m.sticky, i), _bit(m.held, i)
        pinned = self.admin.pins[i] == self.names.index(node) + 1
        return (pinned, healthy, sticky, self.cfg.vips[i].prefers.get(node, 0), holds,
                -self.names.index(node))

    def owner(self, now: float, i: int) -> str | None:
        """Who should hold VIP i, as this node sees it."""
        cands = []
        if self.available(i):
            cands.append(self.me)
        alive = self.peer_alive(now)
        if alive and _bit(self.peer.msg.available, i):
            cands.append(self.peer_name)
        if not alive and i not in self.held and not self.witness_fresh():
            cands = [c for c in cands if c != self.me]
        if not cands:
            return None
        return max(cands, key=lambda n: self._rank(n, i))

    def decide(self, now: float) -> list:
        if not self.ready:
            if not self.dns_seen:
                return []
            if not self.peer_alive(now) and now - self.started < self.cfg.heartbeat.dead_time:
                return []  # give the peer a chance to speak before claiming anything
            self.ready = True
        acts: list = []
        alive = self.peer_alive(now)
        m = self.peer.msg if alive else None
        if self.peer_was_alive and not alive:
            silent = now - self.peer.last_heard
            why = "said bye" if self.peer.left else f"silent for {silent:.2f} s"
            self._record("peer_lost", self.peer_name, now, why)
            acts.append(Log(f"peer {self.peer_name} lost ({why})", "warning"))
        self.peer_was_alive = alive
        if not alive:
            self.peer.good_since = None
        changed = False
        for i, vip in enumerate(self.cfg.vips):
            owner = self.owner(now, i)
            peer_holds = m is not None and _bit(m.held, i)
            peer_yields = m is not None and _bit(m.yielding, i)
            if owner == self.me:
                if i in self.yielding:
                    self.yielding.discard(i)
                    changed = True
                listening = not alive and now < self.listen_until
                if i not in self.held and (not peer_holds or peer_yields) and not listening:
                    acts += self._claim(now, i, alive)
                    changed = True
                elif i in self.held and i in self.contested and not peer_holds:
                    self.contested.discard(i)
                    acts += [Announce(i), Log(f"VIP {vip.address}: sole owner again, announcing")]
            elif i in self.held:
                # Hand over without a gap when we can still answer; otherwise let go at once.
                graceful = (owner == self.peer_name and self.dns_ok
                            and self.carrier.get(vip.interface, False))
                if graceful and not peer_holds:
                    if i not in self.yielding:
                        self.yielding.add(i)
                        changed = True
                        acts.append(Log(f"VIP {vip.address}: handing over to {owner}"))
                else:
                    why = (f"{owner} holds it now" if graceful else
                           "carrier down" if not self.carrier.get(vip.interface) else
                           "standby" if self.standby else
                           "local DNS failed" if not self.dns_ok else
                           f"{owner} should hold it" if owner else "no node can hold it")
                    acts += [Release(i), Log(f"released VIP {vip.address} ({why})",
                                             "info" if graceful else "warning")]
                    self.held.discard(i)
                    self.sticky.discard(i)
                    self.yielding.discard(i)
                    self.contested.discard(i)
                    changed = True
            if i not in self.held:
                self.contested.discard(i)
        acts += self._expire_sticky(now)
        if changed:
            acts.append(SendNow())
        return acts

    def _claim(self, now: float, i: int, peer_alive: bool) -> list:
        vip = self.cfg.vips[i]
        self.held.add(i)
        why = "preferred here"
        if self.homes[i] != self.me:
            m = self.peer.msg
            if not peer_alive and self.peer.left:
                # An orderly stop is maintenance, not a failure: the VIP goes home on return.
                why, sticky = f"peer {self.peer_name} stopped", False
            elif not peer_alive and self.peer.ever_heard:
                why, sticky = f"peer {self.peer_name} is dead", True
            elif not peer_alive:
                why, sticky = f"peer {self.peer_name} not heard since start", False
            elif not m.dns_ok and m.ready:
                why, sticky = f"DNS failed on {self.peer_name}", True
            elif m.standby:
                why, sticky = f"{self.peer_name} is in standby", False
            elif not _bit(m.available, i):
                why, sticky = f"{self.peer_name} cannot hold it (no carrier)", True
            else:
                why, sticky = "moved by operator" if self.admin.pins[i] else "rank", False
            if sticky and (self.cfg.failback == "manual" or self.cfg.hold_down > 0):
                self.sticky.add(i)
            self.failovers += 1
            self.last_failover = now
        return [Claim(i), Announce(i), Log(f"claimed VIP {vip.address} on {vip.interface} ({why})")]

    def _expire_sticky(self, now: float) -> list:
        if self.cfg.failback != "auto" or not self.sticky:
            return []
        gs = self.peer.good_since
        if not self.peer_alive(now) or gs is None or now - gs < self.cfg.hold_down:
            return []
        acts = []
        for i in sorted(self.sticky):
            if self.homes[i] == self.peer_name:
                self.sticky.discard(i)
                acts.append(Log(f"VIP {self.cfg.vips[i].address}: {self.peer_name} healthy for "
                                f"{self.cfg.hold_down:g} s, failing back"))
        return acts + (self.decide(now) + [SendNow()] if acts else [])

    def next_wakeup(self, now: float) -> float | None:
        """The next moment the decision could change without an input."""
        times = []
        if not self.ready:
            times.append(self.started + self.cfg.heartbeat.dead_time)
        if self.listen_until > now:
            times.append(self.listen_until)
        if self.peer_alive(now):
            times.append(self.peer.last_heard + self.cfg.heartbeat.dead_time + 1e-6)
            if self.cfg.failback == "auto" and self.sticky and self.peer.good_since is not None:
                times.append(self.peer.good_since + self.cfg.hold_down)
        return min(times) if times else None

    # --- outputs --------------------------------------------------------------------------------

    def message(self, now: float, mtype: int = wire.HEARTBEAT) -> wire.Message:
        self.seq += 1
        self.sent_at[self.seq] = now
        self.sent_at.pop(self.seq - 64, None)
        ack_seq, ack_delay = 0, 0
        if self.last_rx:
            ack_seq, ack_delay = self.last_rx[0], int((now - self.last_rx[1]) * 1e6)
        home_held = {i for i in self.held if self.homes[i] == self.me}
        return wire.Message(
            cluster=self.cfg.cluster, sender=self.me, incarnation=self.incarnation, seq=self.seq,
            type=mtype, ack_seq=ack_seq, ack_delay_us=ack_delay, dns_ok=self.dns_ok,
            standby=self.standby, witness_ok=self.witness_ok, ready=self.ready,
            consecutive_failures=self.consecutive, total_failures=self.total_failures,
            dns_latency_us=int((self.dns_latency or 0) * 1e6), nvips=self.n,
            held=_mask(self.held), yielding=_mask(self.yielding),
            sticky=_mask(self.sticky | home_held),
            available=_mask(i for i in range(self.n) if self.available(i)),
            links_mask=_mask(k for k, t in self.peer.links_heard.items()
                             if now - t <= self.cfg.heartbeat.dead_time),
            digest=bytes.fromhex(self.cfg.digest)[:8], admin=self.admin,
        )

    def leave(self, now: float) -> tuple[list, wire.Message]:
        """Orderly stop: release everything and say bye so the peer takes over at once."""
        acts = [Release(i) for i in sorted(self.held)]
        acts += [Log(f"released VIP {self.cfg.vips[i].address} (stopping)") for i in sorted(self.held)]
        self.held.clear()
        self.sticky.clear()
        self.yielding.clear()
        return acts, self.message(now, wire.BYE)

    def _record(self, what: str, node: str, now: float, why: str) -> None:
        f = self.failures.get((what, node))
        if f is None:
            self.failures[(what, node)] = Failure(what, node, now, now, 1, why)
        else:
            self.failures[(what, node)] = replace(f, last=now, count=f.count + 1, why=why)
