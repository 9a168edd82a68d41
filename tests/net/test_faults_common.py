"""What a client sees during a fault: shared by the tests/net/test_faults_*.py modules.

No tests here. `Watcher` is a background thread in the test that asks VIP1 and VIP2 from the
client namespace every 20 ms and records which node's bind answered each query; `AddrSampler`
samples which node holds each VIP (the addresses on both nodes' eth0) as fast as `ip` runs.
The assertions on what they recorded are the point of the fault suite: a pair is judged by
its clients, not by what its daemons say about themselves.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field

import lab as labmod

VIP1, VIP2 = labmod.VIP1, labmod.VIP2


@dataclass
class Sample:
    t: float          # time.monotonic() when the query was sent
    vip: str
    node: str | None  # 'node1' / 'node2' whose bind answered, None: no answer in time


@dataclass
class Watcher:
    """Ask both VIPs from the client every `period` s; `samples` is the record."""
    lab: object
    period: float = 0.02
    timeout: float = 0.25
    samples: list = field(default_factory=list)
    vips: tuple = labmod.VIPS   # IPv4 or IPv6 (a lab with ipv6=True)

    def __post_init__(self):
        self._stop = threading.Event()
        self._socks = {v: self.lab.socket("client", socket.AF_INET6 if ":" in v else socket.AF_INET)
                       for v in self.vips}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(10)
            for s in self._socks.values():
                s.close()

    def _ask(self, vip: str) -> str | None:
        s = self._socks[vip]
        qid = int.from_bytes(os.urandom(2), "big")
        deadline = time.monotonic() + self.timeout
        try:
            s.sendto(labmod.dns_query_packet(labmod.TEST_NAME, "A", qid), (vip, 53))
        except OSError:
            return None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            s.settimeout(left)
            try:
                buf, _ = s.recvfrom(4096)
            except (TimeoutError, OSError):
                return None
            try:
                rid, _rcode, addrs = labmod.dns_parse_response(buf)
            except Exception:  # noqa: BLE001 - a garbled answer is no answer
                continue
            if rid == qid:  # a late answer to an earlier query is skipped
                return next((labmod.WHO[a] for a in addrs if a in labmod.WHO), None)

    def _run(self):
        nxt = time.monotonic()
        while not self._stop.is_set():
            for vip in self.vips:
                t = time.monotonic()
                self.samples.append(Sample(t, vip, self._ask(vip)))
            nxt += self.period
            time.sleep(max(0.0, nxt - time.monotonic()))

    # ---- what was seen

    def of(self, vip: str, since: float = 0.0, until: float = float("inf")) -> list[Sample]:
        return [s for s in list(self.samples) if s.vip == vip and since <= s.t < until]

    def answerers(self, vip: str, since: float = 0.0, until: float = float("inf")) -> list[str]:
        """Who answered, in order, with repeats and unanswered queries collapsed."""
        out: list[str] = []
        for s in self.of(vip, since, until):
            if s.node and (not out or out[-1] != s.node):
                out.append(s.node)
        return out

    def lost(self, vip: str, since: float = 0.0, until: float = float("inf")) -> int:
        return sum(1 for s in self.of(vip, since, until) if s.node is None)

    def longest_gap(self, vip: str, since: float = 0.0, until: float = float("inf")) -> float:
        """Longest stretch (s) between two answered queries."""
        last, worst = None, 0.0
        for s in self.of(vip, since, until):
            if s.node:
                if last is not None:
                    worst = max(worst, s.t - last)
                last = s.t
        return worst

    def summary(self, since: float = 0.0, until: float = float("inf")) -> str:
        parts = []
        for vip in self.vips:
            smp = self.of(vip, since, until)
            parts.append(f"{vip}: {len(smp)} queries, {self.lost(vip, since, until)} unanswered, "
                         f"answerers {self.answerers(vip, since, until)}, "
                         f"longest gap {self.longest_gap(vip, since, until):.3f} s")
        return "; ".join(parts)


def outage(w: Watcher, vip: str, new: str, t0: float) -> float:
    """Seconds from the fault to the first query the new owner answered."""
    first = next((s.t for s in w.of(vip, t0) if s.node == new), None)
    assert first is not None, f"{vip} never answered by {new}: {w.summary(t0)}"
    return first - t0


def log_time(lab, node, text, after=0.0):
    """The time (epoch s, to the ms) of the first line of `node`'s daemon log containing `text`,
    after `after`."""
    from datetime import datetime
    for line in (lab.workdir / node / "dnspair.log").read_text().splitlines():
        if text in line:
            t = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if t > after:
                return t
    raise AssertionError(f"{node}: no log line {text!r}")


def serving_pair(lab):
    """The pair started (tests/net/pair.py, the shipped timings), each VIP answered from its
    home node."""
    from pair import Pair
    p = Pair(lab)
    p.start()
    p.wait_served(labmod.VIP1, "node1")
    p.wait_served(labmod.VIP2, "node2")
    return p


def held(lab, node: str) -> set[str]:
    """VIPs on `node`'s eth0, by `ip -n` (one fork, no `ip netns exec`: a few ms)."""
    r = subprocess.run(["ip", "-n", lab.nsname(node), "-j", "addr", "show", "dev", "eth0"],
                       capture_output=True, text=True, timeout=10)
    out = set()
    for link in json.loads(r.stdout or "[]"):
        for a in link.get("addr_info", []):
            if a.get("family") == "inet" and a["local"] in labmod.VIPS:
                out.add(a["local"])
    return out


