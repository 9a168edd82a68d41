"""The status endpoint of a live daemon, seen from the client namespace; LEDs without GPIO."""
import json
import socket
import threading
import time

import lab as labmod
from pair import Pair

VIP1, VIP2 = labmod.VIP1, labmod.VIP2
HTTP = "status_http: {listen: '0.0.0.0:8053'}"


def raw(lab, host, data: bytes, timeout=10.0, where="client") -> bytes:
    s = lab.socket(where, socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, 8053))
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
    finally:
        s.close()


def get(lab, host, path, where="client"):
    r = raw(lab, host, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(), where=where)
    head, _, body = r.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def test_each_path_bad_method_and_oversized_request(lab):
    p = Pair(lab, extra=HTTP)
    p.start()
    p.wait_served(VIP1, "node1")
    code, body = get(lab, "192.0.2.1", "/status")
    st = json.loads(body)
    assert code == 200 and st["node"] == "dns-pm01" and st["schema"] == 1
    assert {v["address"]: v["owner"] for v in st["vips"]} == {"192.0.2.11/24": "dns-pm01",
                                                              "192.0.2.12/24": "dns-pm02"}
    key = (lab.workdir / "authkey").read_text().strip()
    assert key not in body
    code, body = get(lab, "192.0.2.1", "/health")
    assert (code, body) == (200, "OK dns-pm01 holds 192.0.2.11\n")
    code, body = get(lab, "192.0.2.2", "/metrics")
    assert code == 200 and 'dnspair_vip_owner{node="dns-pm02",vip="192.0.2.12"} 1.0' in body
    assert key not in body
    assert get(lab, "192.0.2.1", "/nope")[0] == 404
    post = raw(lab, "192.0.2.1", b"POST /status HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
    assert post.startswith(b"HTTP/1.1 405 ") and b"Allow: GET" in post
    big = raw(lab, "192.0.2.1", b"GET /status HTTP/1.1\r\nCookie: " + b"x" * 20000 + b"\r\n\r\n")
    assert big.startswith(b"HTTP/1.1 431 ")
    lab.stop_bind("node1")
    p.wait_served(VIP1, "node2")
    code, body = get(lab, "192.0.2.1", "/health")
    assert code == 503 and body.startswith("FAIL dns-pm01: DNS failed") and body.count("\n") == 1
    # The daemon with LEDs enabled (the default) on a machine without GPIO: one warning, runs on.
    log = (lab.workdir / "node1" / "dnspair.log").read_text()
    # Lines, not words: since the lgpio factory the reason itself says "no GPIO chip labelled ...".
    assert len([line for line in log.splitlines() if "WARNING no GPIO" in line]) == 1, log


class Slowloris:
    """Connections that send a request head one byte at a time, reconnecting when cut."""

    def __init__(self, lab, host, n):
        self.lab, self.host, self.n = lab, host, n
        self.stop = threading.Event()
        self.cut = 0
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(n)]
        for t in self.threads:
            t.start()

    def run(self):
        while not self.stop.is_set():
            s = self.lab.socket("client", socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(5)
            try:
                s.connect((self.host, 8053))
                for b in b"GET /status HTTP/1.1\r\nX-Slow: " + b"a" * 1000:
                    if self.stop.is_set():
                        break
                    s.send(bytes([b]))
                    self.stop.wait(0.2)
            except OSError:
                self.cut += 1  # the server hung up on us: that is the point
                self.stop.wait(0.05)
            finally:
                s.close()

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join(10)


def test_slow_clients_do_not_delay_failover(lab):
    """Slow clients hog both endpoints while node1's cable is cut: node2 still takes VIP1
    within the failover budget, the endpoint cuts them, and a normal GET is still served."""
    p = Pair(lab, extra=HTTP)
    p.start()
    p.wait_served(VIP1, "node1")
    hogs = [Slowloris(lab, "192.0.2.1", 8), Slowloris(lab, "192.0.2.2", 8)]
    try:
        time.sleep(3.0)  # long enough for the first round to be cut
        # Another host is served (the hogs' own host has used its share, 4 of the 16 slots).
        assert get(lab, "192.0.2.2", "/health", where="node1")[0] == 200
        lab.link_down("node1")
        t0 = time.monotonic()
        while lab.who_answers(VIP1, timeout=0.1) != "node2":
            assert time.monotonic() - t0 < 10, "no failover"
        took = time.monotonic() - t0
    finally:
        for h in hogs:
            h.close()
    print(f"failover with slow clients: {took:.3f} s, cut {hogs[1].cut}")
    # The dead time is 0.2 s; a stalled loop would show as seconds here.
    assert took < 1.5, f"failover took {took:.2f} s with slow clients attached"
    assert hogs[1].cut > 0, "the endpoint cut slow clients"
    assert get(lab, "192.0.2.2", "/health")[0] == 200
    st = p.status("node2")
    assert st["failovers"]["count"] >= 1


def test_daemon_drives_the_led_panel_on_mock_pins_without_errors(lab, monkeypatch):
    """gpiozero's mock pins inside the real daemon: the panel opens, follows a failover and a
    recovery through the status listener, and nothing about it is logged as failing."""
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    p = Pair(lab, extra=HTTP)
    p.start()
    p.wait_served(VIP2, "node2")
    lab.stop_bind("node2")
    p.wait_served(VIP2, "node1")  # node1 now holds the peer's VIP: amber blinks there
    lab.restore_bind("node2")
    assert p.cli("node1", "cleanup").returncode == 0
    p.wait_served(VIP2, "node2")
    for node in ("node1", "node2"):
        log = (lab.workdir / node / "dnspair.log").read_text()
        for bad in ("no GPIO", "LED error", "status listener failed", "internal error"):
            assert bad not in log, log
