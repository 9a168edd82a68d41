"""The supervisor: one asyncio loop wiring the shell adapters to the decision engine."""
from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import time

from .core import status as status_model
from .core import wire
from .core.config import Config
from .core.engine import Announce, Claim, Engine, Log, Release, SendNow
from .shell import control, dnsprobe, leds, netlink, systemd
from .shell import http as status_http
from .shell.arp import Announcer
from .shell.heartbeat import Heartbeats

log = logging.getLogger("dnspair")
LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class Daemon:
    def __init__(self, cfg: Config, me: str, key: bytes):
        self.cfg = cfg
        self.me = me
        self.engine = Engine(cfg, me, key, incarnation=time.time_ns(), now=time.monotonic())
        self.key = key
        self.nl = netlink.Netlink()
        self.announcer = Announcer(cfg.arp.count, cfg.arp.spacing)
        self.hb = Heartbeats(cfg.nodes[me].addresses, cfg.nodes[cfg.peer_of(me)].addresses,
                             cfg.heartbeat.port, self._on_datagram)
        self.queue: asyncio.Queue = asyncio.Queue()
        self.stopping = asyncio.Event()
        self.prober = dnsprobe.Prober(cfg.dns_check, self._on_dns)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._ticks = 0
        self._probing = False
        self.witness_kick = asyncio.Event()
        self.ready_sent = False
        self.control_rejected = 0
        self._reject_kinds_logged: set[str] = set()
        self.listeners = []      # called with the status dict after every change (LEDs)
        self._status_line = ""

    # --- engine glue ---------------------------------------------------------------------

    def feed(self, acts: list) -> None:
        """Logs at once; network actions in order through one worker; timers re-armed."""
        for a in acts:
            if isinstance(a, Log):
                log.log(LEVELS.get(a.level, logging.INFO), a.text)
            else:
                self.queue.put_nowait(a)
        if self._timers:
            self._rearm()

    async def _actuator(self) -> None:
        while True:
            a = await self.queue.get()
            batch = [a]
            while not self.queue.empty():
                batch.append(self.queue.get_nowait())
            send = False
            for a in batch:
                vip = self.cfg.vips[a.vip] if hasattr(a, "vip") else None
                try:
                    if isinstance(a, Claim):
                        await self.nl.add(vip.interface, vip.ip, vip.prefixlen)
                    elif isinstance(a, Release):
                        self.announcer.cancel(vip.ip)
                        await self.nl.remove(vip.interface, vip.ip, vip.prefixlen)
                    elif isinstance(a, Announce):
                        self.announcer.announce(vip.interface, vip.ip)
                    elif isinstance(a, SendNow):
                        send = True
                except Exception as e:  # noqa: BLE001 - a failed netlink call must not stop the loop
                    log.error("%s %s failed: %s", type(a).__name__.lower(), vip.address if vip else "", e)
                    if isinstance(a, Claim):
                        self.feed(self.engine.on_claim_failed(time.monotonic(), a.vip, str(e)))
            if send:
                if any(isinstance(a, Announce) for a in batch):
                    # Let the ARP burst's first frames out before the heartbeat that says we
                    # hold the VIP: the old holder drops it on that heartbeat, and the client
                    # must already be pointed here, or a query in the gap is lost.
                    await asyncio.sleep(0)
                self.send()
            self._after_change()

    def send(self, mtype: int = wire.HEARTBEAT) -> None:
        msg = self.engine.message(time.monotonic(), mtype)
        self.hb.send(wire.encode(msg, self.key))

    def _on_datagram(self, link: int, data: bytes, src: str) -> None:
        self.feed(self.engine.on_datagram(time.monotonic(), link, data, src))
        if self._probing and not self.engine.peer_suspect(time.monotonic()):
            self._probing = False

    def _after_change(self) -> None:
        e = self.engine
        if e.ready and not self.ready_sent:
            self.ready_sent = True
            systemd.notify("READY=1")
            log.info("ready: first decision applied")
        held = ", ".join(self.cfg.vips[i].ip for i in sorted(e.held)) or "no VIP"
        now = time.monotonic()
        line = (f"holding {held}; peer {e.peer_name} "
                f"{'online' if e.peer_alive(now) else 'offline'}; DNS {'ok' if e.dns_ok else 'FAILED'}"
                + ("; standby" if e.standby else ""))
        if line != self._status_line:
            self._status_line = line
            systemd.notify(f"STATUS={line}")
            if self.listeners:
                st = self.status()
                for fn in self.listeners:
                    try:
                        fn(st)
                    except Exception as ex:  # noqa: BLE001 - a surface must never stop failover
                        log.warning("status listener failed: %s", ex)

    def status(self) -> dict:
        st = status_model.build(self.engine, time.monotonic(), time.time(), os.getpid())
        st["control_rejected"] = self.control_rejected
        return st

    # --- control socket ----------------------------------------------------------------------

    def _reject(self, why: str) -> None:
        """Count every rejected request; log the first of each kind only. The kind is the
        reason without its detail ("malformed request: Expecting value: line 1 ..." ->
        "malformed request", "unknown command 'x'" -> "unknown command"): details vary with
        the input, so keying on them would log junk once per request."""
        self.control_rejected += 1
        kind = re.split(r":|\s['\"]", why, maxsplit=1)[0].strip()
        if kind not in self._reject_kinds_logged:
            self._reject_kinds_logged.add(kind)
            log.warning("control socket: rejected a request (%s; further %s are counted in "
                        "status, not logged)", why, kind)

    def handle(self, req: dict) -> dict:
        cmd = req.get("cmd")
        now = time.monotonic()
        try:
            if cmd == "status":
                return {"ok": True, "status": self.status()}
            if cmd in ("standby", "unstandby", "cleanup", "move"):
                vip, node = req.get("vip"), req.get("node")
                if vip is not None and not isinstance(vip, str) or node is not None and not isinstance(node, str):
                    raise ValueError("vip and node must be strings")
                if cmd == "move" and (vip is None or node is None):
                    raise ValueError("move needs a VIP and a node")
                acts = self.engine.command(now, cmd, vip, node)
                self.feed(acts)
                return {"ok": True, "message": "; ".join(a.text for a in acts if isinstance(a, Log)) or "done"}
            raise ValueError(f"unknown command {cmd!r}")
        except ValueError as e:
            if cmd not in ("standby", "unstandby", "cleanup", "move", "status"):
                self._reject(f"unknown command {cmd!r}")
            return {"ok": False, "error": str(e)}

    # --- loops --------------------------------------------------------------------------------

    # Everything periodic hangs off timers, not loops: at rest a Pi should wake only to send
    # a heartbeat (with the DNS check riding along), to read the peer's, and to read bind's
    # answer.

    def _arm(self, name: str, when: float | None, fn) -> None:
        old = self._timers.pop(name, None)
        if old is not None:
            old.cancel()
        if when is not None:
            self._timers[name] = self.loop.call_at(when, fn)

    def _rearm(self) -> None:
        """After any input: wake for the next deadline and for suspicion of the peer."""
        now = time.monotonic()
        e = self.engine
        self._arm("deadline", e.next_wakeup(now), self._on_deadline)
        if e.peer_alive(now) and not e.peer_suspect(now):
            self._arm("suspect", e.peer.last_heard + self.cfg.heartbeat.suspect_after + 1e-4,
                      self._on_suspect)

    def _on_deadline(self) -> None:
        self.hb.drain()  # the peer's heartbeats may be waiting unread: hear them first
        self.feed(self.engine.tick(time.monotonic()))

    def _on_tick(self) -> None:
        hb = self.cfg.heartbeat
        now = time.monotonic()
        if self._ticks and now - self._next_tick > hb.dead_time:
            # Frozen (SIGSTOP) or starved for longer than the dead time: what we know of
            # the peer is stale, whatever the timers say.
            self.hb.drain()
            self.feed(self.engine.resync(now, f"stalled for {now - self._next_tick:.2f} s"))
            self._next_tick = now
        self._ticks += 1
        if self._ticks % self._dns_every == 0:
            self.prober.start()  # first: bind answers while we send, so no extra sleep
        if not self.engine.peer_suspect(time.monotonic()):
            self.send()
        # By the clock, not by tick count: a starved loop ticks less often than it should, and
        # the watchdog is for a hung loop, not a slow one (a count let systemd kill a busy node).
        if self._watchdog_interval and now - self._watchdog_sent >= self._watchdog_interval:
            systemd.notify("WATCHDOG=1")
            self._watchdog_sent = now
        self._next_tick += hb.interval
        self._arm("tick", max(self._next_tick, time.monotonic()), self._on_tick)

    def _on_suspect(self) -> None:
        """The peer is quieter than usual: probe fast to tell loss from death."""
        now = time.monotonic()
        if not self.engine.peer_suspect(now):
            return
        if "suspect" in self._timers and not self._probing:
            self.witness_kick.set()  # ask the witness now, not at its next interval
        self._probing = True
        self.send(wire.PROBE)
        self._arm("suspect", now + self.cfg.heartbeat.probe_interval, self._on_suspect)

    def _on_dns(self, r) -> None:
        self.hb.drain()  # a timeout may fire first after a stall: hear the peer before deciding
        self.feed(self.engine.on_dns(time.monotonic(), r.ok, r.latency, r.error))

    async def _witness_loop(self) -> None:
        from .shell import witness
        w = self.cfg.witness
        while True:
            self.witness_kick.clear()
            ok = await witness.reachable(w.address, w.timeout)
            self.feed(self.engine.on_witness(time.monotonic(), ok))
            try:
                await asyncio.wait_for(self.witness_kick.wait(), w.interval)
            except asyncio.TimeoutError:
                pass

    async def _carrier(self) -> None:
        ifnames = {v.interface for v in self.cfg.vips}

        def changed(name, up):
            self.feed(self.engine.on_carrier(time.monotonic(), name, up))
        for name in ifnames:
            changed(name, await self.nl.carrier(name))
        await netlink.watch_carrier(ifnames, changed)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        await self.nl.open()
        held = set()
        for i, v in enumerate(self.cfg.vips):
            if v.ip in await self.nl.addresses(v.interface):
                held.add(i)
        await self.hb.open()
        server = await control.serve(self.cfg.control.socket, self.cfg.control.group, self.handle,
                                     self._reject)
        web = self.cfg.status_http and await status_http.serve(self.cfg.status_http.host,
                                                                self.cfg.status_http.port, self.status)
        panel = leds.Panel(self.cfg.leds, lambda c: self.handle({"cmd": c}), loop.call_soon_threadsafe)
        if self.cfg.leds.enabled and panel.open():
            self.listeners.append(panel.update)
            loop.call_later(1.0, panel.end_lamp_test)
        self.loop = loop
        await self.prober.open()
        tasks = [loop.create_task(c) for c in (self._actuator(), self._carrier())]
        if self.cfg.witness:
            tasks.append(loop.create_task(self._witness_loop()))
        wd = systemd.watchdog_interval()
        hb = self.cfg.heartbeat
        self._dns_every = max(1, round(self.cfg.dns_check.interval / hb.interval))
        self._watchdog_interval, self._watchdog_sent = wd, float("-inf")
        self._next_tick = time.monotonic()
        self._on_tick()
        self.feed(self.engine.adopt(time.monotonic(), held))
        log.info("started as %s in cluster %s (%d VIPs, %d link(s))", self.me, self.cfg.cluster, len(self.cfg.vips), len(self.cfg.nodes[self.me].addresses))
        stop = loop.create_task(self.stopping.wait())
        done, _ = await asyncio.wait(tasks + [stop], return_when=asyncio.FIRST_COMPLETED)
        rc = 0
        for t in done:
            if t is not stop:
                log.error("internal error, stopping: %s ended: %r", t.get_coro().__name__, t.exception())
                rc = 1
        systemd.notify("STOPPING=1")
        for name in list(self._timers):
            self._arm(name, None, None)
        self.prober.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._leave()
        server.close()
        if web:
            web.close()
        panel.close()
        try:
            os.unlink(self.cfg.control.socket)
        except OSError:
            pass
        self.announcer.close()
        self.hb.close()
        await self.nl.close()
        return rc

    async def _leave(self) -> None:
        """Release every VIP, then say bye on every link so the peer takes over at once."""
        acts, bye = self.engine.leave(time.monotonic())
        for a in acts:
            if isinstance(a, Release):
                v = self.cfg.vips[a.vip]
                try:
                    await self.nl.remove(v.interface, v.ip, v.prefixlen)
                except Exception as e:  # noqa: BLE001
                    log.error("could not release %s: %s", v.address, e)
            elif isinstance(a, Log):
                log.info(a.text)
        self.hb.send(wire.encode(bye, self.key))
        for _ in range(2):  # a lost bye only costs the dead time; repeats carry new seqs
            await asyncio.sleep(0.002)
            self.send(wire.BYE)
        log.info("stopped")
