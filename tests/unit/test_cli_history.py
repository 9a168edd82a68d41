"""`dnspair history`: the text and JSON forms, from the daemon, and from the state file the
daemon left when it is not running."""
import asyncio
import json
import socket
import threading

import pytest

from dnspair.core import actions as A
from dnspair.core import config, saved
from dnspair.shell import state
from test_cli import EXAMPLE, run

WALL = 1_767_225_600.0   # 2026-01-01T00:00:00Z
LINES = ["#1 2026-01-01 00:00:00.000 dns-pm02: peer_found (heard dns-pm01 again)",
         "#2 2026-01-01 00:00:01.500 dns-pm02: failover 192.0.2.11 dns-pm01 -> dns-pm02 "
         "(DNS failed on dns-pm01, 42 ms)"]


def items():
    ts = (A.Transition(1, "peer_found", 0.0, "backup", "peer_found", "heard dns-pm01 again"),
          A.Transition(2, "failover", 1.5, "active", "peer_dns_failed", "DNS failed on dns-pm01",
                       "192.0.2.11", "dns-pm01", "dns-pm02", 0.042))
    return [state.entry(t, "dns-pm02", WALL + t.at) for t in ts]


@pytest.fixture
def setup(tmp_path):
    cfg = tmp_path / "c.yaml"
    sock, sdir = tmp_path / "ctl.sock", tmp_path / "state"
    cfg.write_text(EXAMPLE.read_text() + f"state_dir: {sdir}\ncontrol: {{socket: {sock}}}\n")
    return cfg, sock, sdir


def keep(sdir, cfg_path, history):
    """Write the state file as the daemon does (shell/state.py Keeper)."""
    async def go():
        k = state.Keeper(str(sdir), "dns-pm02", config.parse(cfg_path.read_text()), None, [])
        k.save(saved.Saved())
        for h in history:
            k.add(h)
        await k.flush()
    asyncio.run(go())


def test_without_a_daemon_it_reads_the_state_file_and_says_so(setup):
    cfg, sock, sdir = setup
    keep(sdir, cfg, items())
    r = run("history", "--config", cfg, "--node", "dns-pm02")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == LINES
    assert r.stderr == (f"dnspair: dnspair daemon is not running (no control socket at {sock}); "
                        f"the history dns-pm02 kept in {sdir}:\n")
    r = run("history", "--json", "--config", cfg, "--node", "dns-pm02")
    assert r.returncode == 0 and json.loads(r.stdout) == items()


def test_without_a_daemon_or_a_state_file_it_fails_in_one_line(setup):
    cfg, sock, sdir = setup
    r = run("history", "--config", cfg, "--node", "dns-pm01")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == (f"dnspair: dnspair daemon is not running (no control socket at {sock}); "
                        f"and no readable history for dns-pm01 in {sdir} (No such file or directory)\n")
    keep(sdir, cfg, [])
    r = run("history", "--config", cfg, "--node", "dns-pm02")
    assert r.returncode == 0 and r.stdout == "no transitions recorded\n"


def test_with_a_daemon_it_asks_the_daemon(setup):
    cfg, sock, sdir = setup
    keep(sdir, cfg, items()[:1])   # the file is not read while the daemon answers
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(sock))
    srv.listen(4)
    asked = []

    def answer():
        for _ in range(2):
            conn, _ = srv.accept()
            with conn:
                asked.append(json.loads(conn.makefile().readline()))
                conn.sendall(json.dumps({"ok": True, "history": items()}).encode() + b"\n")
    t = threading.Thread(target=answer, daemon=True)
    t.start()
    try:
        r = run("history", "--config", cfg)
        assert r.returncode == 0 and r.stderr == "" and r.stdout.splitlines() == LINES
        r = run("history", "--config", cfg, "--json")
        assert r.returncode == 0 and json.loads(r.stdout) == items()
    finally:
        t.join(10)
        srv.close()
    assert asked == [{"cmd": "history"}, {"cmd": "history"}]
