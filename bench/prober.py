"""Client-side DNS prober: queries one or more servers every INTERVAL seconds (UDP, stdlib).

Runs inside the client namespace (`ip netns exec <client> python3 bench/prober.py ...`).
One line per query once it is settled, flushed at once so the orchestrator can tail it:
    <server> <seq> <t_send> <t_recv|-1> <answer|->
Times are CLOCK_MONOTONIC (shared by every process on the machine). A query unanswered after
TIMEOUT seconds is written with t_recv -1 (lost). SIGTERM: stop sending, settle, exit.
"""
import argparse
import os
import select
import signal
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "net"))
from lab import dns_parse_response, dns_query_packet  # noqa: E402  (stdlib only)


def first_a(buf):
    """(id, first A address or "rcodeN") of a response, None if it does not parse."""
    try:
        qid, rcode, addrs = dns_parse_response(buf)
    except (ValueError, IndexError, struct.error):
        return None
    return qid, addrs[0] if addrs else f"rcode{rcode}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", action="append", required=True)
    ap.add_argument("--name", default="test.example")
    ap.add_argument("--interval", type=float, default=0.02)
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    for s in a.server:
        assert s.startswith("192.0.2."), s
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    out = open(a.out, "w", buffering=1)
    socks = {}
    for s in a.server:
        sk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sk.setblocking(False)
        socks[sk] = s
    pending = {}  # (server, qid) -> (seq, t_send)
    seq = 0
    t0 = time.monotonic()
    nxt = t0
    end = t0 + a.duration
    qid = int.from_bytes(os.urandom(2), "big")
    while True:
        now = time.monotonic()
        if not stop and now < end and now >= nxt:
            for sk, srv in socks.items():
                qid = (qid + 1) & 0xFFFF
                try:
                    sk.sendto(dns_query_packet(a.name, "A", qid), (srv, 53))
                except OSError:
                    pass  # e.g. no route / EHOSTUNREACH: counts as lost
                pending[(srv, qid)] = (seq, now)
            seq += 1
            nxt += a.interval
            if nxt < now:
                nxt = now + a.interval
        for key, (sq, ts) in list(pending.items()):
            if now - ts > a.timeout:
                out.write(f"{key[0]} {sq:d} {ts:.6f} -1 -\n")
                del pending[key]
        if (stop or now >= end) and not pending:
            break
        wait = max(0.0, min(nxt - time.monotonic(), 0.005)) if not stop else 0.005
        r, _, _ = select.select(list(socks), [], [], wait)
        for sk in r:
            while True:
                try:
                    buf = sk.recv(4096)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break  # ICMP errors (refused): keep waiting; the query will expire
                t = time.monotonic()
                got = first_a(buf)
                if not got:
                    continue
                key = (socks[sk], got[0])
                if key in pending:
                    sq, ts = pending.pop(key)
                    out.write(f"{key[0]} {sq:d} {ts:.6f} {t:.6f} {got[1]}\n")
    out.close()


if __name__ == "__main__":
    sys.exit(main())
