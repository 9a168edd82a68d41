"""Local clients misbehaving on the control socket while the pair must keep working: a crowd
of idle connections under systemd's default file limit, and a deeply nested JSON request.
An announcement must never depend on opening a file or socket at that moment."""
import json
import os
import resource
import signal
import socket
import time

import lab as labmod
from pair import Pair
from test_faults_common import Watcher, control_exchange, dnspair_log

VIP1, VIP2 = labmod.VIP1, labmod.VIP2
SOFT_NOFILE = 1024   # systemd's default soft limit (DefaultLimitNOFILE=1024:524288)
IDLE_CLIENTS = 1100
TAKEOVER_BOUND = 5.0  # s from bind's death to node1 answering VIP2; the DNS check is 0.1 s


def _systemd_default_nofile():
    resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT_NOFILE, 4096))


def _open_idle(path, n, patience=0.5, deadline=5.0):
    """n connections that never say a word; (sockets, connects that failed). A connect that
    finds the listen queue full (EAGAIN) is retried until connects have failed for
    `patience` s in a row: then the daemon has stopped accepting."""
    socks, failed = [], 0
    end = time.monotonic() + deadline
    stuck_since = None
    while len(socks) < n and time.monotonic() < end:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(str(path))
        except (BlockingIOError, InterruptedError):
            s.close()
            failed += 1
            now = time.monotonic()
            stuck_since = stuck_since or now
            if now - stuck_since > patience:
                break
            time.sleep(0.002)
            continue
        stuck_since = None
        socks.append(s)
    return socks, failed


def _fds(pid) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_idle_control_clients_under_the_default_file_limit_do_not_stop_a_takeover(lab):
    p = Pair(lab)
    p.start("node1", preexec_fn=_systemd_default_nofile)
    p.start("node2")
    p.wait_served(VIP1, "node1")
    p.wait_served(VIP2, "node2")
    pid = p.procs["node1"].pid
    with open(f"/proc/{pid}/limits") as f:
        assert any(ln.startswith("Max open files") and f" {SOFT_NOFILE} " in ln for ln in f), \
            "node1's daemon runs under the 1024 soft limit"
    # A fresh neighbour entry on the client (REACHABLE for 15-45 s) pointing VIP2 at node2:
    # only node1's gratuitous ARP can move it within the bound.
    lab.flush_arp("client")
    assert lab.who_answers(VIP2) == "node2" and lab.arp_owner(VIP2) == "node2"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    path = lab.workdir / "node1" / "control.sock"
    socks = []
    try:
        with Watcher(lab) as w:
            socks, failed = _open_idle(path, IDLE_CLIENTS)
            fds_held = _fds(pid)
            t_kill = time.monotonic()
            lab.stop_bind("node2", sig=signal.SIGKILL)
            deadline = t_kill + TAKEOVER_BOUND
            while time.monotonic() < deadline and not (
                    any(x.node == "node1" for x in w.of(VIP2, t_kill))
                    and lab.arp_owner(VIP2) == "node1"):
                time.sleep(0.05)
            neigh = lab.arp_entry("client", VIP2)
            time.sleep(2.0)   # and it stays that way
            t_end = time.monotonic()
        served = [x for x in w.of(VIP2, t_kill, t_end) if x.node == "node1"]
        first = f"{served[0].t - t_kill:.3f} s" if served else "never"
        print(f"\n{len(socks)} idle connections held ({failed} connects failed); node1's daemon had "
              f"{fds_held} fds open; first VIP2 answer from node1 {first} after bind died; "
              f"client {w.summary(t_kill, t_end)}")
    finally:
        for s in socks:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert served, \
        f"VIP2 not answered by node1 within {TAKEOVER_BOUND} s: {w.summary(t_kill, t_end)}\n{p.logs()}"
    assert served[0].t - t_kill < TAKEOVER_BOUND
    assert w.answerers(VIP2, served[0].t, t_end) == ["node1"] and \
        w.lost(VIP2, served[0].t, t_end) == 0, w.summary(served[0].t, t_end)
    assert neigh == lab.node_mac("node1"), f"client's neighbour entry for VIP2: {neigh}"
    assert p.procs["node1"].poll() is None
    log = dnspair_log(lab, "node1")
    assert "Traceback" not in log, log[-3000:]
    about_clients = [ln for ln in log.splitlines()
                     if "control socket" in ln or "accept" in ln or "open files" in ln]
    print("node1's log about its clients:", *about_clients, sep="\n  ")
    assert len(about_clients) <= 3, f"one line per kind of refusal: {about_clients[:6]}"
    assert "gratuitous ARP" not in log, "every announcement went out"
    r = p.cli("node1", "status")
    assert r.returncode == 0, r.stderr
    st = p.status("node1")
    assert st["control_rejected"] >= IDLE_CLIENTS - 50, \
        f"every refused client is counted: {st['control_rejected']}"


def test_deeply_nested_json_gets_a_one_line_error_and_the_socket_keeps_serving(lab):
    p = Pair(lab)
    p.start()
    p.wait_served(VIP1, "node1")
    path = lab.workdir / "node1" / "control.sock"
    nested = b"[" * 4000 + b"\n"
    replies = [control_exchange(path, nested) for _ in range(3)]
    for reply in replies:
        assert reply.count(b"\n") == 1 and reply.endswith(b"\n"), replies
        doc = json.loads(reply)
        assert doc["ok"] is False and "nest" in doc["error"], doc
    log = dnspair_log(lab, "node1")
    assert "Traceback" not in log and "RecursionError" not in log, log[-3000:]
    lines = [ln for ln in log.splitlines() if "control socket" in ln]
    assert len(lines) <= 1, f"nothing logged per request: {lines}"
    r = p.cli("node1", "status")
    assert r.returncode == 0 and "dns-pm01" in r.stdout, r.stdout + r.stderr
    assert p.status("node1")["control_rejected"] >= 3
