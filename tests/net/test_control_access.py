"""Who may do what on a live daemon's control socket, tried as real unprivileged users of this
machine (made for the test, removed after): the admin group changes state, the monitor group
reads the status, anyone else (the old `adm` group too) is refused in one line naming the group."""
import os
import subprocess
from pathlib import Path

import pytest

from pair import Pair

TAG = f"{os.getpid() % 100000}"
ADMIN_G, MONITOR_G = f"dpta{TAG}", f"dptm{TAG}"
USERS = {"admin": (f"dpua{TAG}", ADMIN_G), "monitor": (f"dpum{TAG}", MONITOR_G),
         "nobody": (f"dpuo{TAG}", None), "adm": (f"dpud{TAG}", "adm")}
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def users():
    made_groups, made_users = [], []
    try:
        for g in (ADMIN_G, MONITOR_G):
            subprocess.run(["groupadd", "--system", g], check=True)
            made_groups.append(g)
        for name, group in USERS.values():
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                            *(["-G", group] if group else []), name], check=True)
            made_users.append(name)
        yield
    finally:
        for u in made_users:
            subprocess.run(["userdel", u], capture_output=True)
        for g in made_groups:
            subprocess.run(["groupdel", g], capture_output=True)


def as_user(lab, role, *args, tool="dnspair"):
    exe = Path(lab.dnspair_command()[0]).parent / tool
    return subprocess.run(["runuser", "-u", USERS[role][0], "--", "env", f"PYTHONPATH={SRC}",
                           str(exe), *map(str, args)], capture_output=True, text=True, timeout=60)


def test_each_group_can_do_what_its_role_allows_and_no_more(lab, users):
    os.chmod(lab.workdir, 0o755)  # the users must reach the config and the socket, not the key
    p = Pair(lab, control=f"admin_group: {ADMIN_G}, monitor_group: {MONITOR_G}")
    p.start()
    p.wait_served("192.0.2.11", "node1")
    cfg = p.configs["node1"]
    assert oct(os.stat(lab.workdir / "authkey").st_mode & 0o777) == "0o600"

    # monitor: reads the status (the CLI and the Nagios plugin), changes nothing
    r = as_user(lab, "monitor", "status", "--json", "--config", cfg)
    assert r.returncode == 0 and '"dns-pm01"' in r.stdout, r.stderr
    r = as_user(lab, "monitor", "--config", cfg, "--no-dns", tool="check_dnspair")
    assert r.returncode == 0 and r.stdout.startswith("DNSPAIR OK"), r.stdout + r.stderr
    # the transition history (main's `dnspair history`) is read-only too
    r = as_user(lab, "monitor", "history", "--config", cfg)
    assert r.returncode == 0 and "192.0.2.11" in r.stdout, r.stdout + r.stderr
    for cmd in (["standby"], ["unstandby"], ["move", "192.0.2.11", "dns-pm02"], ["cleanup"]):
        r = as_user(lab, "monitor", *cmd, "--config", cfg)
        assert (r.returncode, r.stderr) == (1, f"dnspair: permission denied: {cmd[0]} needs root "
                                               f"or group {ADMIN_G}\n"), (cmd, r)
    assert not p.me("node1")["standby"] and p.owners()["192.0.2.11"] == "dns-pm01"

    # neither group (and adm, which used to be the control group): refused, even status
    for role in ("nobody", "adm"):
        for cmd in (["status"], ["history"], ["standby"]):
            r = as_user(lab, role, *cmd, "--config", cfg)
            assert (r.returncode, r.stderr) == (
                1, f"dnspair: permission denied: the control socket needs root or group {MONITOR_G} "
                   f"(status) or {ADMIN_G} (every command)\n"), (role, cmd, r)
    assert not p.me("node1")["standby"]

    # admin: changes state
    r = as_user(lab, "admin", "standby", "--config", cfg)
    assert r.returncode == 0, r.stderr
    p.wait_served("192.0.2.11", "node2")
    assert p.me("node1")["standby"]
    assert as_user(lab, "admin", "unstandby", "--config", cfg).returncode == 0
    assert as_user(lab, "admin", "cleanup", "--config", cfg).returncode == 0
    p.wait_served("192.0.2.11", "node1")
    assert p.status("node1")["control_rejected"] >= 8  # each refusal above is counted
