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
