"""The local DNS check (dnspython messages over a connected UDP socket).

A connected socket gets ICMP port-unreachable at once, so a stopped bind fails the check
immediately ("refused"); a hung bind fails when the timeout runs out ("timeout").
"""
from __future__ import annotations

import asyncio
import socket
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


async def probe(check: DnsCheck) -> Result:
    q = dns.message.make_query(check.query, dns.rdatatype.from_text(check.type))
    q.flags |= dns.flags.RD
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    t0 = time.monotonic()
    try:
        sock.connect((check.server, check.port))
        await loop.sock_sendall(sock, q.to_wire())
        deadline = t0 + check.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError
            data = await asyncio.wait_for(loop.sock_recv(sock, 65535), left)
            try:
                reply = dns.message.from_wire(data)
            except Exception:  # noqa: BLE001 - any garbage is a failed check, never a crash
                return Result(False, None, "malformed reply")
            if reply.id == q.id:
                break
        latency = time.monotonic() - t0
        problem = judge(check, reply)
        return Result(problem is None, latency, problem)
    except ConnectionRefusedError:
        return Result(False, None, "refused: nothing listens (bind stopped?)")
    except asyncio.TimeoutError:
        return Result(False, None, f"timeout after {check.timeout:g} s (bind hung?)")
    except OSError as e:
        return Result(False, None, f"{e.strerror or e}")
    finally:
        sock.close()
