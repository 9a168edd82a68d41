"""Two engines wired by a lossless, zero-delay network and a stepped clock.

The small harness for hand-written engine scenarios; the seeded fault search is `tests/sim`.
"""
from __future__ import annotations

from dnspair.core import actions as A
from dnspair.core import config, engine, wire
from dnspair.core import events as E

EXAMPLE = open(__file__.rsplit("/tests/", 1)[0] + "/example/dnspair.yaml").read()
KEY = bytes(range(32))


class Pair:
    def __init__(self, text: str = EXAMPLE):
        self.cfg = config.parse(text)
        a, b = self.cfg.node_names
        self.now = 0.0
        self.e: dict[str, engine.Engine] = {}
        self.wake: dict[str, float | None] = {a: None, b: None}
        self.up = {a: True, b: True}          # daemon running
        self.link = {a: True, b: True}        # can send/receive heartbeats
        self.dns: dict[str, bool | str] = {a: True, b: True}   # True, False (stopped) or "hung"
        self.logs: list[str] = []
        self.addresses: dict[str, set[int]] = {a: set(), b: set()}  # what the "kernel" holds
        # bind has its socket on each address it holds (False: it never opens one)
        self.listens: dict[str, bool] = {a: True, b: True}
        self.announced: list[tuple[str, int]] = []
        self.acted: list[tuple[str, A.Action]] = []   # claims, releases, announces, in order
        self.sent: list[tuple[float, str, bytes]] = []
        self.replies: list[A.Reply] = []
        self.asked: list[tuple[float, str]] = []   # witness pings asked for; answered by witness()
        self.double: list[tuple[float, int]] = []
        self.pending: list[tuple[str, E.Event]] = []
        self.busy = False
        for k, n in enumerate((a, b)):
            self._boot(n, wire.incarnation(1, k + 1))

    @property
    def names(self):
        return self.cfg.node_names

    def other(self, node):
        return next(n for n in self.names if n != node)

    def _boot(self, node, incarnation):
        self.up[node] = True
        self.e[node] = engine.Engine(self.cfg, node, KEY, incarnation, self.now)
        self.deliver(node, E.Start(frozenset(self.addresses[node])))

    def deliver(self, node, ev: E.Event):
        """Events run in order, like the daemon's loop: an event's consequences queue behind."""
        self.pending.append((node, ev))
        if self.busy:
            return
        self.busy = True
        try:
            while self.pending:
                n, ev = self.pending.pop(0)
                if not self.up[n] or n not in self.e:
                    continue
                st = self.e[n].handle(self.now, ev)
                self.wake[n] = st.wake_at
                for a in st.actions:
                    self._do(n, a)
        finally:
            self.busy = False

    def _do(self, node, a):
        if isinstance(a, (A.Claim, A.Release, A.Announce)):
            self.acted.append((node, a))
        match a:
            case A.Claim(i):
                self.addresses[node].add(i)
            case A.CheckListening(i):
                self.deliver(node, E.Listening(i, self.listens[node] and i in self.addresses[node]))
            case A.Release(i):
                self.addresses[node].discard(i)
            case A.Announce(i):
                self.announced.append((node, i))
            case A.Log(text):
                self.logs.append(f"{self.now:.3f} {node}: {text}")
            case A.Send(data):
                self.sent.append((self.now, node, data))
                other = self.other(node)
                if self.link[node] and self.link[other]:
                    self.deliver(other, E.Datagram(0, data))
            case A.CheckDns():
                ok = self.dns[node]
                if ok != "hung":     # a hung bind never answers: the engine's timeout judges
                    self.deliver(node, E.DnsResult(ok, 0.001, None if ok else "refused"))
            case A.Reply():
                self.replies.append(a)
            case A.CheckWitness():
                self.asked.append((self.now, node))
            case A.Stopped():
                self.up[node] = False   # the process exits

    def step(self, dt: float = 0.01):
        """Advance time by dt, waking each node at the deadlines it asked for."""
        end = self.now + dt
        for _ in range(100_000):
            due = [(w, n) for n, w in self.wake.items() if self.up[n] and w is not None and w <= end]
            if not due:
                break
            w, n = min(due)
            self.now = max(self.now, w)
            self.deliver(n, E.Tick())
        self.now = end
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
        """An operator command; ValueError with the engine's reply if it was refused."""
        cmd, vip, who = (list(args) + [None, None])[:3]
        self.deliver(node, E.Command(cmd, vip, who))
        reply = self.replies[-1]
        if not reply.ok:
            raise ValueError(reply.text)

    def carrier(self, node, up, interface="eth0"):
        self.deliver(node, E.Carrier(interface, up))

    def witness(self, node, ok):
        self.deliver(node, E.WitnessResult(ok))

    def kill(self, node):
        self.up[node] = False

    def freeze(self, node):
        self.up[node] = False

    def thaw(self, node):
        self.up[node] = True
        self.deliver(node, E.Resumed())

    def stop(self, node):
        """SIGTERM: the daemon runs on until it says Stopped (a hand-over may come first)."""
        self.deliver(node, E.Stop())

    def restart(self, node, incarnation):
        self._boot(node, incarnation)
