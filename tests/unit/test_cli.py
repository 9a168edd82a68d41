"""The dnspair command as a user meets it: exit codes and one-line errors."""
import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "example" / "dnspair.yaml"


def run(*args):
    return subprocess.run([sys.executable, "-m", "dnspair", *map(str, args)], capture_output=True,
                          text=True, timeout=60)


def test_check_config_accepts_the_example():
    r = run("check-config", EXAMPLE)
    assert r.returncode == 0, r.stderr
    assert "ok (cluster clst-01, nodes dns-pm01 and dns-pm02, 2 VIPs" in r.stdout


def test_check_config_reports_every_problem_one_line_each(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("failback: manual", "failback: later")
                   .replace("type: A", "type: B") + "extra: 1\n")
    r = run("check-config", bad)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"dnspair: {bad}:") for line in lines)
    assert r.stdout == ""


def test_check_config_missing_file_and_unknown_node(tmp_path):
    r = run("check-config", tmp_path / "nope.yaml")
    assert r.returncode == 2 and "cannot read" in r.stderr and len(r.stderr.splitlines()) == 1
    r = run("check-config", EXAMPLE, "--node", "dns-pm09")
    assert r.returncode == 1 and "dns-pm09" in r.stderr


def test_keygen_writes_a_root_only_key_and_never_overwrites(tmp_path):
    key = tmp_path / "k" / "authkey"
    r = run("keygen", "--out", key)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first = key.read_text()
    assert len(bytes.fromhex(first.strip())) == 32
    r = run("keygen", "--out", key)
    assert r.returncode == 1 and "exists" in r.stderr and key.read_text() == first
    assert run("keygen", "--out", key, "--force").returncode == 0
    assert key.read_text() != first


def test_a_key_readable_by_others_is_refused(tmp_path):
    key = tmp_path / "authkey"
    assert run("keygen", "--out", key).returncode == 0
    cfg = tmp_path / "c.yaml"
    cfg.write_text(EXAMPLE.read_text().replace("/etc/dnspair/authkey", str(key))
                   + "control: {admin_group: root, monitor_group: root}\n")
    assert run("check-config", cfg, "--key").returncode == 0
    os.chmod(key, 0o644)
    r = run("check-config", cfg, "--key")
    assert r.returncode == 2 and "chmod 600" in r.stderr
    r = run("daemon", "--config", cfg, "--node", "dns-pm01")
    assert r.returncode == 2 and "accessible by group or others" in r.stderr


def test_daemon_refuses_a_host_that_is_not_a_node():
    r = run("daemon", "--config", EXAMPLE, "--node", "somebody")
    assert r.returncode == 2 and "not a node" in r.stderr


def test_commands_without_a_daemon_fail_in_one_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(EXAMPLE.read_text() + f"control: {{socket: {tmp_path}/none.sock}}\n")
    for cmd in (["status"], ["status", "--json"], ["cleanup"], ["standby"],
                ["move", "192.0.2.11", "dns-pm02"]):
        r = run(*cmd, "--config", cfg)
        assert r.returncode == 1, cmd
        assert r.stderr.strip() == ("dnspair: dnspair daemon is not running "
                                    f"(no control socket at {tmp_path}/none.sock)")


def test_bad_usage_exits_non_zero():
    assert run().returncode == 2
    assert run("frobnicate").returncode == 2
    assert run("move", "192.0.2.11").returncode == 2


def test_check_config_finds_a_missing_control_group_and_a_non_socket_path(tmp_path):
    key = tmp_path / "authkey"
    assert run("keygen", "--out", key).returncode == 0
    cfg = tmp_path / "c.yaml"
    sock = tmp_path / "control.sock"
    base = EXAMPLE.read_text().replace("/etc/dnspair/authkey", str(key))
    cfg.write_text(base + f"control: {{socket: {sock}, admin_group: dnspair-test-nogroup, "
                          "monitor_group: root}\n")
    r = run("check-config", cfg, "--key")
    assert r.returncode == 2, r
    assert r.stderr == (f"dnspair: {cfg}: control.admin_group: group 'dnspair-test-nogroup' does not "
                        "exist on this host (groupadd --system dnspair-test-nogroup)\n")
    cfg.write_text(base + f"control: {{socket: {sock}, admin_group: root, monitor_group: root}}\n")
    sock.write_text("someone's file\n")
    r = run("check-config", cfg, "--key")
    assert r.returncode == 2 and "control.socket:" in r.stderr and "is not a socket" in r.stderr, r
    assert r.stderr.count("\n") == 1 and sock.read_text() == "someone's file\n"


def test_an_old_control_group_key_is_one_line_from_check_config(tmp_path):
    cfg = tmp_path / "old.yaml"
    cfg.write_text(EXAMPLE.read_text() + "control:\n  group: adm\n")
    r = run("check-config", cfg)
    assert r.returncode == 2, r
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"{cfg}:" in r.stderr and "control.group: no longer used: give control.admin_group" in r.stderr
