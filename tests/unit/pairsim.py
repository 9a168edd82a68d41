"""Two engines wired by a simulated network and clock: the shell without I/O."""
from __future__ import annotations

from dnspair.core import config, engine, wire

EXAMPLE = open(__file__.rsplit("/tests/", 1)[0] + "/example/dnspair.yaml").read()
KEY = bytes(range(32))


class Pair:
    def __init__(self, text: str = EXAMPLE, **overrides):
        self.cfg = config.parse(text)
        a, b = self.cfg.node_names
        self.now = 0.0
        self.e = {a: engine.Engine(self.cfg, a, KEY, 1, 0.0), b: engine.Engine(self.cfg, b, KEY, 1, 0.0)}
        self.up = {a: True, b: True}          # daemon running
        self.link = {a: True, b: True}        # can send/receive heartbeats
        self.dns = {a: True, b: True}
        self.logs: list[str] = []
        self.addresses = {a: set(), b: set()}  # what the "kernel" holds
        self.announced: list[tuple[str, int]] = []
        self.double: list[tuple[float, int]] = []
        self.pending: list = []
        self.busy = False
        for n in self.e:
            self._apply(n, self.e[n].adopt(0.0, set()))

    @property
    def names(self):
        return self.cfg.node_names

    def _apply(self, node, acts):
        """Actions run in order, like the daemon's single worker: a reply's actions queue behind."""
        self.pending.extend((node, a) for a in acts)
        if self.busy:
            return
        self.busy = True
        try:
            while self.pending:
                self._do(*self.pending.pop(0))
        finally:
            self.busy = False

    def _do(self, node, a):
        if True:
            if isinstance(a, engine.Claim):
                self.addresses[node].add(a.vip)
            elif isinstance(a, engine.Release):
                self.addresses[node].discard(a.vip)
            elif isinstance(a, engine.Announce):
                self.announced.append((node, a.vip))
            elif isinstance(a, engine.Log):
                self.logs.append(f"{self.now:.3f} {node}: {a.text}")
            elif isinstance(a, engine.SendNow):
                self.send(node)

    def send(self, node, mtype=wire.HEARTBEAT):
        if not self.up[node]:
            return
        msg = self.e[node].message(self.now, mtype)
        data = wire.encode(msg, KEY)
        other = next(n for n in self.e if n != node)
        if self.link[node] and self.link[other] and self.up[other]:
            self._apply(other, self.e[other].on_datagram(self.now, 0, data))

    def step(self, dt: float = 0.01):
        """Advance time: periodic heartbeats, DNS checks, ticks."""
        t0, self.now = self.now, self.now + dt
        hb, dc = self.cfg.heartbeat.interval, self.cfg.dns_check.interval
        for n, e in self.e.items():
            if not self.up[n]:
                continue
            if int(self.now / dc) != int(t0 / dc) or t0 == 0:
                self._apply(n, e.on_dns(self.now, self.dns[n], 0.001, None if self.dns[n] else "refused"))
            if int(self.now / hb) != int(t0 / hb):
                self.send(n)
            self._apply(n, e.tick(self.now))
        self.check_single_owner()

    def run(self, seconds: float, dt: float = 0.01):
        for _ in range(int(round(seconds / dt))):
            self.step(dt)

    def check_single_owner(self):
        a, b = self.names
        if self.link[a] and self.link[b] and self.up[a] and self.up[b]:
            for i in self.addresses[a] & self.addresses[b]:
                # both hold only during a handover, never both claiming
                if not (i in self.e[a].yielding or i in self.e[b].yielding):
                    self.double.append((self.now, i))

    def holders(self):
        """VIP index -> sorted nodes holding it."""
        return {i: sorted(n for n in self.names if self.up[n] and i in self.addresses[n])
                for i in range(len(self.cfg.vips))}

    def cmd(self, node, *args):
        self._apply(node, self.e[node].command(self.now, *args))

    def kill(self, node):
        self.up[node] = False

    def stop(self, node):
        acts, bye = self.e[node].leave(self.now)
        self._apply(node, acts)
        other = next(n for n in self.e if n != node)
        if self.link[node] and self.link[other]:
            self._apply(other, self.e[other].on_datagram(self.now, 0, wire.encode(bye, KEY)))
        self.up[node] = False

    def restart(self, node, incarnation):
        self.up[node] = True
        self.e[node] = engine.Engine(self.cfg, node, KEY, incarnation, self.now)
        self._apply(node, self.e[node].adopt(self.now, set(self.addresses[node])))
