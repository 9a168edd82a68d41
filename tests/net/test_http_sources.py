"""One host cannot starve the status endpoint for the others: 200 clients from one address,
each sending its request one byte a second, and a monitor on another address still gets its
answer every time; `check_dnspair -H` calls the crowded endpoint busy, not down."""
import socket
import threading
import time

from pair import Pair

HTTP = "status_http: {listen: '0.0.0.0:8053'}"
NODE1 = "192.0.2.1"
MONITOR = "192.0.2.101"   # a second address on the client namespace


class Crowd:
    """n connections from the client's main address (192.0.2.100), each trickling a request
    head at 1 byte per second, reconnecting whenever the server cuts or refuses it."""

    def __init__(self, lab, n):
        self.lab, self.n = lab, n
        self.stop = threading.Event()
        self.refused = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def connect(self):
        s = self.lab.socket("client", socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex((NODE1, 8053))
        return s

    def run(self):
        socks = [self.connect() for _ in range(self.n)]
        while not self.stop.is_set():
            for i, s in enumerate(socks):
                try:
                    s.send(b"G")
                    if s.recv(1024, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    continue  # still connecting, or nothing to read: it holds on
                except OSError:
                    pass
                # an answer (408, 503) or an error: the server let go of us; come back
                self.refused += 1
                s.close()
                socks[i] = self.connect()
            self.stop.wait(1.0)
        for s in socks:
            s.close()

    def close(self):
        self.stop.set()
        self.thread.join(15)


def get_health(lab, source):
    s = lab.socket("client", socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.bind((source, 0))
        s.connect((NODE1, 8053))
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body.decode()
    finally:
        s.close()


def plugin(lab, where, *args):
    exe = lab.dnspair_command()[0].replace("/dnspair", "/check_dnspair")
    r = lab.run(where, exe, *args, "--no-dns", "-t", "5", check=False, timeout=30)
    return r.returncode, r.stdout.strip()


def test_a_crowd_from_one_host_leaves_the_endpoint_to_the_others(lab):
    lab.run("client", "ip", "addr", "add", f"{MONITOR}/24", "dev", "eth0")
    p = Pair(lab, extra=HTTP)
    p.start()
    p.wait_served("192.0.2.11", "node1")
    crowd = Crowd(lab, 200)
    try:
        time.sleep(3.0)  # the crowd has filled what it can
        codes = []
        for _ in range(24):
            codes.append(get_health(lab, MONITOR))
            time.sleep(0.25)
        # From the crowd's own address the endpoint is busy; the plugin says so, not "down".
        seen = [plugin(lab, "client", "-H", NODE1) for _ in range(5)]
        from_elsewhere = plugin(lab, "node2", "-H", NODE1)
    finally:
        crowd.close()
    # Every request answered on its merits: 200, or 503 "FAIL ..." if a loaded machine made the
    # node's own DNS check fail meanwhile; never turned away as busy.
    assert len(codes) == 24 and not [c for c in codes if c[1].startswith("busy")], codes
    assert all(code == 200 or body.startswith("FAIL ") for code, body in codes), codes
    assert crowd.refused > 200, "the crowd was cut and refused over and over"
    busy = [out for rc, out in seen if rc == 3 and "busy" in out]
    assert busy and not [out for _, out in seen if "not running" in out or "refused" in out], seen
    assert busy[0].startswith(f"DNSPAIR UNKNOWN - {NODE1}:8053 is busy (HTTP 503"), busy[0]
    assert from_elsewhere[0] in (0, 1, 2) and "busy" not in from_elsewhere[1], from_elsewhere
    # Down is not busy: nothing listening is CRITICAL.
    rc, out = plugin(lab, "client", "-H", NODE1, "-p", "8054")
    assert rc == 2 and "connection refused" in out, out
