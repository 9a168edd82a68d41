"""What systemd, the operator and a second link see of a running daemon."""
import os
import signal
import socket
import stat
import time

import lab as labmod
from pair import Pair

VIP1, VIP2 = labmod.VIP1, labmod.VIP2


def test_notify_ready_status_and_watchdog(lab):
    p = Pair(lab)
    path = str(lab.workdir / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    try:
        p.start("node2", wait=False)
        env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000", PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = str(lab.workdir.parent)  # harmless; the venv has dnspair installed
        lab.popen("node1", [*lab.dnspair_command(), "daemon", "--config", p.configs["node1"],
                            "--node", "dns-pm01"], log=lab.workdir / "node1" / "dnspair.log", env=env)
        got, deadline = [], time.monotonic() + 20
        while time.monotonic() < deadline and not (any(m == "READY=1" for m in got)
                                                   and got.count("WATCHDOG=1") >= 3):
            try:
                got.append(sock.recv(4096).decode())
            except TimeoutError:
                pass
    finally:
        sock.close()
    assert "READY=1" in got, got
    assert got.count("WATCHDOG=1") >= 3, got
    statuses = [m for m in got if m.startswith("STATUS=")]
    assert statuses and "holding 192.0.2.11" in statuses[-1] and "\n" not in statuses[-1], statuses
    # READY comes once the first decision is applied: the VIP is already there.
    assert VIP1 in lab.vips_on("node1")


def test_watchdog_is_fed_by_the_clock_while_the_daemon_is_starved(lab):
    """A slow node (here: stopped 0.5 s of every 0.55 s) ticks far less often than its heartbeat
    interval, but its loop still turns: systemd's watchdog must not kill it. Only a loop that
    stops turning for the whole watchdog time should miss a WATCHDOG=1 (a count of ticks did)."""
    p = Pair(lab)
    path = str(lab.workdir / "notify-starved.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.05)
    limit = 2.0  # WATCHDOG_USEC: the daemon pings every half of it
    try:
        p.start("node2", wait=False)
        env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC=str(int(limit * 1e6)),
                   PYTHONUNBUFFERED="1")
        daemon = lab.popen("node1", [*lab.dnspair_command(), "daemon", "--config", p.configs["node1"],
                                     "--node", "dns-pm01"],
                           log=lab.workdir / "node1" / "dnspair.log", env=env)

        def recv_for(seconds, starve=False):
            got, end, next_stop = [], time.monotonic() + seconds, 0.0
            while time.monotonic() < end:
                if starve and time.monotonic() >= next_stop:
                    os.kill(daemon.pid, signal.SIGSTOP)
                    time.sleep(0.5)
                    os.kill(daemon.pid, signal.SIGCONT)
                    next_stop = time.monotonic() + 0.05
                try:
                    got.append((time.monotonic(), sock.recv(4096).decode()))
                except TimeoutError:
                    pass
            return got

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(m == "READY=1" for _, m in recv_for(0.5)):
            pass
        pings = [t for t, m in recv_for(10, starve=True) if m == "WATCHDOG=1"]
    finally:
        sock.close()
    assert len(pings) >= 4, pings
    gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
    assert max(gaps) < limit, f"watchdog gaps {gaps}"
    assert daemon.poll() is None


def test_control_socket_answers_by_credentials_and_move_works(lab):
    p = Pair(lab)
    sock = lab.workdir / "node1" / "control.sock"
    sock.parent.mkdir(mode=0o700, exist_ok=True)
    os.chmod(sock.parent, 0o700)
    p.start()
    # Anyone may connect, to be told what they may do: the caller's credentials decide
    # (tests/net/test_control_access.py tries each group). The directory's mode stays ours.
    assert stat.S_ISSOCK(os.stat(sock).st_mode) and stat.S_IMODE(os.stat(sock).st_mode) == 0o666
    assert stat.S_IMODE(os.stat(sock.parent).st_mode) == 0o700
    r = p.cli("node1", "move", VIP1, "dns-pm02")
    assert r.returncode == 0, r.stderr
    p.wait_served(VIP1, "node2")
    assert p.status("node1")["vips"][0]["pinned_to"] == "dns-pm02"
    for args, text in ((("move", "192.0.2.99", "dns-pm02"), "unknown VIP"),
                       (("move", VIP1, "dns-pm07"), "unknown node"),
                       (("cleanup", "192.0.2.98"), "unknown VIP")):
        r = p.cli("node1", *args)
        assert r.returncode == 1 and text in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert p.cli("node2", "cleanup", VIP1).returncode == 0
    p.wait_served(VIP1, "node1")


def test_malformed_control_requests_are_answered_and_counted(lab):
    p = Pair(lab)
    p.start()
    path = str(lab.workdir / "node1" / "control.sock")
    for junk in (b"not json\n", b'{"cmd": 5}\n', b'{"cmd": "reboot"}\n', b"x" * 10000 + b"\n", b"[]\n"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(path)
        try:
            s.sendall(junk)
            reply = s.recv(4096)
        except (BrokenPipeError, ConnectionResetError):
            reply = b""
        s.close()
        assert reply == b"" or b'"ok": false' in reply
    st = p.status("node1")
    assert st["control_rejected"] >= 3
    assert p.owners("node1") == {VIP1: "dns-pm01", VIP2: "dns-pm02"}


def test_one_of_two_links_cut_is_no_failover_but_is_reported(lab2):
    lab = lab2
    p = Pair(lab)
    p.start()
    p.wait_served(VIP1, "node1")
    p.wait(lambda: p.status("node1")["heartbeat"]["links_up"] == 2, "both links up")
    lab.link_down("node2", 1)
    p.wait(lambda: p.status("node1")["heartbeat"]["links_up"] == 1, "one link reported down")
    time.sleep(1)
    assert p.owners("node1") == {VIP1: "dns-pm01", VIP2: "dns-pm02"}
    assert lab.vips_on("node1") == [VIP1]
    assert "only 1 of 2 heartbeat links up" in p.cli("node1", "status").stdout


def test_witness_unreachable_keeps_a_cut_off_node_from_taking_vips(lab):
    # The witness stands for the gateway: the client's address, reachable only over the LAN.
    p = Pair(lab, extra="witness: {address: 192.0.2.100, interval: 0.2, timeout: 0.2}")
    p.start()
    p.wait_served(VIP1, "node1")
    p.wait(lambda: p.status("node1")["witness"]["ok"], "witness seen")
    # node1 loses the LAN but keeps carrier: drop everything from the client and node2 at node1.
    lab.run("node1", "nft", "-f", "-", input="""
table ip cut {
    chain input { type filter hook input priority -20; policy drop; iif "lo" accept; }
    chain output { type filter hook output priority -20; policy drop; oif "lo" accept; }
}
""")
    try:
        p.wait(lambda: sorted(lab.vips_on("node2")) == [VIP1, VIP2], "node2 (witness ok) takes over")
        time.sleep(1.0)
        assert lab.vips_on("node1") == [VIP1], "node1 keeps its own VIP but takes nothing"
    finally:
        lab.run("node1", "nft", "delete", "table", "ip", "cut", check=False)
