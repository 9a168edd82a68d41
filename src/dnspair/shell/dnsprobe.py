"""The local DNS check (dnspython messages over a connected UDP socket).

A connected socket gets ICMP port-unreachable at once, so a stopped bind fails the check
immediately ("refused"); a hung bind never answers, and the engine, which owns every
timing rule, judges that a timeout.

At rest this runs ten times a second on a Pi: the query is built once and only its id
changes, and a reply is parsed by dnspython only when the check expects an answer.
"""
from __future__ import annotations

import asyncio
import secrets
import struct
import time
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from ..core.config import DnsCheck
from ..core.engine import DNS_PENDING


@dataclass(frozen=True)
class Result:
    ok: bool
    latency: float | None
    error: str | None


def serial_of(r: dns.message.Message, zone: str) -> int | str:
    """The serial of `zone` in an SOA reply, or why there is none."""
    if r.rcode() != dns.rcode.NOERROR:
        return dns.rcode.to_text(r.rcode())
    if not r.flags & dns.flags.AA:
        return "not authoritative"
    for rrset in r.answer:
        if rrset.rdtype == dns.rdatatype.SOA and rrset.name == dns.name.from_text(zone):
            return int(rrset[0].serial)
    return "no SOA"


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

    Callback-driven so a check costs one wakeup (the reply or the refusal) instead of a
    task per check: at rest the daemon's CPU is mostly wakeups.
    """

    def __init__(self, check: DnsCheck, on_result):
        self.check, self.on_result = check, on_result
        self.transport = None
        self.pending: dict[int, float] = {}  # id -> sent, of the queries not yet answered
        self.rdtype = dns.rdatatype.from_text(check.type)
        q = dns.message.make_query(check.query, self.rdtype)
        q.flags |= dns.flags.RD
        self.template = q.to_wire()[2:]   # everything after the id
        self.full_parse = bool(check.expect)
        self._ids: list[int] = []

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, remote_addr=(self.check.server, self.check.port))

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.transport = None

    def start(self, forget: bool = False) -> None:
        """Send one query. The answer to any query still out counts (a bind slower than the
        check interval answers an earlier one), and ends it and those sent before it."""
        if self.transport is None:
            asyncio.get_running_loop().create_task(self._reopen())
            return
        if forget:
            self.pending.clear()   # their answers may predate a stall: they prove nothing now
        if not self._ids:
            # Random ids from the kernel, 256 at a time: one getrandom() per 256 checks.
            self._ids = list(struct.unpack("!256H", secrets.token_bytes(512)))
        qid = self._ids.pop()
        self.pending[qid] = time.monotonic()
        while len(self.pending) > DNS_PENDING:   # as many as the engine waits for
            del self.pending[next(iter(self.pending))]
        try:
            self.transport.sendto(struct.pack("!H", qid) + self.template)
        except OSError as e:
            self._finish(Result(False, None, e.strerror or str(e)))

    async def _reopen(self) -> None:
        try:
            await self.open()
        except OSError as e:
            self.on_result(Result(False, None, f"cannot open a socket: {e.strerror or e}"))

    def _finish(self, result: Result) -> None:
        self.pending.clear()
        self.on_result(result)

    def datagram_received(self, data, addr):
        if len(data) < 12:
            return  # not DNS at all
        qid, flags = struct.unpack_from("!HH", data)
        sent = self.pending.get(qid)
        if sent is None or not flags & 0x8000:
            return  # a late answer to a query already answered, or not a reply
        latency = time.monotonic() - sent
        # It settles itself and the queries before it; later ones stay out (the engine times
        # them out from their own send: a bind slow, then hung).
        for q in list(self.pending):
            del self.pending[q]
            if q == qid:
                break
        if not self.full_parse:
            # No expected answer: only the rcode counts, and it is in the header.
            rcode = flags & 0xF
            problem = None if rcode == 0 else f"rcode {dns.rcode.to_text(rcode)}"
        else:
            try:
                problem = judge(self.check, dns.message.from_wire(data))
            except Exception:  # noqa: BLE001 - garbage is a failed check, never a crash
                problem = "malformed reply"
        self.on_result(Result(problem is None, latency, problem))

    def error_received(self, exc):
        if not self.pending:
            return
        if isinstance(exc, ConnectionRefusedError):
            self._finish(Result(False, None, "refused: nothing listens (bind stopped?)"))
        else:
            self._finish(Result(False, None, exc.strerror or str(exc)))

    def close(self):
        self.pending.clear()
        if self.transport is not None:
            self.transport.close()
