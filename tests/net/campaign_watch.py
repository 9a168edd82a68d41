"""What the campaign records while a schedule runs: the client's queries, the VIP holders and
the client's neighbour entries, and idle clients flooding a control socket."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import lab as labmod
from campaign_check import Sample, Snap
from test_faults_common import held

MAC_NODE = {m: n for (n, _link), m in labmod.MAC.items() if n in labmod.NODES}


class Client:
    """One thread per VIP in the client namespace: ask `test.example`, wait up to `timeout`,
    ask again after `period`. A thread per VIP so a dead VIP does not slow the other's record."""

    def __init__(self, lab, timeout: float = 0.2, period: float = 0.02):
        self.lab, self.timeout, self.period = lab, timeout, period
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(v,), daemon=True)
                         for v in labmod.VIPS]

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def _ask(self, s, vip):
        qid = int.from_bytes(os.urandom(2), "big")
        deadline = time.monotonic() + self.timeout
        try:
            s.sendto(labmod.dns_query_packet(labmod.TEST_NAME, "A", qid), (vip, 53))
        except OSError:
            time.sleep(max(0.0, deadline - time.monotonic()))
            return None
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                buf, _ = s.recvfrom(4096)
                rid, _rcode, addrs = labmod.dns_parse_response(buf)
            except (TimeoutError, ConnectionRefusedError):
                return None
            except OSError:  # e.g. ICMP unreachable: no answer, wait out the timeout
                continue
            except Exception:  # noqa: BLE001 - a garbled answer is no answer
                continue
            if rid == qid:  # a late answer to an earlier query is skipped
                return next((labmod.WHO[a] for a in addrs if a in labmod.WHO), None)
        return None

    def _run(self, vip):
        s = self.lab.socket("client")
        try:
            while not self._stop.is_set():
                t = time.monotonic()
                self.samples.append(Sample(t, vip, self._ask(s, vip)))
                time.sleep(max(0.0, t + self.period - time.monotonic()))
        finally:
            s.close()


def neighbours(lab) -> dict:
    """{vip: node} the client's neighbour table points each VIP at (None: no usable entry)."""
    r = subprocess.run(["ip", "-n", lab.nsname("client"), "-j", "neigh", "show", "dev", "eth0"],
                       capture_output=True, text=True, timeout=10)
    out = {v: None for v in labmod.VIPS}
    for e in json.loads(r.stdout or "[]"):
        st = e.get("state", [])
        if e.get("dst") in out and e.get("lladdr") and "FAILED" not in st and "INCOMPLETE" not in st:
            out[e["dst"]] = MAC_NODE.get(e["lladdr"])
    return out


class Sampler:
    """Holders of each VIP and the client's neighbour entries, as fast as `ip` runs."""

    def __init__(self, lab, period: float = 0.02):
        self.lab, self.period = lab, period
        self.snaps: list[Snap] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(10)

    def _run(self):
        while not self._stop.is_set():
            t = time.monotonic()
            h = {n: held(self.lab, n) for n in labmod.NODES}
            arp = neighbours(self.lab)
            self.snaps.append(Snap(t, {v: {n for n in labmod.NODES if v in h[n]}
                                       for v in labmod.VIPS}, arp))
            time.sleep(max(0.0, t + self.period - time.monotonic()))


FLOOD = r"""
import resource, selectors, socket, sys, time
path, n = sys.argv[1], int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
sel = selectors.DefaultSelector()
def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect(path)
    except OSError:  # EAGAIN: the listen backlog is full until the daemon accepts
        s.close()
        return False
    sel.register(s, selectors.EVENT_READ)
    return True
def fill(deadline):
    while len(sel.get_map()) < n and time.monotonic() < deadline:
        if not connect():
            time.sleep(0.002)
def drop_closed(wait):
    for key, _ in sel.select(wait):  # readable: the daemon answered or hung up
        sel.unregister(key.fileobj)
        key.fileobj.close()
fill(time.monotonic() + 3.0)
print(len(sel.get_map()), flush=True)
while True:  # the daemon drops an idle client after a while: come back, stay idle
    drop_closed(0.05)
    fill(time.monotonic() + 0.05)
"""


class Flood:
    """`n` idle clients connected to a control socket, reconnecting when dropped. A process of
    its own (with its own open-file limit), ended by its PID."""

    def __init__(self, path, n: int):
        self.p = subprocess.Popen([sys.executable, "-c", FLOOD, str(path), str(n)],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.p.stdout.readline().strip()
        self.connected = int(line) if line.isdigit() else 0

    def stop(self):
        self.p.kill()
        self.p.wait(10)
        self.p.stdout.close()
