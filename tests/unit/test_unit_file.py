"""The shipped systemd unit: verified by systemd itself and holding only what the daemon needs."""
import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "overlays/etc/systemd/system/dnspair.service"


def unit():
    p = configparser.ConfigParser(strict=False, interpolation=None)
    p.optionxform = str
    p.read(UNIT)
    return p


def test_unit_is_notify_restarts_and_has_a_crash_release_hook():
    s = unit()["Service"]
    assert s["Type"] == "notify"
    assert s["Restart"] == "always"
    assert "WatchdogSec" in s
    assert s["ExecStopPost"].endswith("dnspair release --config /etc/dnspair/dnspair.yaml")
    assert s["CapabilityBoundingSet"].split() == ["CAP_NET_ADMIN", "CAP_NET_RAW"]
    for hardening in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "RestrictNamespaces"):
        assert hardening in s


def test_file_limit_is_set_far_above_what_the_capped_daemon_can_use():
    from dnspair.shell import control, http
    limit = unit()["Service"]["LimitNOFILE"]
    assert limit.isdigit(), f"one number, soft = hard: {limit}"
    worst = 32 + control.MAX_CLIENTS + http.MAX_CLIENTS   # sockets, files, libraries + clients
    assert int(limit) >= 16 * worst, (limit, worst)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path):
    # The unit names /opt/dnspair (the image's venv); point it at this test's interpreter's dnspair.
    exe = Path(sys.executable).parent / "dnspair"
    text = UNIT.read_text().replace("/opt/dnspair/bin/dnspair", str(exe))
    (tmp_path / "dnspair.service").write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / "dnspair.service")],
                       capture_output=True, text=True)
    problems = [line for line in r.stderr.splitlines()
                if "dnspair.service" in line and "named.service" not in line]
    assert r.returncode == 0 and not problems, r.stderr


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_upgrade_units_and_a_rendered_timer_verify(tmp_path):
    from dnspair.core import config
    exe = str(Path(sys.executable).parent / "dnspair")
    names = ["dnspair.service", "dnspair-upgrade.service", "dnspair-upgrade-resume.service"]
    for name in names:
        text = (UNIT.parent / name).read_text().replace("/opt/dnspair/bin/dnspair", exe)
        (tmp_path / name).write_text(text)
    cfg = config.parse((UNIT.parents[4] / "example/dnspair.yaml").read_text()
                       + '\nupgrade:\n  schedule: {dns-pm01: "Tue *-*-* 03:30", dns-pm02: "Thu,Sat 04:00"}\n')
    timer = config.timer_unit("dns-pm02", cfg.upgrade.calendar("dns-pm02"))
    (tmp_path / "dnspair-upgrade.timer").write_text(timer)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", *(str(tmp_path / n) for n in
                                                                   [*names, "dnspair-upgrade.timer"])],
                       capture_output=True, text=True)
    problems = [line for line in r.stderr.splitlines() if "dnspair" in line and "named.service" not in line]
    assert r.returncode == 0 and not problems, r.stderr
    assert "OnCalendar=Thu,Sat 04:00" in (tmp_path / "dnspair-upgrade.timer").read_text()
    r = subprocess.run(["systemd-analyze", "calendar", "Thu,Sat 04:00"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_the_resume_unit_runs_only_with_a_job_and_after_the_daemon():
    p = configparser.ConfigParser(strict=False, interpolation=None)
    p.optionxform = str
    p.read(UNIT.parent / "dnspair-upgrade-resume.service")
    assert p["Unit"]["ConditionPathExists"] == "/var/lib/dnspair/upgrade.json"
    assert "dnspair.service" in p["Unit"]["After"] and p["Service"]["Type"] == "oneshot"
    assert p["Service"]["ExecStart"].endswith("dnspair upgrade --resume")


def test_upgrade_units_survive_the_restart_of_dnspair_they_cause():
    # Requires=/BindsTo= on dnspair.service would stop or restart the upgrade itself when it
    # restarts the daemon onto a new release.
    for name in ("dnspair-upgrade.service", "dnspair-upgrade-resume.service"):
        p = configparser.ConfigParser(strict=False, interpolation=None)
        p.optionxform = str
        p.read(UNIT.parent / name)
        unit = p["Unit"]
        assert "dnspair.service" in unit.get("Wants", ""), name
        for key in ("Requires", "BindsTo", "PartOf", "Requisite"):
            assert "dnspair.service" not in unit.get(key, ""), (name, key)


def test_the_unit_holds_the_hardening_of_docs_security():
    """What docs/security.md promises for the daemon's unit, line by line."""
    s = unit()["Service"]
    raw = UNIT.read_text()
    assert s["ProcSubset"] == "pid"
    assert s["RestrictAddressFamilies"].split() == [
        "AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET"]   # AF_INET6: IPv6 VIPs, links
    assert "SystemCallFilter=@system-service\n" in raw and "SystemCallFilter=~@privileged @resources\n" in raw
    assert "IPAddressDeny=any\n" in raw and "IPAddressAllow=localhost\n" in raw
    assert "Group" not in s and "adm" not in raw.replace("admin", ""), "the adm group is no longer used"
    assert s["RuntimeDirectoryMode"] == "0755"
    deps = unit()["Unit"]
    assert "dnspair-firewall.service" in deps["Wants"] and "dnspair-firewall.service" in deps["After"]


def exposure(path):
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(path)],
                       capture_output=True, text=True)
    import re
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    return float(m.group(1))


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_exposure_is_what_docs_security_records_and_at_most_2_2(tmp_path):
    """systemd-analyze's figure for the shipped unit, and for the unit as it runs (with the
    allow list dnspair-firewall.service adds), equal the ones docs/security.md shows."""
    import re
    doc = (UNIT.parents[4] / "docs" / "security.md").read_text()
    shipped = exposure(UNIT)
    text = UNIT.read_text().replace("IPAddressAllow=localhost\n",
                                    "IPAddressAllow=localhost 192.0.2.1 192.0.2.2 192.0.2.11 192.0.2.12\n")
    (tmp_path / "dnspair.service").write_text(text)
    running = exposure(tmp_path / "dnspair.service")
    assert shipped <= running <= 2.2, (shipped, running)   # it was 2.7 before this hardening
    assert re.search(rf"exposure\D+{shipped}\b", doc) and re.search(rf"running\D+{running}\b", doc), \
        (shipped, running)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_firewall_units_verify_and_order_before_the_daemon(tmp_path):
    d = UNIT.parent
    exe = Path(sys.executable).parent / "dnspair"
    for name in ("dnspair.service", "dnspair-firewall.service", "dnspair-firewall.path"):
        (tmp_path / name).write_text((d / name).read_text().replace("/opt/dnspair/bin/dnspair", str(exe)))
    units = [str(tmp_path / n) for n in ("dnspair-firewall.service", "dnspair-firewall.path")]
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True)
    problems = [line for line in r.stderr.splitlines() if "dnspair-firewall" in line]
    assert r.returncode == 0 and not problems, r.stderr
    fw = configparser.ConfigParser(strict=False, interpolation=None)
    fw.optionxform = str
    fw.read(d / "dnspair-firewall.service")
    assert "dnspair.service" in fw["Unit"]["Before"] and "network-pre.target" in fw["Unit"]["Before"]
    assert fw["Service"]["ExecStart"].endswith("dnspair firewall --apply --config /etc/dnspair/dnspair.yaml")
    path = (d / "dnspair-firewall.path").read_text()
    assert "PathChanged=/etc/dnspair/dnspair.yaml" in path and "PathChanged=/etc/dnspair/firewall.d" in path


