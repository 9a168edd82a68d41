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


def packet(name, qid):
    q = struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00\x00\x01\x00\x01"


def first_a(buf):
    if len(buf) < 12:
        return None
    qid, flags, qd, an = struct.unpack("!HHHH", buf[:8])
    off = 12

    def skip(off):
        while True:
            n = buf[off]
            if n == 0:
                return off + 1
            if n & 0xC0 == 0xC0:
                return off + 2
            off += 1 + n
    try:
        for _ in range(qd):
            off = skip(off) + 4
        for _ in range(an):
            off = skip(off)
            rtype, _c, _t, rdlen = struct.unpack("!HHIH", buf[off:off + 10])
            off += 10
            if rtype == 1 and rdlen == 4:
                return qid, socket.inet_ntoa(buf[off:off + 4])
            off += rdlen
    except (IndexError, struct.error):
        return None
    return qid, "rcode%d" % (flags & 0xF)


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
                    sk.sendto(packet(a.name, qid), (srv, 53))
                except OSError:
                    pass  # e.g. no route / EHOSTUNREACH: counts as lost
                pending[(srv, qid)] = (seq, now)
            seq += 1
            nxt += a.interval
            if nxt < now:
                nxt = now + a.interval
        for key, (sq, ts) in list(pending.items()):
            if now - ts > a.timeout:
                out.write("%s %d %.6f -1 -\n" % (key[0], sq, ts))
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
                    out.write("%s %d %.6f %.6f %s\n" % (key[0], sq, ts, t, got[1]))
    out.close()


if __name__ == "__main__":
    sys.exit(main())
