"""The decision engine: typed events in, actions and the next deadline out.

Pure: no sockets, no clock. `Engine.handle(now, event)` takes one event from
`core/events.py` with `now` (monotonic seconds) and returns a `Step`: the actions of
`core/actions.py` in order, and the moment it next wants a `Tick`. Every timing rule lives
here (`_due`): heartbeat cadence, suspect/probe, dead time, DNS check cadence, witness
cadence, stall detection, bye repeats, the systemd watchdog. Rules (docs/protocol.md has the
reasoning):

* Each VIP goes to the best node by rank: DNS healthy > pinned (`dnspair move`) > sticky
  (holds it and should not lose it by preference alone) > preference score > already holds
  it > name order. Only nodes that are alive and available (carrier up, not standby) count.
* A node that takes a VIP from a failed or dead peer marks it sticky: with `failback: manual`
  it stays until `dnspair cleanup`; with `auto` until the peer has been healthy for `hold_down`.
* While the peer is alive, a VIP the peer holds is claimed only once the peer yields it; the
  yielding node keeps the address until it sees the new owner hold it, so a planned move
  loses no query and a VIP is never claimed by both.
* A peer silent for `dead_time` (or that said bye) is dead: take every VIP, but a VIP not
  already held only if the witness (when configured) answers.
* Whenever both nodes held a VIP at once (a contest: partition, freeze, stall), or the peer
  says it let go of one we hold, the node that keeps it announces it again once it alone
  holds it: clients may point at the other.
* The peer is alive only while its heartbeats echo our incarnation with a fresh ack
  (`core/liveness.py`, `_ack_fresh`): a one-way partition is a partition on both sides.
* A node whose bind failed (or whose last result predates a stall) holds nothing and claims
  nothing, and draws no clients: it cannot answer.
* While the peer is not live, held VIPs are announced again every REFRESH: a node cut off
  while it announced cannot know whether any client heard it.
* A claimed VIP is announced, and shown held in our heartbeats (on which the old holder lets
  go), only once bind listens on it (`CheckListening`, asked every LISTEN_POLL), or after
  `_listen_bound()`: bind opens its socket on a new address only when the kernel tells it, and
  a query sent here before that is refused. A VIP the live peer still serves (a hand-over)
  waits longer for it than one nobody serves.
"""
from __future__ import annotations

from collections.abc import Iterable, KeysView
from dataclasses import dataclass, field, replace

from . import wire
from .actions import (
    Action,
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
    Step,
    Stopped,
    Transition,
)
from .config import Config
from .drift import Drift
from .events import (
    Carrier,
    ClaimFailed,
    Command,
    Datagram,
    DnsResult,
    Event,
    Listening,
    Resumed,
    Start,
    Stop,
    Tick,
    WitnessResult,
    ZoneSerials,
)
from .liveness import LEARN, LIVE, Liveness
from .saved import Cause, Failure, Saved

BYE_REPEATS = 3          # a lost bye only costs the dead time; each repeat has a new seq
BYE_SPACING = 0.002
# An orderly stop with a live, healthy peer first hands its VIPs over, as a standby does, and
# lets go of each once the peer holds and has announced it (no query lost in between); it waits
# at most this long (the peer's bind may take up to LISTEN_WAIT to open its socket).
STOP_HANDOVER = 1.5
# DNS checks kept out at once, engine and prober alike: more than the timeout's ten intervals
# (config.py), so the oldest is never forgotten before it times out.
DNS_PENDING = 16
# While the peer is not live, held VIPs are announced again this often: a node cut off
# while it announced (or whose peer's bye was lost) cannot know whether a client heard it.
REFRESH = 1.0
# A node that starts alone listens this long (at least the dead time) before it claims
# anything: both nodes booting together may open their sockets a few hundred ms apart.
START_LISTEN = 1.0
# A node that let go of a VIP says so in its heartbeats this long, so the node that keeps it
# announces again even if the heartbeat showing the contest was lost.
RELEASE_ECHO = 1.0
# A witness ping still out this long after its timeout was lost (the shell's task died).
WITNESS_SLACK = 1.0
# A claimed VIP waits for bind's socket on it (asked this often) for at most LISTEN_WAIT, and at
# most half the suspect time: under load bind opened it up to 20 ms after the address appeared
# (measured 2026-12-03 on the 2-core VM with three busy loops; under 1 ms at rest). A bind that
# listens on the wildcard address is seen at once; one that never opens the socket cannot answer
# there anyway (the DNS check judges bind), and the client must not wait long for the announcement.
LISTEN_POLL = 0.002
LISTEN_WAIT = 1.0
# Our heartbeats' send times are kept this long: a one-way heartbeat's ack (the seq of ours the
# peer last heard, and how long before it sent) dates it in our clock, so datagrams held up and
# replayed later are told from a peer that is still sending (`_one_way_sent`).
SENT_MEMORY = 10.0
# Claim reasons that come from a failure of the peer: the claim is a failover, and sticky.
FAILOVER = ("peer_lost", "peer_dns_failed", "peer_no_carrier")


@dataclass
class Peer:
    last_heard: float | None = None
    left: bool = False              # said bye
    msg: wire.Message | None = None
    good_since: float | None = None  # alive, DNS healthy and not in standby since
    ever_heard: bool = False
    links_heard: dict[int, float] = field(default_factory=dict)
    link_seen: dict[int, wire.SeqMemory] = field(default_factory=dict)
    seen: wire.SeqMemory = field(default_factory=wire.SeqMemory)
    one_way_at: float | None = None     # heard, but its heartbeats show it does not hear us
    one_way_msg: wire.Message | None = None
    one_way_held: int = 0   # the VIPs it last said it held in a message heard one way only


def _bit(mask: int, i: int) -> bool:
    return bool(mask >> i & 1)


def _mask(idx: Iterable[int]) -> int:
    m = 0
    for i in idx:
        m |= 1 << i
    return m


