"""The local DNS check (dnspython messages over a connected UDP socket).

A connected socket gets ICMP port-unreachable at once, so a stopped bind fails the check
immediately ("refused"); a hung bind fails when the timeout runs out ("timeout").
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from ..core.config import DnsCheck


@dataclass(frozen=True)
class Result:
    ok: bool
    latency: float | None
    error: str | None


def judge(check: DnsCheck, reply: dns.message.Message) -> str | None:
    """None if the reply is what the check expects, else why not."""
    rcode = dns.rcode.to_text(reply.rcode())
    expect = check.expect
    if expect and expect.upper() in dns.rcode.Rcode.__members__:
        return None if rcode == expect.upper() else f"rcode {rcode}, expected {expect.upper()}"
    if rcode != "NOERROR":
        return f"rcode {rcode}"
    if expect:
        answers = {rd.to_text() for rrset in reply.answer for rd in rrset}
        return None if expect in answers else f"answer {sorted(answers) or 'empty'}, expected {expect}"
    return None


class Prober(asyncio.DatagramProtocol):
    """One persistent connected UDP socket to the local bind; `start()` sends one query.

    Callback-driven so a check costs one wakeup (the reply, or the refusal, or the timeout)
    instead of a task per check: at rest the daemon's CPU is mostly wakeups.
    """

    def __init__(self, check: DnsCheck, on_result):
        self.check, self.on_result = check, on_result
        self.transport = None
        self.pending: tuple[int, float, asyncio.TimerHandle] | None = None  # (id, sent, timeout)
        self.rdtype = dns.rdatatype.from_text(check.type)

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, remote_addr=(self.check.server, self.check.port))

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.transport = None

    def start(self) -> None:
        if self.pending is not None:
            return  # the previous check is still running: its timeout decides
        if self.transport is None:
            asyncio.get_running_loop().create_task(self._reopen())
            return
        q = dns.message.make_query(self.check.query, self.rdtype)
        q.flags |= dns.flags.RD
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.check.timeout, self._timeout, q.id)
        self.pending = (q.id, time.monotonic(), timer)
        try:
            self.transport.sendto(q.to_wire())
        except OSError as e:
            self._finish(Result(False, None, e.strerror or str(e)))

    async def _reopen(self) -> None:
        try:
            await self.open()
        except OSError as e:
            self.on_result(Result(False, None, f"cannot open a socket: {e.strerror or e}"))

    def _finish(self, result: Result) -> None:
        if self.pending is not None:
            self.pending[2].cancel()
            self.pending = None
        self.on_result(result)

    def _timeout(self, qid: int) -> None:
        if self.pending is not None and self.pending[0] == qid:
            self._finish(Result(False, None, f"timeout after {self.check.timeout:g} s (bind hung?)"))

    def datagram_received(self, data, addr):
        if self.pending is None:
            return  # a late answer to a query already judged
        try:
            reply = dns.message.from_wire(data)
        except Exception:  # noqa: BLE001 - garbage is a failed check, never a crash
            self._finish(Result(False, None, "malformed reply"))
            return
        if reply.id != self.pending[0]:
            return
        latency = time.monotonic() - self.pending[1]
        problem = judge(self.check, reply)
        self._finish(Result(problem is None, latency, problem))

    def error_received(self, exc):
        if self.pending is None:
            return
        if isinstance(exc, ConnectionRefusedError):
            self._finish(Result(False, None, "refused: nothing listens (bind stopped?)"))
        else:
            self._finish(Result(False, None, exc.strerror or str(exc)))

    def close(self):
        if self.pending is not None:
            self.pending[2].cancel()
        if self.transport is not None:
            self.transport.close()