class Background:
    """A daemon thread running `_run` for the length of a `with` block (`_stop` ends it)."""

    def _init_thread(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        self.close()

    def close(self):
        """What to release once the thread is done."""


@dataclass
class AddrSampler(Background):
    """Sample both nodes' VIPs in a tight loop: [(t, {vip: set of holders})]."""
    lab: object
    samples: list = field(default_factory=list)

    def __post_init__(self):
        self._init_thread()

    def _run(self):
        while not self._stop.is_set():
            t = time.monotonic()
            h1, h2 = held(self.lab, "node1"), held(self.lab, "node2")
            self.samples.append((t, {v: {n for n, h in (("node1", h1), ("node2", h2)) if v in h}
                                     for v in labmod.VIPS}))

    def duplicate_spans(self, vip: str, since: float = 0.0) -> list[tuple[float, float]]:
        """[(start, end)] of stretches where both nodes held `vip` (end: first sample with one)."""
        spans, start = [], None
        for t, h in list(self.samples):
            if t < since:
                continue
            if len(h[vip]) == 2 and start is None:
                start = t
            elif len(h[vip]) < 2 and start is not None:
                spans.append((start, t))
                start = None
        if start is not None:
            spans.append((start, float("inf")))
        return spans

    def last_duplicate_end(self, vip: str, since: float = 0.0) -> float | None:
        spans = self.duplicate_spans(vip, since)
        return spans[-1][1] if spans else None


def dnspair_log(lab, node: str) -> str:
    try:
        return (lab.workdir / node / "dnspair.log").read_text(errors="replace")
    except OSError:
        return ""


def failovers(p) -> dict:
    """{lab node: status failovers.count}. Take it after start-up and compare: a daemon that
    starts more than a dead time before its peer (a loaded machine) takes both VIPs at first,
    and that counts as a takeover."""
    return {n: p.status(n)["failovers"]["count"] for n in labmod.NODES}


def control_exchange(path, data: bytes, close_early=False) -> bytes:
    """Send raw bytes to a control socket; the reply (b"" if the daemon hung up)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(path))
    try:
        s.sendall(data)
        if close_early:
            return b""
        out = b""
        while not out.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out
    except (BrokenPipeError, ConnectionResetError):
        return b""
    finally:
        s.close()