def test_grow_root_keeps_its_temporary_files_out_of_tmp():
    # It runs before local-fs.target: tmp.mount may mount a tmpfs over /tmp while growpart has its
    # temporary directory there (a boot under load failed so). %t is /run for a system unit.
    grow = Path(UNIT).with_name("dnspair-grow-root.service")
    p = configparser.ConfigParser(strict=False, interpolation=None)
    p.optionxform = str
    p.read(grow)
    s = p["Service"]
    assert p["Unit"]["DefaultDependencies"] == "no"
    assert s["Environment"] == f"TMPDIR=%t/{s['RuntimeDirectory']}"
    script = (UNIT.parents[3] / "usr/local/lib/dnspair-image/grow-root").read_text()
    assert "/tmp" not in script and "TMPDIR" not in script  # nothing overrides the unit's


def test_writable_directories_are_the_defaults_docs_config_md_names():
    """docs/config.md says a state_dir/runtime_dir other than the defaults is read-only under
    this unit: true while these are the only writable paths it grants."""
    from dnspair.core import config
    s = unit()["Service"]
    assert s["ProtectSystem"] == "strict" and s["ProtectHome"] == "yes"
    assert not any(k in s for k in ("ReadWritePaths", "LogsDirectory", "CacheDirectory"))
    assert s["StateDirectory"] == "dnspair" and s["RuntimeDirectory"] == "dnspair"
    root = UNIT.parents[4]
    cfg = config.parse((root / "example" / "dnspair.yaml").read_text())
    assert (cfg.state_dir, cfg.control.socket) == ("/var/lib/dnspair", "/run/dnspair/control.sock")
    doc = " ".join((root / "docs" / "config.md").read_text().split())
    assert "a `state_dir` outside `/var/lib/dnspair` cannot be written" in doc
