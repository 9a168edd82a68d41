"""A deliberately simple engine with the real interface, to test the simulator itself.

Each node holds its home VIP, takes the other once the peer is silent for the dead time, and
gives it back (without re-announcing) when the peer speaks again. `forget` makes it never take
over: a known defect the checkers and the shrinker must find.
"""
from __future__ import annotations

from dnspair.core.actions import Announce, CheckDns, Claim, Release, Send, Step, Stopped
from dnspair.core.events import Datagram, DnsResult, Start, Stop


class Toy:
    forget = False

    def __init__(self, cfg, me, key, incarnation, now):
        self.cfg, self.me = cfg, me
        self.homes = [v.home(cfg.node_names) for v in cfg.vips]
        self.held: set[int] = set()
        self.heard = None
        self.next_hb = now
        self.next_dns = now
        self.dns_ok = True
        self.stopping = False

    def handle(self, now, ev) -> Step:
        acts = []
        if isinstance(ev, Start):
            self.held = set(ev.held)
        elif isinstance(ev, Datagram) and ev.data.startswith(b"toy:"):
            self.heard = now
        elif isinstance(ev, DnsResult):
            self.dns_ok = ev.ok
        elif isinstance(ev, Stop):
            acts += [Release(i) for i in sorted(self.held)] + [Stopped()]
            self.held.clear()
            return Step(acts, None)
        if now >= self.next_dns:
            acts.append(CheckDns())
            self.next_dns = now + self.cfg.dns_check.interval
        if now >= self.next_hb:
            acts.append(Send(b"toy:" + self.me.encode()))
            self.next_hb = now + self.cfg.heartbeat.interval
        alive = self.heard is not None and now - self.heard <= self.cfg.heartbeat.dead_time
        for i, home in enumerate(self.homes):
            took = not alive and not self.forget and self.heard is not None
            want = self.dns_ok and (home == self.me or took)
            if want and i not in self.held:
                self.held.add(i)
                acts += [Claim(i), Announce(i)]
            elif not want and i in self.held:
                self.held.discard(i)
                acts.append(Release(i))
        wake = min(self.next_hb, self.next_dns)
        if alive:
            wake = min(wake, self.heard + self.cfg.heartbeat.dead_time + 1e-6)
        return Step(acts, wake)


class Forgetful(Toy):
    forget = True