class Engine:
    def __init__(self, cfg: Config, me: str, key: bytes, incarnation: int, now: float,
                 watchdog: float | None = None):
        if me not in cfg.nodes:
            raise ValueError(f"node {me!r} is not in the config (nodes: {', '.join(cfg.node_names)})")
        self.cfg = cfg
        self.me = me
        self.peer_name = cfg.peer_of(me)
        self.key = key
        self.codec = wire.Codec(key, cfg.cluster)   # the key's HMAC state, set up once
        self.digest8 = bytes.fromhex(cfg.digest)[:8]
        self.incarnation = incarnation
        self.watchdog = watchdog
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
        # /metrics' counter: failures seen since this start, never reset by cleanup (a
        # Prometheus counter only goes up); the peer's from the deltas of its total.
        self.failures_counted = {n: 0 for n in self.names}
        self.peer_total_seen: int | None = None
        self.dns_latency: float | None = None
        self.dns_error: str | None = None
        self.standby = False
        self.maintenance = False   # an upgrade is under way here (kept across restarts, with standby)
        self.carrier: dict[str, bool] = {v.interface: True for v in cfg.vips}
        self.witness_ok = cfg.witness is None
        self.witness_at: float | None = None      # when the last ping it answered was sent
        self.witness_asked: float | None = None   # a ping is out since then (one at a time)
        self.witness_again = False                # asked again meanwhile: ask once it is back
        # what this node holds and how
        self.held: set[int] = set()
        self.sticky: set[int] = set()
        self.yielding: set[int] = set()
        self.contested: set[int] = set()  # held here while the peer also held (or may have)
        # held (the address is on), but bind does not listen on it yet: not announced, and not
        # shown held to the peer; when each was claimed
        self.binding: dict[int, float] = {}
        self.next_listen_check = now
        self.released_at: dict[int, float] = {}
        self.release_epoch = 0
        self.peer_release_epoch: int | None = None
        self.admin = wire.Admin(pins=(0,) * self.n)
        self.peer = Peer()
        self.live = Liveness(cfg.heartbeat.dead_time)
        hb = cfg.heartbeat
        self.stall_after = max(hb.dead_time - hb.interval, hb.interval / 2)   # woken this late: a stall
        # Read several times per call (peer_alive, peer_suspect): one attribute, not two.
        self._dead_time, self._suspect_after = hb.dead_time, hb.suspect_after
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
        self.stalls = 0
        # the clock the engine keeps for itself
        self.started_up = False
        self.listening_from = now
        self.stopping = False
        self.byes_left = 0
        self.next_heartbeat = now
        self.next_dns = now
        self.dns_out: list[float] = []   # when each DNS check still out was sent, oldest first
        self.dns_stale = False   # after a stall: the last result may be from before it
        self.dns_forget = False  # the next check drops answers to the queries before it
        self.next_probe = 0.0
        self.next_witness = now
        self.next_watchdog = now
        self.next_bye = 0.0
        self.next_refresh = now + REFRESH
        self.learn_reply = float("-inf")
        self._quiet_inputs: tuple[object, ...] | None = None
        self.told_failed: set[int] = set()   # announced over a peer whose DNS failed
        self.probing = False
        self.expected: float | None = None   # the wake_at we last asked for
        self.status_key: (tuple[frozenset[int], bool, bool, bool, tuple[str, ...], tuple[str, ...]]
                          | None) = None
        self._send_now = False
        # kept across restarts (core/saved.py) and what explains where each VIP is
        self.away: set[int] = set()      # left here by our failure: no home claim until cleanup
        self.events = 0                  # the last transition's number
        self.causes: dict[int, Cause] = {}
        self.changed_at: dict[int, float] = {}
        self.seen_holders: list[tuple[bool, bool]] = [(False, False)] * self.n
        self.transition_counts: dict[tuple[str, str], int] = {}
        self.want_since: dict[int, float] = {}
        self.yield_since: dict[int, float] = {}
        self.stop_sticky: frozenset[int] | None = None
        self.leave_by: float | None = None      # an orderly stop hands over until then
        self.saved_key: object = None
        # the local zones (cfg.dns): what both binds serve, compared (core/drift.py)
        self.drift = Drift(cfg.dns.drift_after) if cfg.dns is not None else None
        self.next_zones = now
        self.zones_seen: ZoneSerials | None = None
        self.zones_seen_at: float | None = None
        self.zone_errors: dict[str, str] = {}

    # --- the one entry point -------------------------------------------------------------

    def handle(self, now: float, ev: Event) -> Step:
        acts: list[Action] = []
        if self.stopping:
            acts = self._bye(now) if isinstance(ev, Tick) else []
            return Step(acts, self.next_bye if self.byes_left else None)
        if self.started_up:
            acts += self._check_stall(now)
        match ev:
            case Start(held, saved):
                acts += self._on_start(now, set(held), saved)
            case Tick():
                pass
            case Datagram(link, data, src):
                acts += self._on_datagram(now, link, data, src)
            case DnsResult(ok, latency, error):
                if self.dns_asked is not None:   # else: a late answer, already judged a timeout
                    self._dns_answered(now, ok, latency)
                    timeout = self.cfg.dns_check.timeout
                    if ok and latency is not None and latency > timeout:
                        # An answer to an earlier query, later than the timeout allows.
                        ok, error = False, f"answered after {latency:.3f} s (timeout {timeout:g} s)"
                    acts += self._on_dns(now, ok, latency, error)
            case Carrier(interface, up):
                acts += self._on_carrier(now, interface, up)
            case WitnessResult(ok):
                acts += self._on_witness(now, ok)
            case Command(cmd, vip, node, text):
                acts += self._on_command(now, cmd, vip, node, text)
            case ClaimFailed(vip, error):
                acts += self._on_claim_failed(now, vip, error)
            case Listening(vip, yes):
                if yes and vip in self.binding:
                    acts += self._listens(now, vip)
            case Resumed():
                acts += self._resync(now, "resumed after a stop (SIGCONT)")
            case ZoneSerials():
                acts += self._on_zones(now, ev)
            case Stop():
                if self.leave_by is None and self._hand_over_first(now):
                    acts += [Notify("STOPPING=1"), Log(f"stopping: handing {self._ips(self.held)} "
                                                       f"over to {self.peer_name} first")]
                else:
                    acts += self._on_stop(now)
                    return Step(acts + self._save(), self.next_bye)
        if not self.started_up:
            return Step(acts, None)
        acts += self._due(now)
        acts += self.decide(now)
        if self.leave_by is not None and (not self.held or now >= self.leave_by
                                          or not self.peer_alive(now)):
            acts += self._on_stop(now)
            return Step(acts + self._save(), self.next_bye)
        acts += self._flush(now)
        acts += self._save()
        wake = self.wake_at(now)
        self.expected = wake
        return Step(acts, wake)

    # --- time: what is due now, and when to wake next -------------------------------------

    def _check_stall(self, now: float) -> list[Action]:
        """Woken far later than asked (frozen, starved, an SD card stall): the peer may have
        taken our VIPs meanwhile, and what we know of it is stale."""
        if self.expected is None or now - self.expected <= self.stall_after:
            return []
        late = now - self.expected
        self.expected = None
        return self._resync(now, f"stalled for {late:.2f} s")

    def _resync(self, now: float, why: str) -> list[Action]:
        self.stalls += 1
        self.listen_until = now + self.cfg.heartbeat.dead_time
        self.dns_stale = True         # bind may have failed meanwhile: claim after a fresh check
        self.dns_out.clear()          # a check out before the stall is forgotten, not timed out
        self.dns_forget = True
        self.next_dns = min(self.next_dns, now)
        self.contested |= self.held   # the peer may have claimed and announced them
        self.next_heartbeat = min(self.next_heartbeat, now)
        self._send_now = True         # tell the peer at once that we are back
        return [Log(f"{why}: listening for {self.peer_name} before claiming anything", "warning")]

    def _due(self, now: float) -> list[Action]:
        hb = self.cfg.heartbeat
        acts: list[Action] = []
        check = self.cfg.dns_check
        if self.dns_asked is not None and now >= self.dns_asked + check.timeout:
            # No answer in time: bind is hung (a stopped bind is refused at once).
            self.dns_out.clear()
            acts += self._on_dns(now, False, None, f"timeout after {check.timeout:g} s (bind hung?)")
        if now >= self.next_dns:
            # Every interval, even with a check out: a newer query replaces it, so a bind
            # back from a hang is seen within an interval, not after the timeout first.
            acts.append(CheckDns(forget=self.dns_forget))   # first: bind answers while we send
            self.dns_forget = False
            self.dns_out.append(now)
            del self.dns_out[:-DNS_PENDING]   # the prober forgets older ones too
            self.next_dns = _advance(self.next_dns, check.interval, now)
        suspect = self.peer_suspect(now)
        if suspect and not self.probing and self.cfg.witness is not None:
            acts += self._ask_witness(now)   # ask the witness now, not at its next interval
            self.next_witness = now + self.cfg.witness.interval
        self.probing = suspect
        if suspect:
            # The peer is quieter than usual: probe fast to tell loss from death, and send
            # no plain heartbeat meanwhile (each probe carries our view).
            if now >= self.next_probe:
                acts.append(self._send(now, wire.PROBE))
                self.next_probe = now + hb.probe_interval
            if now >= self.next_heartbeat:
                self.next_heartbeat = _advance(self.next_heartbeat, hb.interval, now)
        elif now >= self.next_heartbeat:
            self._send_now = True
            self.next_heartbeat = _advance(self.next_heartbeat, hb.interval, now)
        if self.cfg.witness is not None and now >= self.next_witness:
            acts += self._ask_witness(now)
            self.next_witness = _advance(self.next_witness, self.cfg.witness.interval, now)
        if self.binding and now >= self.next_listen_check:
            for i, since in sorted(self.binding.items()):
                if now - since >= self._listen_bound(now, i):
                    v = self.cfg.vips[i]
                    acts.append(Log(f"VIP {v.address}: bind has no socket on port "
                                    f"{self.cfg.dns_check.port} after {now - since:.2f} s; announcing anyway",
                                    "warning"))
                    acts += self._listens(now, i)
                else:
                    acts.append(CheckListening(i))
            self.next_listen_check = now + LISTEN_POLL
        if not self.held or self.peer_alive(now):
            self.next_refresh = now + REFRESH
        elif now >= self.next_refresh:
            if self.ready and self.dns_ok and not self.dns_stale:   # a failed node draws no clients
                acts += [Announce(i, refresh=True) for i in sorted(self.held) if i not in self.binding]
            self.next_refresh = now + REFRESH
        if self.drift is not None and now >= self.next_zones:
            assert self.cfg.dns is not None
            acts.append(CheckZones())
            self.next_zones = _advance(self.next_zones, self.cfg.dns.check_interval, now)
        if self.watchdog and now >= self.next_watchdog:
            # By the clock, not by wakeups: a starved loop wakes less often than it should,
            # and the watchdog is for a hung loop, not a slow one.
            acts.append(Notify("WATCHDOG=1"))
            self.next_watchdog = now + self.watchdog
        return acts

    def wake_at(self, now: float) -> float | None:
        """The next moment something is due or the decision could change without an input."""
        hb = self.cfg.heartbeat
        times = [self.next_heartbeat, self.next_dns]
        if self.dns_asked is not None:
            times.append(self.dns_asked + self.cfg.dns_check.timeout)
        if self.cfg.witness is not None:
            times.append(self.next_witness)
        if self.watchdog:
            times.append(self.next_watchdog)
        if self.binding:
            times.append(self.next_listen_check)
        if self.drift is not None:
            times.append(self.next_zones)
            due = self.drift.next_due(now)
            if due is not None:
                times.append(due)
        alive = self.peer_alive(now)
        if self.held and not alive:
            times.append(self.next_refresh)
        if not self.ready:
            listened = self.listening_from + self._start_listen()
            if listened > now:
                times.append(listened)
        if self.listen_until > now:
            times.append(self.listen_until)
        if self.leave_by is not None:
            times.append(self.leave_by)
        if self.peer.one_way_at is not None and self.peer.one_way_at + hb.dead_time > now:
            times.append(self.peer.one_way_at + hb.dead_time + 1e-6)
        last = self.peer.last_heard
        if alive and last is not None:
            times.append(last + hb.dead_time + 1e-6)
            if self.probing:
                times.append(self.next_probe)
            else:
                times.append(last + hb.suspect_after + 1e-4)
            if self.cfg.failback == "auto" and self.sticky and self.peer.good_since is not None:
                times.append(self.peer.good_since + self.cfg.hold_down)
        return min(times)

    def _flush(self, now: float) -> list[Action]:
        acts: list[Action] = []
        if self._send_now:
            self._send_now = False
            if not self.probing:
                acts.append(self._send(now, wire.HEARTBEAT))
            elif now < self.next_probe:
                acts.append(self._send(now, wire.PROBE))   # a change while probing goes out now
                self.next_probe = now + self.cfg.heartbeat.probe_interval
        acts += self._notify_status(now)
        return acts

    def _notify_status(self, now: float) -> list[Action]:
        """The STATUS= line, only when what it shows changed (it is not built every wakeup)."""
        alive = self.peer_alive(now)
        drifted = tuple(self.drift.drifted(now)) if self.drift is not None else ()
        silent = tuple(self.drift.silent(now)) if self.drift is not None and alive else ()
        key = (frozenset(self.held), alive, self.dns_ok, self.standby, drifted, silent)
        if key == self.status_key:
            return []
        self.status_key = key
        held = ", ".join(self.cfg.vips[i].ip for i in sorted(self.held)) or "no VIP"
        line = (f"holding {held}; peer {self.peer_name} {'online' if alive else 'offline'}; "
                f"DNS {'ok' if self.dns_ok else 'FAILED'}" + ("; standby" if self.standby else "")
                + (f"; differing: {', '.join(drifted)}" if drifted else "")
                + (f"; peer bind silent: {', '.join(silent)}" if silent else ""))
        return [Notify(f"STATUS={line}")]

    # --- inputs -------------------------------------------------------------------------

    def _on_start(self, now: float, held: set[int], saved: Saved | None) -> list[Action]:
        """At start: the addresses already on our interfaces are ours; no flapping."""
        self.started_up = True
        self.listening_from = now   # sockets are open from here: the wait for the peer starts
        self.held = set(held) & set(range(self.n))
        self.next_heartbeat = self.next_dns = self.next_witness = self.next_watchdog = now
        acts: list[Action] = [Log(f"adopted VIP {self.cfg.vips[i].address} already on "
                                  f"{self.cfg.vips[i].interface}") for i in sorted(self.held)]
        if saved is not None:
            acts += self._restore(saved)
        self.saved_key = self._saved_key()
        return acts

    def _restore(self, saved: Saved) -> list[Action]:
        """What the state directory kept: stickiness (failback: manual only: with `auto` the
        hold-down decides), pins, failures and the transition number."""
        ok = set(range(self.n))
        if self.cfg.failback == "manual":
            self.sticky = set(saved.sticky) & ok
            self.away = set(saved.away) & ok
        if saved.admin is not None and len(saved.admin.pins) == self.n:
            self.admin = saved.admin
        self.failures = {(f.what, f.node): f for f in saved.failures}
        self.total_failures = saved.total_failures
        self.events = saved.events
        self.causes = {i: c for i, c in saved.causes if i in ok}
        self.changed_at = {i: t for i, t in saved.changed if i in ok}
        # An upgrade restarts the daemon (and may reboot): the node stays drained until it is done.
        self.maintenance = saved.maintenance
        self.standby = saved.maintenance and saved.standby
        pins = [i for i, p in enumerate(self.admin.pins) if p]
        kept = [f"sticky {self._ips(self.sticky)}" if self.sticky else "",
                f"away from here {self._ips(self.away)}" if self.away else "",
                f"pins {self._ips(pins)}" if pins else "",
                f"{len(self.failures)} failure record(s)" if self.failures else "",
                ("maintenance" + (" in standby" if self.standby else "")) if self.maintenance else ""]
        what = "; ".join(k for k in kept if k) or "nothing to restore"
        return [Log(f"state kept from the last run: {what} (transition {self.events})")]

    def _ips(self, idx: Iterable[int]) -> str:
        return ", ".join(self.cfg.vips[i].ip for i in sorted(idx))

    # --- what is kept, what is told --------------------------------------------------------

    def _saved_key(self) -> object:
        sticky = self.sticky if self.stop_sticky is None else self.stop_sticky
        return (self.events, self.admin, frozenset(sticky), frozenset(self.away), len(self.failures),
                self.maintenance, self._kept_standby())

    def snapshot(self) -> Saved:
        """The state to keep. Failure counts ride along but do not trigger a write each: a
        hung bind fails ten checks a second, and an SD card should not see ten writes."""
        sticky = self.sticky if self.stop_sticky is None else self.stop_sticky
        return Saved(sticky=frozenset(sticky), away=frozenset(self.away), admin=self.admin,
                     failures=tuple(self.failures.values()), total_failures=self.total_failures,
                     events=self.events, causes=tuple(sorted(self.causes.items())),
                     changed=tuple(sorted(self.changed_at.items())),
                     maintenance=self.maintenance, standby=self._kept_standby())

    def _kept_standby(self) -> bool:
        """Standby survives a restart only in maintenance (an upgrade), and a stop's own
        hand-over is not one."""
        return self.standby and self.maintenance and self.leave_by is None

    def _save(self) -> list[Action]:
        key = self._saved_key()
        if key == self.saved_key:
            return []
        self.saved_key = key
        return [Save(self.snapshot())]

    def role(self) -> str:
        if self.dns_seen and not self.dns_ok:
            return "failed"
        if self.standby:
            return "standby"
        return "active" if self.held else "backup"

    def _transition(self, now: float, kind: str, code: str, reason: str, vip: int | None = None,
                    old: str | None = None, new: str | None = None,
                    duration: float | None = None) -> Transition:
        self.events += 1
        ip = None if vip is None else self.cfg.vips[vip].ip
        label = (ip or "", code)
        self.transition_counts[label] = self.transition_counts.get(label, 0) + 1
        return Transition(self.events, kind, now, self.role(), code, reason, ip, old, new,
                          None if duration is None else round(max(0.0, duration), 6))

    def explain(self, now: float, i: int, owner: str | None) -> Cause:
        """Why VIP i is where it is (`owner`, as the status model sees it), from what this node
        decided and saw. code: preferred | moved | handover | unowned, or the recorded cause of
        its move away from home (core/saved.py Cause)."""
        home = self.homes[i]
        pin = self.admin.pins[i]
        if owner is None:
            why = []
            if not self.dns_ok:
                why.append(f"DNS failed on {self.me}")
            elif not self.available(i):
                why.append(f"{self.me} {'in standby' if self.standby else 'has no carrier'}")
            if not self.peer_alive(now):
                why.append(f"{self.peer_name} offline")
            elif self.peer.msg is not None and not self.peer.msg.dns_ok:
                why.append(f"DNS failed on {self.peer_name}")
            return Cause("unowned", self.me, now, "; ".join(why) or None)
        if pin and self.names[pin - 1] == owner:
            return Cause("moved", owner, now)
        if owner == home:
            return Cause("preferred", owner, now)
        c = self.causes.get(i)
        if c is not None:
            return c
        return Cause("unknown", home, now)

    @property
    def dns_asked(self) -> float | None:
        """When the oldest DNS check still out was sent: its timeout runs from there."""
        return self.dns_out[0] if self.dns_out else None

    def _dns_answered(self, now: float, ok: bool, latency: float | None) -> None:
        """An answer settles the check it answers and those sent before it; checks sent after
        it stay out, so a bind that was slow and then hangs times out from its first
        unanswered check, not from one sent after the last slow answer came in. A failure
        (refused) speaks for now: it settles them all."""
        if ok and latency is not None:
            # The answered check was sent at now - latency; checks go an interval apart, so
            # half an interval absorbs the shell's own delay in sending and reading.
            upto = now - latency + self.cfg.dns_check.interval / 2
            self.dns_out = [t for t in self.dns_out if t > upto]
        else:
            self.dns_out.clear()

    def _on_dns(self, now: float, ok: bool, latency: float | None, error: str | None) -> list[Action]:
        self.dns_stale = False
        was_ok, first = self.dns_ok, not self.dns_seen
        self.dns_seen = True
        self.dns_latency = latency
        acts: list[Action] = []
        if ok:
            self.consecutive = 0
            self.dns_error = None
        else:
            self.consecutive += 1
            self.total_failures += 1
            self.failures_counted[self.me] += 1
            self.dns_error = error
            self._record("dns_check", self.me, now, error or "failed")
        self.dns_ok = self.consecutive < self.cfg.failure_threshold
        if self.dns_ok != was_ok and not (first and self.dns_ok):
            acts.append(Log(f"local DNS {'healthy again' if self.dns_ok else 'FAILED'}"
                            + ("" if self.dns_ok else f" ({error}, {self.consecutive} in a row)"),
                            "info" if self.dns_ok else "warning"))
            acts.append(self._transition(
                now, "dns_healthy" if self.dns_ok else "dns_failed", "dns_healthy" if self.dns_ok
                else "dns_failed", "DNS check passes again" if self.dns_ok
                else f"DNS check failed {self.consecutive} time(s) in a row ({error or 'failed'})"))
        if self.dns_ok != was_ok or first:
            self._send_now = True
        return acts

    def _on_carrier(self, now: float, interface: str, up: bool) -> list[Action]:
        if interface not in self.carrier or self.carrier[interface] == up:
            return []
        self.carrier[interface] = up
        if up:
            self._listen(now)  # heartbeats could not flow: the peer's silence means nothing yet
        self._send_now = True
        return [Log(f"carrier {'up' if up else 'DOWN'} on {interface}", "info" if up else "warning")]

    def _start_listen(self) -> float:
        return max(self.cfg.heartbeat.dead_time, START_LISTEN)

    def _listen(self, now: float) -> None:
        self.listen_until = now + self.cfg.heartbeat.dead_time

    def _ask_witness(self, now: float) -> list[Action]:
        """One ping at a time. An answer vouches for the moment its ping was sent, so an ask
        while one is out waits for it, then goes: the answer to a ping sent before the peer
        went quiet must not count as one after (a node cut off between the two would take the
        peer's VIPs). A ping out for longer than its timeout allows is taken as lost."""
        w = self.cfg.witness
        assert w is not None
        if self.witness_asked is not None and now - self.witness_asked < w.timeout + WITNESS_SLACK:
            self.witness_again = True
            return []
        self.witness_asked = now
        return [CheckWitness()]

    def _on_witness(self, now: float, ok: bool) -> list[Action]:
        if self.cfg.witness is None:
            return []
        acts: list[Action] = []
        if ok != self.witness_ok:
            acts.append(Log(f"witness {self.cfg.witness.address} {'reachable' if ok else 'UNREACHABLE'}",
                            "info" if ok else "warning"))
        if ok and not self.witness_ok and self.witness_at is not None:
            # Back on the LAN after a cut: the peer's heartbeats could not flow either, and
            # its next one may come after this answer. Its silence means nothing yet.
            self._listen(now)
        self.witness_ok = ok
        if ok:
            self.witness_at = self.witness_asked if self.witness_asked is not None else now
        self.witness_asked = None
        if self.witness_again:
            self.witness_again = False
            acts += self._ask_witness(now)
        return acts

    def witness_fresh(self) -> bool:
        """The witness answered a ping sent once the peer was overdue (suspect), or after its
        bye: it is the peer that is gone, not us. A ping sent in the ordinary gap between two
        heartbeats proves nothing: this node may be cut off from the LAN just after it."""
        if self.cfg.witness is None:
            return True
        if not self.witness_ok or self.witness_at is None:
            return False
        p = self.peer
        if p.last_heard is None:
            return True
        quiet_from = p.last_heard + (0.0 if p.left else self.cfg.heartbeat.suspect_after)
        return self.witness_at >= quiet_from

    def _listen_bound(self, now: float, i: int) -> float:
        """How long claimed VIP i waits for bind's socket before it is announced anyway. While
        the live peer still holds it with bind healthy (a hand-over: failback, move, unstandby)
        the clients lose nothing by waiting, up to LISTEN_WAIT; announced early, they would be
        refused here until bind listens (regression zc_handover_waits_for_bind: a loaded
        node's slow bind). A VIP that nobody serves waits half the suspect time at most."""
        m = self.peer.msg
        if m is not None and m.dns_ok and _bit(m.held, i) and self.peer_alive(now):
            return LISTEN_WAIT
        return min(LISTEN_WAIT, self.cfg.heartbeat.suspect_after / 2)

    def _listens(self, now: float, i: int) -> list[Action]:
        """Bind listens on claimed VIP i (or the bound ran out): point the clients here, then
        tell the peer we hold it (the shell sends the ARP burst's first frames first)."""
        del self.binding[i]
        self._send_now = True
        self._quiet_inputs = None
        return [Announce(i)]

    def _on_claim_failed(self, now: float, vip: int, error: str) -> list[Action]:
        if not 0 <= vip < self.n:
            return []
        held = vip in self.held
        self.held.discard(vip)
        self.binding.pop(vip, None)
        self.sticky.discard(vip)
        self._record("claim", self.me, now, f"{self.cfg.vips[vip].address}: {error}")
        self._send_now = True
        acts: list[Action] = [Log(f"could not add {self.cfg.vips[vip].address}: {error}", "error")]
        if held:
            self.changed_at[vip] = now
            acts.append(self._transition(now, "vip_released", "claim_failed",
                                         f"could not add the address: {error}", vip, self.me))
        return acts

    def _drop(self, link: int, d: wire.Dropped) -> list[Action]:
        first = d.reason not in self.drops
        self.drops[d.reason] = self.drops.get(d.reason, 0) + 1
        if first:
            return [Log(f"dropped a datagram on link {link}: {d} (logged once per reason)", "warning")]
        return []

    def _on_datagram(self, now: float, link: int, data: bytes, src: str | None) -> list[Action]:
        """A datagram from link `link`. Bad ones are counted, logged and change nothing else."""
        try:
            peer_addrs = self.cfg.nodes[self.peer_name].addresses
            if not 0 <= link < len(peer_addrs) or src is not None and src != peer_addrs[link]:
                raise wire.Dropped("wrong_source", str(src))
            msg = self.codec.decode(data)
            if msg.sender != self.peer_name:
                raise wire.Dropped("wrong_sender", msg.sender)
            if msg.nvips != self.n:
                raise wire.Dropped("wrong_vips", f"{msg.nvips} VIPs")
            guard = self.peer.link_seen.get(link)
            if guard is None:
                guard = self.peer.link_seen[link] = wire.SeqMemory()
            if not guard.fresh(msg.incarnation, msg.seq):
                raise wire.Dropped("replay", f"seq {msg.seq} seen before")
        except wire.Dropped as d:
            return self._drop(link, d)
        guard.accept(msg.incarnation, msg.seq)
        if not self.peer.seen.fresh(msg.incarnation, msg.seq):
            if msg.echo == self.incarnation and msg.incarnation == self.live.established:
                self.peer.links_heard[link] = now
            return []  # the same message over the other link
        self.peer.seen.accept(msg.incarnation, msg.seq)
        old_target = self.live.target
        # An echo counts only with a recent ack: heartbeats the peer sent while it did not hear
        # us (a one-way partition), or recorded then and replayed later, are not a live peer.
        echo = msg.echo if self._ack_fresh(now, msg.ack_seq) else 0
        verdict = self.live.receive(msg.incarnation, echo, self.incarnation, now)
        if verdict in (LEARN, LIVE):
            self.last_rx = (msg.seq, now)   # acked in our next heartbeat: it proves we hear it
        if verdict == LEARN:
            self._one_way_contest(msg)
            stale_ack = msg.echo == self.incarnation and echo == 0
            hb = self.cfg.heartbeat
            if (stale_ack and msg.incarnation == self.live.established
                    and now - self._one_way_sent(now, msg) <= hb.dead_time + hb.interval):
                self.peer.one_way_at, self.peer.one_way_msg = now, msg
            if self.live.target != old_target or (
                    stale_ack and now - self.learn_reply >= self.cfg.heartbeat.probe_interval):
                # Let it hear its incarnation, or a fresh ack, from us at once (rate-limited:
                # a replay must not make us send a heartbeat per datagram).
                self.learn_reply = now
                self._send_now = True
            return []
        if verdict != LIVE:
            return self._drop(link, wire.Dropped("stale_incarnation",
                                                 "another incarnation of the peer is live"))
        self.peer.links_heard[link] = now
        self.peer.one_way_held = 0   # heard both ways: a later one-way spell starts afresh
        return self._apply_peer(now, msg)

    def _one_way_contest(self, msg: wire.Message) -> None:
        """Heard one way only, the peer says it holds VIPs we hold: clients may follow its
        announcements, and its letting go of them would not reach us. Announce ours again
        (decide: "sole owner again"), once for each VIP it newly says it holds."""
        new = msg.held & ~self.peer.one_way_held
        self.peer.one_way_held = msg.held
        self.contested |= {i for i in self.held if _bit(new, i)}

    def _one_way_sent(self, now: float, msg: wire.Message) -> float:
        """When the peer sent this one-way heartbeat, in our clock, at the latest: when we sent
        the heartbeat it acks, plus how long the peer held it (so `now` less this is one round
        trip for a live peer). A live peer that does not hear us (a link just back, a one-way
        cut) acks an old seq with a long delay: sent just now. Its datagrams held up and
        replayed after it died were sent long ago, and hold nothing back. An ack older than
        SENT_MEMORY is dated at our oldest kept send: later, never earlier."""
        sent = self.sent_at.get(msg.ack_seq)
        if sent is None:
            if not self.sent_at or msg.ack_seq > self.seq:
                return now
            sent = next(iter(self.sent_at.values()))
        return min(now, sent + msg.ack_delay_us / 1e6)

    def _ack_fresh(self, now: float, ack_seq: int) -> bool:
        sent = self.sent_at.get(ack_seq)
        hb = self.cfg.heartbeat
        return sent is not None and now - sent <= hb.dead_time + hb.interval

    def _apply_peer(self, now: float, msg: wire.Message) -> list[Action]:
        acts: list[Action] = []
        was_alive = self.peer_alive(now)
        old = self.peer.msg
        new_incarnation = old is not None and msg.incarnation != old.incarnation
        self.peer.msg = msg
        self.peer.last_heard = now
        self.last_rx = (msg.seq, now)
        t, seen = msg.total_failures, self.peer_total_seen
        if seen is not None:   # a smaller total: a cleanup (or a fresh start) reset it
            self.failures_counted[self.peer_name] += t - seen if t >= seen else t
        self.peer_total_seen = t
        sent = self.sent_at.get(msg.ack_seq) if msg.echo == self.incarnation else None
        if sent is not None:
            self.rtt = max(0.0, now - sent - msg.ack_delay_us / 1e6)
        if msg.type == wire.PROBE:
            self._send_now = True  # the peer suspects us: answer at once
        if msg.type == wire.BYE:
            self.live.forget()
            if self.peer.left:
                return acts
            self.peer.left = True
            self._send_now = True
            return acts + [Log(f"peer {self.peer_name} is leaving (orderly stop)")]
        if msg.type == wire.HEARTBEAT:
            self._lock_phase(now)
        if self.peer.left or not was_alive:
            acts.append(Log(f"peer {self.peer_name} is online"
                            + (" (restarted)" if new_incarnation else "")))
            acts.append(self._transition(now, "peer_found", "peer_found", f"heard {self.peer_name}"
                                         + (" again" if self.peer.ever_heard else "")
                                         + (" (restarted)" if new_incarnation else "")))
            self.peer.left = False
            self._send_now = True
            # After a partition both may have announced: whoever owns a VIP announces it
            # again once it alone holds it.
            self.contested |= self.held
        self.peer.ever_heard = True
        digest_ok = msg.digest == self.digest8
        if digest_ok != self.peer_digest_ok:
            self.peer_digest_ok = digest_ok
            if not digest_ok:
                acts.append(Log(f"peer {self.peer_name} runs a different config (digest differs)", "warning"))
            acts.append(self._transition(
                now, "config_match" if digest_ok else "config_mismatch",
                "config_match" if digest_ok else "config_mismatch",
                f"{self.peer_name} runs {'the same' if digest_ok else 'a different'} config"))
        good = msg.dns_ok and not msg.standby
        if not good:
            self.peer.good_since = None
        elif self.peer.good_since is None:
            self.peer.good_since = now
        if msg.admin.newer_than(self.admin):
            acts += self._apply_admin(now, msg.admin)
        if new_incarnation:
            self.peer_release_epoch = None
        if msg.release_epoch != self.peer_release_epoch:
            # The peer let go of VIPs we hold: it may have announced them while it held them.
            self.peer_release_epoch = msg.release_epoch
            self.contested |= {i for i in self.held if _bit(msg.released, i)}
        return acts

    def _lock_phase(self, now: float) -> None:
        """The peer's heartbeat came: our heartbeat and DNS check due within half an interval
        go now, with this wakeup, and their cadence restarts from here. Both nodes do this,
        so the pair settles into one phase: the node whose timer fires first sends, the other
        answers on its heartbeat, and at rest each node wakes for its slot and the peer's
        heartbeat together instead of apart. Only ever earlier, never later: no silence the
        peer times, and no check that judges bind, gets longer."""
        window = self.cfg.heartbeat.interval / 2
        if self.next_heartbeat - now <= window:
            self.next_heartbeat = min(self.next_heartbeat, now)
        # Half the heartbeat interval here too: a check slower than the heartbeat is pulled
        # by that little at most, so it does not run more often than its interval allows.
        if self.next_dns - now <= min(window, self.cfg.dns_check.interval / 2):
            self.next_dns = min(self.next_dns, now)

    def _on_zones(self, now: float, ev: ZoneSerials) -> list[Action]:
        """What both binds serve: differences go to the drift tracker (its clock decides when
        they count); a zone file bind cannot load here is a failed action with bind's line."""
        if self.drift is None:
            return []
        acts: list[Action] = []
        self.zones_seen, self.zones_seen_at = ev, now
        heard = self.peer_alive(now)
        for zone, mine, theirs in ev.zones:
            self.drift.observe(now, zone, mine, theirs, peer_heard=heard)
        self.drift.observe(now, "config", ev.digests[0], ev.digests[1])
        self.drift.observe(now, "reload", ev.rendered, ev.digests[0])
        self.drift.forget({z for z, _, _ in ev.zones} | {"config", "reload"})
        errors = dict(ev.errors)
        for zone, line in sorted(errors.items()):
            if self.zone_errors.get(zone) != line:
                acts.append(Log(f"zone {zone} does not load on {self.me}: {line}", "error"))
            self._record("zone_load", self.me, now, f"{zone}: {line}", key=f"zone_load {zone}")
        for zone in sorted(set(self.zone_errors) - set(errors)):
            acts.append(Log(f"zone {zone} loads again on {self.me}"))
        self.zone_errors = errors
        return acts

    # --- operator commands ----------------------------------------------------------------

    def _on_command(self, now: float, cmd: str, vip: str | None, node: str | None,
                    text: str | None = None) -> list[Action]:
        if self.leave_by is not None:
            return [Reply(False, f"stopping: handing the VIPs over to {self.peer_name}")]
        try:
            acts = (self._maintenance(now, text) if cmd == "maintenance"
                    else self._command(now, cmd, vip, node))
        except ValueError as e:
            return [Reply(False, str(e))]
        text = "; ".join(a.text for a in acts if isinstance(a, Log)) or "done"
        return acts + [Reply(True, text)]

    def _command(self, now: float, cmd: str, arg: str | None, node: str | None) -> list[Action]:
        """standby | unstandby | cleanup [VIP] | move VIP NODE. ValueError on bad arguments."""
        if cmd in ("standby", "unstandby"):
            want = cmd == "standby"
            if self.standby == want:
                return [Log(f"{cmd}: already {'in standby' if want else 'active'}")]
            self.standby = want
            self._send_now = True
            if not want:
                self.maintenance = False   # back in service: whatever maintenance there was is over
            return [Log(f"operator: {'standby: draining VIPs' if want else 'unstandby: active again'}"),
                    self._transition(now, cmd, cmd, "operator: " + ("standby, draining VIPs" if want
                                                                   else "unstandby, active again"))]
        if cmd not in ("cleanup", "move"):
            raise ValueError(f"unknown command {cmd!r}")
        if not self.ready:
            # Until the peer was heard (or found dead) we may not know the newest shared state.
            raise ValueError("the daemon is still starting; try again in a moment")
        pins = list(self.admin.pins)
        me = self.names.index(self.me)
        if cmd == "cleanup":
            idx = [self.cfg.vip(arg)] if arg else list(range(self.n))
            for i in idx:
                pins[i] = 0
            admin = self.admin.next(me, tuple(pins), _mask(idx), arg is None)
        else:
            i = self.cfg.vip(arg or "")
            if node not in self.names:
                raise ValueError(f"unknown node {node!r} (nodes: {', '.join(self.names)})")
            pins[i] = self.names.index(node) + 1
            admin = self.admin.next(me, tuple(pins))
        self._send_now = True
        return self._apply_admin(now, admin)

    def _maintenance(self, now: float, text: str | None) -> list[Action]:
        """on: raise the flag the peer sees (refused while the peer has its own up); off: lower
        it; failed: WHY records a failed `upgrade` action (shown until `dnspair cleanup`)."""
        if text is not None and text.startswith("failed:"):
            why = text[len("failed:"):].strip() or "no reason given"
            self._record("upgrade", self.me, now, why)
            return [Log(f"upgrade failed: {why}", "warning"),
                    self._transition(now, "upgrade_failed", "upgrade_failed", f"upgrade failed: {why}")]
        if text not in ("on", "off"):
            raise ValueError("maintenance takes on, off or failed: WHY")
        want = text == "on"
        if want and not self.maintenance:
            if not self.ready:
                raise ValueError("the daemon is still starting; try again in a moment")
            m = self.peer.msg
            if self.peer_alive(now) and m is not None and m.maintenance:
                raise ValueError(f"{self.peer_name} is in maintenance: one node at a time")
        if self.maintenance == want:
            return [Log(f"maintenance: already {text}")]
        self.maintenance = want
        self._send_now = True
        return [Log(f"operator: maintenance {text}"),
                self._transition(now, "maintenance", "maintenance_" + text, f"operator: maintenance {text}")]

    def _apply_admin(self, now: float, admin: wire.Admin) -> list[Action]:
        acts: list[Action] = []
        self.admin = admin
        origin = self.names[admin.node] if admin.node < len(self.names) else "?"
        for i in range(self.n):
            if _bit(admin.cleanup_mask, i):
                self.sticky.discard(i)
                self.away.discard(i)
        if admin.cleanup_all:
            self.failures.clear()
            self.total_failures = 0
            acts.append(Log(f"cleanup (from {origin}): failures forgotten, VIPs may go home"))
        elif admin.cleanup_mask:
            cleared = ", ".join(self.cfg.vips[i].ip for i in range(self.n) if _bit(admin.cleanup_mask, i))
            acts.append(Log(f"cleanup of {cleared} (from {origin})"))
        for i, p in enumerate(admin.pins):
            if p:
                acts.append(Log(f"VIP {self.cfg.vips[i].ip} pinned to {self.names[p - 1]} (from {origin})"))
        return acts

    # --- the decision -----------------------------------------------------------------------

    def peer_alive(self, now: float) -> bool:
        last = self.peer.last_heard
        return last is not None and now - last <= self._dead_time and not self.peer.left

    def peer_suspect(self, now: float) -> bool:
        """Quiet for longer than usual: probe rapidly to tell loss from death."""
        last = self.peer.last_heard
        return (last is not None and self._suspect_after < now - last <= self._dead_time
                and not self.peer.left)

    def available(self, i: int) -> bool:
        return not self.standby and self.carrier.get(self.cfg.vips[i].interface, False)

    def _available_mask(self) -> int:
        if self.standby:
            return 0
        return _mask(i for i, v in enumerate(self.cfg.vips) if self.carrier.get(v.interface, False))

    def _rank(self, node: str, i: int) -> tuple[bool, bool, bool, int, bool, int]:
        """Greater is better: DNS healthy, pinned, sticky, preference, holds it, name order."""
        if node == self.me:
            healthy, sticky, holds = self.dns_ok, i in self.sticky or (
                i in self.held and self.homes[i] == self.me and i not in self.away), i in self.held
        else:
            m = self.peer.msg
            assert m is not None
            # A peer still starting has no DNS result yet: not a failure.
            healthy, sticky, holds = m.dns_ok or not m.ready, _bit(m.sticky, i), _bit(m.held, i)
        pinned = self.admin.pins[i] == self.names.index(node) + 1
        # A pin (`dnspair move`) places a healthy VIP; it never keeps one where bind is dead.
        return (healthy, pinned, sticky, self.cfg.vips[i].prefers.get(node, 0), holds,
                -self.names.index(node))

    def owner(self, now: float, i: int) -> str | None:
        """Who should hold VIP i, as this node sees it."""
        cands = []
        # A node whose bind failed holds nothing, whatever the peer's state: it cannot answer,
        # and while it holds a VIP its announcements draw clients away from a healthy peer.
        if self.available(i) and self.dns_ok:
            cands.append(self.me)
        alive = self.peer_alive(now)
        if alive and self.peer.msg is not None and _bit(self.peer.msg.available, i):
            cands.append(self.peer_name)
        if not alive and i not in self.held and not self.witness_fresh():
            cands = [c for c in cands if c != self.me]
        if not cands:
            return None
        return max(cands, key=lambda n: self._rank(n, i))

    def decide(self, now: float) -> list[Action]:
        if not self.ready:
            if not self.dns_seen:
                return []
            if not self.peer_alive(now) and now - self.listening_from < self._start_listen():
                return []  # give the peer a chance to speak before claiming anything
            self.ready = True
            first: list[Action] = [Notify("READY=1"), Log("ready: first decision made")]
            return first + self.decide(now)
        # Most wakeups change nothing decide reads: then it would decide nothing again.
        inputs = self._decision_inputs(now)
        if inputs == self._quiet_inputs:
            return []
        send_before = self._send_now
        acts = self._decide(now)
        quiet = not acts and self._send_now == send_before
        self._quiet_inputs = _frozen(self._decision_inputs(now)) if quiet else None
        return acts

    def _heard_holding(self, now: float, i: int) -> bool:
        """The peer is still heard, though its heartbeats show it does not hear us (a link
        just back, a one-way cut), and says it holds VIP i with bind healthy: not ours to take."""
        return _bit(self._heard_held(now), i)

    def _heard_held(self, now: float, alive: bool | None = None) -> int:
        """The mask of VIPs `_heard_holding` is true for (`alive`: peer_alive(now), if known)."""
        t, m = self.peer.one_way_at, self.peer.one_way_msg
        if t is None or m is None or now - t > self._dead_time or not m.dns_ok:
            return 0
        if alive is None:
            alive = self.peer_alive(now)
        return 0 if alive else m.held

    def _decision_inputs(self, now: float) -> tuple[object, ...]:
        """Everything `_decide` reads, as of `now`."""
        alive = self.peer_alive(now)
        m = self.peer.msg if alive else None
        gs = self.peer.good_since
        # The sets as they are: `==` against decide()'s frozen copy compares their members.
        return (alive, not alive and now < self.listen_until, self.witness_fresh(), self.peer.left,
                self.peer_was_alive, gs is not None and now - gs >= self.cfg.hold_down,
                self.dns_ok, self.dns_stale, self.standby, tuple(self.carrier.values()),
                self.held, self.binding.keys(), self.sticky, self.away, self.yielding,
                self.contested, self.told_failed, self.admin,
                self._heard_held(now, alive),
                None if m is None else (m.held, m.yielding, m.sticky, m.available, m.dns_ok,
                                        m.ready, m.standby))

    def _decide(self, now: float) -> list[Action]:
        acts: list[Action] = []
        alive = self.peer_alive(now)
        m = self.peer.msg if alive else None
        if self.peer_was_alive and not alive:
            silent = now - (self.peer.last_heard or now)
            why = "said bye" if self.peer.left else f"silent for {silent:.2f} s"
            self._record("peer_lost", self.peer_name, now, why)
            acts.append(Log(f"peer {self.peer_name} lost ({why})", "warning"))
            acts.append(self._transition(now, "peer_lost", "peer_stopped" if self.peer.left
                                         else "peer_lost", f"{self.peer_name} {why}"))
            # It may have held and announced some of ours (a contest we did not see end).
            self.contested |= self.held
        self.peer_was_alive = alive
        if not alive:
            self.peer.good_since = None
        changed = False
        for i, vip in enumerate(self.cfg.vips):
            owner = self.owner(now, i)
            peer_holds = m is not None and _bit(m.held, i)
            # A peer whose bind failed (or that cannot hold it) will not hand over gracefully,
            # and cannot answer anyway: do not wait for its yield.
            peer_yields = m is not None and (_bit(m.yielding, i) or (m.ready and not m.dns_ok)
                                             or not _bit(m.available, i))
            if i in self.held and peer_holds:
                self.contested.add(i)   # both hold it: the client may point at either
            if (m is not None and i not in self.held and peer_holds and _bit(m.sticky, i)
                    and self.homes[i] == self.me and i not in self.away and m.admin == self.admin
                    and self.cfg.failback == "manual"):
                # The peer holds our VIP as a failover's (sticky): we failed, or were down when
                # it took over. Kept, so a restart of either node does not bring it back early.
                self.away.add(i)
                self._send_now = True
            if owner != self.me:
                self.want_since.pop(i, None)
                if owner == self.peer_name and i not in self.held and i in self.sticky:
                    # Kept from the last run, but the peer has the better claim now.
                    self.sticky.discard(i)
                    self._send_now = True
            elif i not in self.held:
                self.want_since.setdefault(i, now)
            if owner == self.me:
                if i in self.yielding:
                    self.yielding.discard(i)
                    changed = True
                peer_failed = m is not None and m.ready and not m.dns_ok
                listening = not alive and now < self.listen_until or self._heard_holding(now, i)
                if i not in self.held and (not peer_holds or peer_yields) and not listening:
                    if self.dns_ok and not self.dns_stale:   # else it may not be able to answer
                        acts += self._claim(now, i, alive)
                        changed = True
                elif i in self.binding:
                    pass   # announced once bind listens on it
                elif i in self.held and peer_holds and peer_failed and i not in self.told_failed:
                    # The peer cannot answer and may not let go (it may not hear us): point
                    # the clients here now.
                    self.told_failed.add(i)
                    acts += [Announce(i), Log(f"VIP {vip.address}: {self.peer_name} holds it too "
                                              "with DNS failed, announcing")]
                elif (i in self.held and i in self.contested and not peer_holds and self.dns_ok
                      and not self.dns_stale):
                    self.contested.discard(i)
                    acts += [Announce(i), Log(f"VIP {vip.address}: sole owner again, announcing")]
            elif i in self.held:
                # Hand over without a gap when we can still answer; otherwise let go at once.
                graceful = (owner == self.peer_name and self.dns_ok
                            and self.carrier.get(vip.interface, False))
                if graceful and not peer_holds:
                    if i not in self.yielding:
                        self.yielding.add(i)
                        self.yield_since[i] = now
                        changed = True
                        acts.append(Log(f"VIP {vip.address}: handing over to {owner}"))
                else:
                    code, why = (("dns_failed", "local DNS failed") if not self.dns_ok else
                                 ("handed_over", f"{owner} holds it now") if graceful else
                                 ("no_carrier", "carrier down") if not self.carrier.get(vip.interface) else
                                 ("standby", "standby") if self.standby else
                                 ("rank", f"{owner} should hold it") if owner else
                                 ("unowned", "no node can hold it"))
                    acts += [Release(i), Log(f"released VIP {vip.address} ({why})",
                                             "info" if graceful else "warning")]
                    self.held.discard(i)
                    self.binding.pop(i, None)
                    self.sticky.discard(i)
                    self.yielding.discard(i)
                    self.contested.discard(i)
                    self._released(now, i)
                    changed = True
                    if self.homes[i] == self.me and code in ("dns_failed", "no_carrier", "standby"):
                        at = now
                        f = self.failures.get(("dns_check", self.me))
                        if code == "dns_failed" and f is not None:
                            at = f.last
                        detail = self.dns_error if code == "dns_failed" else None
                        self.causes[i] = Cause(code, self.me, at, detail)
                    if code == "handed_over" and self.admin.pins[i]:
                        code = "moved"
                    since = self.yield_since.pop(i, None)
                    acts.append(self._transition(now, "vip_released", code, why, i, self.me, owner,
                                                 None if since is None else now - since))
            if i not in self.held:
                self.contested.discard(i)
                self.yield_since.pop(i, None)
            if not peer_holds:
                self.told_failed.discard(i)
            seen = (i in self.held, peer_holds)
            if seen != self.seen_holders[i]:
                self.seen_holders[i] = seen
                self.changed_at[i] = now
        acts += self._expire_sticky(now)
        if changed:
            self._send_now = True
        return acts

    def _released(self, now: float, i: int) -> None:
        self.released_at[i] = now
        self.release_epoch = (self.release_epoch + 1) & 0xFF

    def _claim(self, now: float, i: int, peer_alive: bool) -> list[Action]:
        vip = self.cfg.vips[i]
        self.held.add(i)
        m = self.peer.msg
        peer = self.peer_name
        # Why, as a code for machines and words for people; the cause is kept for `status`.
        if not peer_alive and self.peer.left:
            # An orderly stop is maintenance, not a failure: the VIP goes home on return.
            code, why = "peer_stopped", f"peer {peer} stopped"
        elif not peer_alive and self.peer.ever_heard:
            silent = now - (self.peer.last_heard or now)
            code, why = "peer_lost", f"peer {peer} is dead (silent for {silent:.2f} s)"
        elif not peer_alive or m is None:
            code, why = "peer_unheard", f"peer {peer} not heard since start"
        elif not m.dns_ok and m.ready:
            code, why = "peer_dns_failed", f"DNS failed on {peer}"
        elif m.standby:
            code, why = "peer_standby", f"{peer} is in standby"
        elif not _bit(m.available, i):
            code, why = "peer_no_carrier", f"{peer} cannot hold it (no carrier)"
        elif self.admin.pins[i]:
            code, why = "moved", "moved by operator"
        elif self.homes[i] == self.me:
            code, why = "preferred", "preferred here"
        else:
            code, why = "rank", "rank"
        old = peer if m is not None and _bit(m.held, i) or code in FAILOVER else None
        if self.homes[i] == self.me:
            if code in ("peer_dns_failed", "peer_no_carrier"):
                self.away.discard(i)   # the peer failed after we did: the newer failure counts
            if i not in self.away:
                self.causes.pop(i, None)
        else:
            if code in FAILOVER and (self.cfg.failback == "manual" or self.cfg.hold_down > 0):
                self.sticky.add(i)
            self.failovers += 1
            self.last_failover = now
            at = self.peer.last_heard if code == "peer_lost" and self.peer.last_heard is not None else now
            cause = {"peer_stopped": "stopped", "peer_lost": "peer_lost", "peer_unheard": "unheard",
                     "peer_dns_failed": "dns_failed", "peer_standby": "standby",
                     "peer_no_carrier": "no_carrier"}.get(code)
            if cause is not None:
                detail = why.split("(", 1)[1].rstrip(")") if code == "peer_lost" else None
                self.causes[i] = Cause(cause, peer, at, detail)
        since = self.want_since.pop(i, now)
        if code == "peer_lost" and self.peer.last_heard is not None:
            since = min(since, self.peer.last_heard)
        self.changed_at[i] = now
        if not self.binding:
            self.next_listen_check = now + LISTEN_POLL
        self.binding[i] = now
        return [Claim(i), CheckListening(i), Log(f"claimed VIP {vip.address} on {vip.interface} ({why})"),
                self._transition(now, "failover" if code in FAILOVER else "vip_claimed", code, why, i,
                                 old, self.me, now - since)]

    def _expire_sticky(self, now: float) -> list[Action]:
        if self.cfg.failback != "auto" or not self.sticky:
            return []
        gs = self.peer.good_since
        if not self.peer_alive(now) or gs is None or now - gs < self.cfg.hold_down:
            return []
        acts: list[Action] = []
        for i in sorted(self.sticky):
            if self.homes[i] == self.peer_name:
                self.sticky.discard(i)
                acts.append(Log(f"VIP {self.cfg.vips[i].address}: {self.peer_name} healthy for "
                                f"{self.cfg.hold_down:g} s, failing back"))
        if acts:
            self._send_now = True
            acts += self.decide(now)
        return acts

    # --- outputs --------------------------------------------------------------------------------

    def message(self, now: float, mtype: int = wire.HEARTBEAT) -> wire.Message:
        self.seq += 1
        self.sent_at[self.seq] = now
        horizon = now - max(SENT_MEMORY, 2 * (self.cfg.heartbeat.dead_time + self.cfg.heartbeat.interval))
        while True:   # oldest first (insertion order): keep what an ack may still name
            first = next(iter(self.sent_at))
            if self.sent_at[first] >= horizon or first == self.seq:
                break
            del self.sent_at[first]
        ack_seq, ack_delay = 0, 0
        if self.last_rx:
            ack_seq, ack_delay = self.last_rx[0], int((now - self.last_rx[1]) * 1e6)
        # A VIP whose bind does not listen yet is not shown held: the old holder keeps it.
        shown = self.held.difference(self.binding)
        home_held = [i for i in shown if self.homes[i] == self.me and i not in self.away]
        dead_time = self.cfg.heartbeat.dead_time
        return wire.Message(
            cluster=self.cfg.cluster, sender=self.me, incarnation=self.incarnation, seq=self.seq,
            type=mtype, echo=self.live.target, ack_seq=ack_seq, ack_delay_us=ack_delay,
            dns_ok=self.dns_ok, standby=self.standby, witness_ok=self.witness_ok, ready=self.ready,
            maintenance=self.maintenance,
            consecutive_failures=self.consecutive, total_failures=self.total_failures,
            dns_latency_us=int((self.dns_latency or 0) * 1e6), nvips=self.n,
            held=_mask(shown), yielding=_mask(self.yielding),
            sticky=_mask(self.sticky.difference(self.binding)) | _mask(home_held),
            available=self._available_mask(),
            links_mask=_mask(k for k, t in self.peer.links_heard.items() if now - t <= dead_time),
            digest=self.digest8, admin=self.admin,
            released=_mask(i for i, t in self.released_at.items() if now - t <= RELEASE_ECHO),
            release_epoch=self.release_epoch,
        )

    def _send(self, now: float, mtype: int) -> Send:
        """The core encodes and signs what it sends: the key lives here and nowhere else."""
        return Send(self.codec.encode(self.message(now, mtype)), wire.TYPES[mtype])

    def _hand_over_first(self, now: float) -> bool:
        """An orderly stop with VIPs held and a live peer whose bind is healthy: behave as a
        standby until the peer has taken them (STOP_HANDOVER at most), then stop."""
        m = self.peer.msg
        held = _mask(self.held)
        if (not self.started_up or not held or self.standby or not self.peer_alive(now)
                or m is None or not (m.dns_ok and m.ready) or m.available & held != held):
            return False   # the peer could not take them all: let go at once, as before
        self.stop_sticky = frozenset(self.sticky)   # as the stop below would keep it
        self.standby = True   # only ever from active: a node in standby stops at once
        self.leave_by = now + STOP_HANDOVER
        self._send_now = True
        return True

    def _on_stop(self, now: float) -> list[Action]:
        """Orderly stop: release everything and say bye so the peer takes over at once."""
        acts: list[Action] = [Notify("STOPPING=1")]
        acts += [Release(i) for i in sorted(self.held)]
        acts += [Log(f"released VIP {self.cfg.vips[i].address} (stopping)") for i in sorted(self.held)]
        # A stop is maintenance: what we hold as a failover's comes back to us on return.
        if self.stop_sticky is None:
            self.stop_sticky = frozenset(self.sticky)
        if self.leave_by is not None:
            self.standby = False   # the hand-over's, set from active (_hand_over_first)
            self.leave_by = None
        held = sorted(self.held)
        self.held.clear()
        self.binding.clear()
        for i in held:
            self.changed_at[i] = now
            acts.append(self._transition(now, "vip_released", "stopping", "daemon stopping", i,
                                         self.me, self.peer_name if self.peer_alive(now) else None))
        self.sticky.clear()
        self.yielding.clear()
        self.stopping = True
        self.byes_left = BYE_REPEATS
        self.next_bye = now
        return acts + self._bye(now)

    def _bye(self, now: float) -> list[Action]:
        if not self.byes_left or now < self.next_bye:
            return []
        self.byes_left -= 1
        self.next_bye = now + BYE_SPACING
        acts: list[Action] = [self._send(now, wire.BYE)]
        if not self.byes_left:
            acts += [Log("stopped"), Stopped()]
        return acts

    def _record(self, what: str, node: str, now: float, why: str, key: str | None = None) -> None:
        """`key` keeps failures of one kind apart (one entry per zone)."""
        k = (key or what, node)
        f = self.failures.get(k)
        if f is None:
            self.failures[k] = Failure(what, node, now, now, 1, why)
        else:
            self.failures[k] = replace(f, last=now, count=f.count + 1, why=why)


def _frozen(inputs: tuple[object, ...]) -> tuple[object, ...]:
    """A copy of decision inputs that later changes to the engine's sets do not reach."""
    return tuple(frozenset(x) if isinstance(x, (set, KeysView)) else x for x in inputs)


def _advance(when: float, every: float, now: float) -> float:
    """The next slot of a cadence after `now`; skip the slots missed in a stall."""
    nxt = when + every
    return nxt if nxt > now else now + every
