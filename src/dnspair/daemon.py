"""The supervisor: one asyncio loop that carries out what the engine decides.

I/O only. Every input becomes a typed event for `Engine.handle`; the step it returns says
what to do and when to wake next, and this loop arms exactly that one timer. No timing rule
lives here: cadences, dead times, stall detection and bye repeats are the engine's.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import time
from typing import Any

from .core import actions as A
from .core import events as E
from .core import requests
from .core import status as status_model
from .core.config import Config
from .core.engine import Engine
from .shell import control, dnsprobe, leds, listening, netlink, notify, state, systemd
from .shell import http as status_http
from .shell.arp import Announcer
from .shell.heartbeat import Heartbeats

log = logging.getLogger("dnspair")
LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
NETWORK = (A.Claim, A.CheckListening, A.Release, A.Announce, A.Send)
RECENT = 5   # transitions `dnspair status` shows


class Daemon:
    def __init__(self, cfg: Config, me: str, key: bytes, config_path: str | None = None):
        self.cfg = cfg
        self.config_path = config_path
        self.me = me
        saved, history = state.load(cfg.state_dir, me, cfg)
        self.saved = saved
        self.keeper = state.Keeper(cfg.state_dir, me, cfg, saved, history)
        self.notifier = notify.Notifier(cfg.notify, cfg.notify_timeout, cfg.notify_queue)
        self.engine = Engine(cfg, me, key, incarnation=state.next_incarnation(cfg.state_dir, me),
                             now=time.monotonic(), watchdog=systemd.watchdog_interval())
        self.nl = netlink.Netlink()
        self.announcer = Announcer(cfg.arp.count, cfg.arp.spacing)
        self.hb = Heartbeats(cfg.nodes[me].addresses, cfg.nodes[cfg.peer_of(me)].addresses,
                             cfg.heartbeat.port, self._on_datagram)
        self.queue: asyncio.Queue[A.Action] = asyncio.Queue()
        self.acting = False            # the actuator is carrying out a batch (it may be waiting)
        self.bind_listens = listening.bound   # (ip, port) -> bool: bind has its socket there
        self.stopping = asyncio.Event()
        self.stopped = asyncio.Event()
        self.prober = dnsprobe.Prober(cfg.dns_check, self._on_dns)
        self._timer: asyncio.TimerHandle | None = None
        self._witness_busy = False
        self._zones: Any = None   # shell/zonecheck.Checker, made on the first CheckZones
        self._zones_busy = False
        self.control_rejected = 0
        self._reject_kinds_logged: set[str] = set()
        self.listeners: list = []      # called with the status dict after every change (LEDs)
        self._tasks: set[asyncio.Task] = set()

    # --- events in, actions out ------------------------------------------------------------

    def step(self, ev: E.Event) -> list[A.Action]:
        st = self.engine.handle(time.monotonic(), ev)
        self._arm(st.wake_at)
        changed = False
        # Behind a batch still under way (an address being added, the ARP burst it announces):
        # the heartbeat that says we hold a VIP goes after them, in the order the engine gave.
        queued = self.acting or not self.queue.empty()
        for a in st.actions:
            match a:
                case A.Log(text, level):
                    log.log(LEVELS.get(level, logging.INFO), text)
                case A.Notify(text):
                    systemd.notify(text)
                    changed = changed or text.startswith("STATUS=")
                case A.CheckDns(forget):
                    self.prober.start(forget)
                case A.CheckWitness():
                    self._check_witness()
                case A.CheckZones():
                    self._check_zones()
                case A.Stopped():
                    self.stopped.set()
                case A.Save(saved):
                    self.keeper.save(saved)
                case A.Transition():
                    item = state.entry(a, self.me, time.time() - (time.monotonic() - a.at))
                    self.keeper.add(item)
                    self.notifier.put(notify.environment(item, self.cfg.cluster, self.engine.peer_name))
                case A.Send(data) if not queued:
                    self.hb.send(data)   # nothing to wait for: no extra task switch at rest
                case A.Claim() | A.CheckListening() | A.Release() | A.Announce() | A.Send():
                    self.queue.put_nowait(a)
                    queued = True
        if changed and self.listeners:
            st_doc = self.status()
            for fn in self.listeners:
                try:
                    fn(st_doc)
                except Exception as ex:  # noqa: BLE001 - a surface must never stop failover
                    log.warning("status listener failed: %s", ex)
        return st.actions

    def _arm(self, when: float | None) -> None:
        if self._timer is not None:
            if when == self._timer.when():
                return   # most events leave the deadline as it was: no new timer to make
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.hb.drain()  # the peer's heartbeats may be waiting unread: hear them first
        self.step(E.Tick())

    async def _actuator(self) -> None:
        """Network actions in order, one at a time: an address is on the interface before it
        is announced, and announced before the heartbeat that says we hold it."""
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty():
                batch.append(self.queue.get_nowait())
            self.acting = True
            try:
                announced = False
                for a in batch:
                    try:
                        match a:
                            case A.Claim(i):
                                v = self.cfg.vips[i]
                                await self.nl.add(v.interface, v.ip, v.prefixlen)
                            case A.CheckListening(i):
                                # After the add before it: the engine announces the VIP once
                                # bind has its socket there (core/engine.py, LISTEN_POLL).
                                v = self.cfg.vips[i]
                                self.step(E.Listening(i, self.bind_listens(v.ip, self.cfg.dns_check.port)))
                            case A.Release(i):
                                v = self.cfg.vips[i]
                                self.announcer.cancel(v.ip)
                                await self.nl.remove(v.interface, v.ip, v.prefixlen)
                            case A.Announce(i, refresh):
                                v = self.cfg.vips[i]
                                self.announcer.announce(v.interface, v.ip, refresh)
                                announced = True
                            case A.Send(data):
                                if announced:
                                    # Let the ARP burst's first frames out before the heartbeat
                                    # that says we hold the VIP: the old holder drops it on that
                                    # heartbeat, and the client must already point here.
                                    await asyncio.sleep(0)
                                    announced = False
                                self.hb.send(data)
                    except Exception as e:  # noqa: BLE001 - a failed netlink call must not stop the loop
                        log.error("%s failed: %s", a, e)
                        if isinstance(a, A.Claim):
                            self.step(E.ClaimFailed(a.vip, str(e)))
                    finally:
                        self.queue.task_done()
            finally:
                self.acting = False

    def _on_datagram(self, link: int, data: bytes, src: str) -> None:
        self.step(E.Datagram(link, data, src))

    def _on_dns(self, r) -> None:
        self.hb.drain()  # a timeout may fire first after a stall: hear the peer before deciding
        self.step(E.DnsResult(r.ok, r.latency, r.error))

    def _check_witness(self) -> None:
        if self._witness_busy or self.cfg.witness is None:
            return
        from .shell import witness
        w = self.cfg.witness
        self._witness_busy = True

        async def ask() -> None:
            try:
                ok = await witness.reachable(w.address, w.timeout)
            finally:
                self._witness_busy = False
            self.step(E.WitnessResult(ok))
        self._spawn(ask())

    def _check_zones(self) -> None:
        if self._zones_busy or self.cfg.dns is None:
            return
        if self._zones is None:
            from .shell import zonecheck
            self._zones = zonecheck.Checker(self.cfg, self.me, self.config_path)
        self._zones_busy = True

        async def ask() -> None:
            try:
                ev = await self._zones.check()
            except Exception as e:  # noqa: BLE001 - a failed check must not stop failover
                log.warning("zone check failed: %s", e)
                return
            finally:
                self._zones_busy = False
            self.step(ev)
        self._spawn(ask())

    def _spawn(self, coro) -> None:
        t = self.loop.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def status(self) -> dict:
        st = status_model.build(self.engine, time.monotonic(), time.time(), os.getpid(),
                                history=self.keeper.history[-RECENT:])
        st["control_rejected"] = self.control_rejected
        st["notify"] = dict(self.notifier.stats, commands=len(self.cfg.notify))
        st["state_file"] = {"path": self.keeper.path, "writes": self.keeper.writes,
                            "failed": self.keeper.failed}
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
        if cmd == "status":
            return {"ok": True, "status": self.status()}
        if cmd == "history":
            return {"ok": True, "history": self.keeper.history}
        try:
            command = requests.command(req)
        except requests.BadRequest as e:
            if str(e).startswith("unknown command"):
                self._reject(str(e))
            return {"ok": False, "error": str(e)}
        for a in self.step(command):
            if isinstance(a, A.Reply):
                return {"ok": True, "message": a.text} if a.ok else {"ok": False, "error": a.text}
        return {"ok": False, "error": "no reply from the engine"}

    # --- start and stop ------------------------------------------------------------------------

    async def run(self) -> int:
        loop = self.loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        # Stopped and continued (SIGSTOP/SIGCONT): the engine resyncs at once.
        loop.add_signal_handler(signal.SIGCONT, lambda: self.step(E.Resumed()))
        await self.nl.open()
        held = set()
        for i, v in enumerate(self.cfg.vips):
            if v.ip in await self.nl.addresses(v.interface):
                held.add(i)
        await self.hb.open()
        ctl = self.cfg.control
        server = await control.serve(ctl.socket, (ctl.admin_group, ctl.monitor_group), self.handle,
                                     self._reject)
        web = self.cfg.status_http and await status_http.serve(self.cfg.status_http.host,
                                                                self.cfg.status_http.port, self.status)
        panel = leds.Panel(self.cfg.leds, lambda c: self.handle({"cmd": c}), loop.call_soon_threadsafe)
        if self.cfg.leds.enabled and panel.open():
            self.listeners.append(panel.update)
            loop.call_later(1.0, panel.end_lamp_test)
        await self.prober.open()
        ifnames = sorted({v.interface for v in self.cfg.vips})
        for family in (4, 6):
            self.announcer.open(sorted({v.interface for v in self.cfg.vips if v.family == family}),
                                family)
        actuator = loop.create_task(self._actuator(), name="actuator")
        self.notifier.start()
        self.step(E.Start(frozenset(held), self.saved))
        for name in ifnames:
            self.step(E.Carrier(name, await self.nl.carrier(name)))
        carrier = loop.create_task(netlink.watch_carrier(
            set(ifnames), lambda name, up: self.step(E.Carrier(name, up))), name="carrier watch")
        log.info("started as %s in cluster %s (%d VIPs, %d link(s), incarnation %016x)", self.me,
                 self.cfg.cluster, len(self.cfg.vips), len(self.cfg.nodes[self.me].addresses),
                 self.engine.incarnation)
        tasks = [actuator, carrier]
        stop = loop.create_task(self.stopping.wait())
        done, _ = await asyncio.wait(tasks + [stop], return_when=asyncio.FIRST_COMPLETED)
        rc = 0
        for t in done:
            if t is not stop:
                log.error("internal error, stopping: %s ended: %r", t.get_name(), t.exception())
                rc = 1
        if actuator.done():
            actuator = loop.create_task(self._actuator())
        # Hands the VIPs over first if the peer can take them (the engine's STOP_HANDOVER, with
        # the DNS check still running), then releases, then byes on its timer, then Stopped.
        self.step(E.Stop())
        try:
            await asyncio.wait_for(self.stopped.wait(), 5.0)
            await asyncio.wait_for(self.queue.join(), 5.0)
        except TimeoutError:
            log.error("orderly stop did not finish in time")
        self.prober.close()
        self._arm(None)
        await self.notifier.drain(min(self.cfg.notify_timeout, 3.0))
        await self.keeper.flush()
        carrier.cancel()
        actuator.cancel()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(carrier, actuator, *self._tasks, return_exceptions=True)
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
