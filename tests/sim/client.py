"""A DNS client on the LAN whose neighbour (ARP) cache follows Linux's rules, per VIP.

Linux (net/core/neighbour.c, net/ipv4/arp.c) with default sysctls:
* a gratuitous ARP updates an *existing* entry (any state, even INCOMPLETE or FAILED) to the
  announced MAC, state STALE (a broadcast does not prove reachability), even with
  arp_accept=0; it never creates one. The same MAC leaves the state as it is.
* no entry, or FAILED: a packet starts resolution by broadcast (mcast_solicit 3, 1 s apart);
  whoever has the address answers; the first answer makes it REACHABLE; meanwhile INCOMPLETE.
* REACHABLE lasts reachable_time (base 30 s, randomised 15-45 s), then STALE.
* a STALE entry that is used goes DELAY (delay_first_probe_time 5 s), then PROBE: unicast
  ARP to the cached MAC (ucast_solicit 3, 1 s apart), answered only by that node, if it is up,
  reachable and has the address; no answer: FAILED.
Packets go to the cached MAC in STALE, DELAY and PROBE.

An IPv6 VIP's entry is NDP's (net/ipv6/ndisc.c, the same neighbour.c state machine and the
same defaults: 3 multicast solicitations 1 s apart, REACHABLE 15-45 s, DELAY 5 s, 3 unicast
probes). What differs is the unsolicited Neighbour Advertisement (`na`):
* it never creates an entry (accept_untracked_na=0), like a gratuitous ARP;
* an entry still INCOMPLETE or FAILED takes its MAC, STALE, whatever its flags;
* a valid entry (REACHABLE, STALE, DELAY, PROBE) with another MAC takes the new one, STALE,
  only if the advertisement has the Override flag; without it a REACHABLE entry only goes
  STALE and keeps the old MAC, and any other is left alone: the client keeps asking the old
  owner until its probes fail (about 8 s). dnspair always sets Override.
Resolution answers (solicited, with Override) are as ARP's here: one of the holders wins.
"""
from __future__ import annotations

NONE, INCOMPLETE, REACHABLE, STALE, DELAY, PROBE, FAILED = (
    "none", "incomplete", "reachable", "stale", "delay", "probe", "failed")
RETRANS = 1.0
SOLICIT = 3
DELAY_FIRST_PROBE = 5.0
REACHABLE_MIN, REACHABLE_MAX = 15.0, 45.0


class Entry:
    __slots__ = ("state", "mac", "until", "tries", "token")

    def __init__(self):
        self.state = NONE
        self.mac = None        # node name
        self.until = 0.0       # REACHABLE until
        self.tries = 0
        self.token = 0         # bumps cancel the pending timer


class ArpCache:
    """`lan` provides: now, rng, at(t, prio, fn, *args), answers_arp(node, vip) -> bool,
    arp_responders(vip) -> [nodes]."""

    def __init__(self, lan, nvips: int):
        self.lan = lan
        self.entries = [Entry() for _ in range(nvips)]

    # --- what the client does ----------------------------------------------------------

    def target(self, vip: int) -> str | None:
        """The node a packet to `vip` goes to now (None: not resolved, packet waits or is lost).
        Using the entry drives its state machine like a real send does."""
        e = self.entries[vip]
        now = self.lan.now
        if e.state == REACHABLE and now >= e.until:
            e.state = STALE
        if e.state in (NONE, FAILED):
            self._resolve(vip, e)
        if e.state == INCOMPLETE:
            return None
        if e.state == STALE:
            e.state = DELAY
            e.token += 1
            self.lan.at(now + DELAY_FIRST_PROBE, 1, self._timer, vip, e.token)
        return e.mac

    def peek(self, vip: int) -> str | None:
        """The cached MAC's node, without using the entry."""
        e = self.entries[vip]
        return e.mac if e.state in (REACHABLE, STALE, DELAY, PROBE) else None

    def garp(self, node: str, vip: int) -> None:
        e = self.entries[vip]
        if e.state == NONE or (e.mac == node and e.state in (REACHABLE, STALE, DELAY, PROBE)):
            return
        e.mac = node
        e.state = STALE
        e.token += 1   # a pending resolution or probe timer is void

    def na(self, node: str, vip: int, override: bool = True) -> None:
        """An unsolicited Neighbour Advertisement for an IPv6 VIP (see the module's notes)."""
        e = self.entries[vip]
        valid = e.state in (REACHABLE, STALE, DELAY, PROBE)
        if override or not valid:
            self.garp(node, vip)
        elif e.mac != node and e.state == REACHABLE:
            e.state = STALE

    # --- internals ------------------------------------------------------------------------

    def _confirm(self, e: Entry, node: str) -> None:
        e.mac = node
        e.state = REACHABLE
        e.until = self.lan.now + self.lan.rng.uniform(REACHABLE_MIN, REACHABLE_MAX)
        e.token += 1

    def _resolve(self, vip: int, e: Entry) -> None:
        e.state = INCOMPLETE
        e.mac = None
        e.tries = 0
        e.token += 1
        self._solicit_broadcast(vip, e)

    def _solicit_broadcast(self, vip: int, e: Entry) -> None:
        e.tries += 1
        who = self.lan.arp_responders(vip)
        if who:
            # Several answers: Linux keeps the first (the rest fall in the locktime).
            self._confirm(e, who[0] if len(who) == 1 else self.lan.rng.choice(who))
        else:
            self.lan.at(self.lan.now + RETRANS, 1, self._timer, vip, e.token)

    def _timer(self, vip: int, token: int) -> None:
        e = self.entries[vip]
        if token != e.token:
            return
        if e.state == INCOMPLETE:
            if e.tries >= SOLICIT:
                e.state = FAILED
            else:
                self._solicit_broadcast(vip, e)
        elif e.state == DELAY:
            e.state = PROBE
            e.tries = 0
            self._probe(vip, e)
        elif e.state == PROBE:
            if e.tries >= SOLICIT:
                e.state = FAILED
            else:
                self._probe(vip, e)

    def _probe(self, vip: int, e: Entry) -> None:
        e.tries += 1
        if self.lan.answers_arp(e.mac, vip):
            self._confirm(e, e.mac)
        else:
            self.lan.at(self.lan.now + RETRANS, 1, self._timer, vip, e.token)
