"""The floor under dnspair's at-rest cost: the same I/O at the same cadence with no logic.

    sudo .venv/bin/python bench/floor.py [SECONDS [ROUNDS]]

In the bench's lab (namespaces, bridge, a real bind in each node), two bare asyncio processes
do only what a dnspair pair at rest must do every heartbeat interval (0.1 s, the defaults):
node1 leads on a timer, sends a heartbeat-sized datagram to node2 and a DNS query to its bind;
node2 answers each heartbeat with its own and its own query. No HMAC, no engine, no status.
On-CPU time (/proc/PID/schedstat) and wakeups (voluntary context switches) of both, one JSON
line per round, as bench/rest_pair.py prints them: run both at once to compare in one moment.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
INTERVAL = 0.1
PORT = 47000


def node(role: str, local: str, peer: str) -> None:
    """One bare node: `lead` sends on a timer, `follow` on each heartbeat it hears."""
    import dns.message
    import dns.rdatatype

    async def run() -> None:
        loop = asyncio.get_running_loop()
        hb = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        hb.bind((local, PORT))
        hb.connect((peer, PORT))
        hb.setblocking(False)
        dq = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dq.connect(("127.0.0.1", 53))
        dq.setblocking(False)
        query = dns.message.make_query("localhost", dns.rdatatype.A).to_wire()[2:]
        beat = os.urandom(120)   # a dnspair heartbeat is ~120 bytes with its MAC
        qid = 0

        def send() -> None:
            nonlocal qid
            qid = (qid + 1) & 0xFFFF
            for s, data in ((dq, struct.pack("!H", qid) + query), (hb, beat)):
                try:
                    s.send(data)
                except OSError:
                    pass

        def heard() -> None:
            try:
                hb.recv(512)
            except OSError:
                return
            if role == "follow":
                send()

        def answered() -> None:
            try:
                dq.recv(4096)
            except OSError:
                pass

        loop.add_reader(hb.fileno(), heard)
        loop.add_reader(dq.fileno(), answered)
        if role == "lead":
            slot = loop.time()

            def tick() -> None:
                nonlocal slot
                send()
                slot += INTERVAL
                loop.call_at(slot, tick)
            loop.call_at(slot, tick)
        await asyncio.Event().wait()

    asyncio.run(run())


def main() -> int:
    sys.path.insert(0, str(HERE.parent / "tests" / "net"))
    sys.path.insert(0, str(HERE))
    from lab import NODE_ADDR, Lab
    from rest_pair import on_cpu, wakeups

    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 15.0
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    lab = Lab()
    try:
        lab.start()
        procs = {}
        for n, role in (("node1", "lead"), ("node2", "follow")):
            peer = NODE_ADDR["node2" if n == "node1" else "node1"]
            procs[n] = lab.popen(n, [sys.executable, __file__, "--node", role, NODE_ADDR[n], peer],
                                 what=f"floor@{n}")
        time.sleep(3.0)
        for p in procs.values():
            if p.poll() is not None:
                raise RuntimeError(f"a floor node exited with {p.returncode}")
        pids = {n: p.pid for n, p in procs.items()}
        for r in range(rounds):
            before = {n: (on_cpu(p), wakeups(p)) for n, p in pids.items()}
            t0 = time.monotonic()
            time.sleep(secs)
            dt = time.monotonic() - t0
            out: dict = {"floor": True, "round": r, "load": os.getloadavg()[0]}
            for n, p in pids.items():
                c, w = before[n]
                out[n] = {"cpu_percent": round(100 * (on_cpu(p) - c) / dt, 3),
                          "wakeups_per_s": round((wakeups(p) - w) / dt, 1)}
            print(json.dumps(out), flush=True)
        for p in procs.values():
            lab.stop_process(p, grace=2)
    finally:
        lab.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--node":
        node(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(main())
