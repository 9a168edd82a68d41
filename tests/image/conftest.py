"""Builds the images once per test session (build.sh, as a user would) and exposes them.

Slow: a cold build makes the Debian base with the kernel under qemu-user; later builds reuse the
cached base (/var/cache/dnspair-build, or DNSPAIR_CACHE). Needs root, like build.sh.
"""
import lzma
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from imagehelpers import EXAMPLE, REPO  # noqa: E402

NODES = ("dns-pm01", "dns-pm02")


# The longer emulated runs, outside CI's 45 minutes (README: `./test.sh -m slow_image`): the Pi OS
# stand-in (its own base, build, content checks and boot), the extra virt boots of test_boot.py
# and the rolling upgrade on two emulated nodes (test_upgrade_qemu.py, also marked in its module).
SLOW = {"standin", "pios", "ro_vm", "edited_vm", "built_upgrade"}


def pytest_collection_modifyitems(config, items):
    # Everything here that needs a built image (the `built` fixture) is an image test.
    here = Path(__file__).resolve().parent
    for item in items:
        names = getattr(item, "fixturenames", ())
        if Path(str(item.fspath)).resolve().parent != here:
            continue
        if "built" in names or "built_mixed" in names or SLOW & set(names):
            item.add_marker(pytest.mark.image)
        if SLOW & set(names):
            item.add_marker(pytest.mark.slow_image)


class Built:
    def __init__(self, out, ssh_key, seconds, log, archs=None):
        self.out, self.ssh_key, self.seconds, self.log = out, ssh_key, seconds, log
        self.archs = archs or {}

    def arch(self, node):
        return self.archs.get(node, "arm64")

    def raw(self, node, dest):
        """The node's image, decompressed from the .img.xz the user would flash."""
        target = Path(dest) / f"{node}.img"
        if not target.exists():
            with lzma.open(self.out / f"{node}.img.xz") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 4 << 20)
        return target


def build(tmp_path_factory, name, archs=None, config=EXAMPLE):
    """build.sh as a user runs it; archs maps a node to --arch NODE=ARCH."""
    if os.geteuid() != 0:
        pytest.skip("image tests run build.sh, which needs root")
    work = tmp_path_factory.mktemp(name)
    out = work / "out"
    key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "image-test", "-f", str(key)],
                   check=True)
    started = time.monotonic()
    # xz -1: the test checks what is inside, not how small it packs; saves minutes on 2 cores.
    proc = subprocess.run([f"{REPO}/build.sh", "--config", str(config), "--ssh-key", f"{key}.pub",
                           "--out", str(out), "--xz-level", "1",
                           *[a for node, arch in (archs or {}).items()
                             for a in ("--arch", f"{node}={arch}")]],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=75 * 60,
                          # a usual login umask: the outputs must come out secret anyway
                          preexec_fn=lambda: os.umask(0o022))
    seconds = time.monotonic() - started
    (work / "build.log").write_text(proc.stdout)
    assert proc.returncode == 0, f"build.sh failed after {seconds:.0f}s:\n{proc.stdout[-4000:]}"
    print(f"\nimage build ({name}): {seconds:.0f}s", file=sys.stderr)
    return Built(out, key, seconds, proc.stdout, archs)


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    return build(tmp_path_factory, "image")


@pytest.fixture(scope="session")
def built_mixed(tmp_path_factory):
    """The seed's pair: dns-pm01 a Pi 3B (arm64), dns-pm02 a Pi 2B (armhf), one build, one key.

    Its config is the example's with timings for emulation: qemu's TCG runs these CPUs many times
    slower than the boards (an armhf node under load stalled 0.2-1 s at a time), so the
    example's 0.2 s dead time and 0.25 s DNS timeout would read every stall as a failure.
    """
    import yaml
    config = yaml.safe_load(open(EXAMPLE))
    config["heartbeat"] = {"interval": 0.5, "dead_time": 5.0, "suspect_after": 1.0}
    config["dns_check"].update(interval=1.0, timeout=3.0)
    config["failure_threshold"] = 3
    # One node scheduled, one not: build.sh writes and enables dnspair-upgrade.timer for dns-pm02
    # only (test_armhf.py), with the armhf image's own dnspair under qemu-user.
    config["upgrade"] = {"schedule": {"dns-pm02": "Thu *-*-* 03:30"}}
    path = tmp_path_factory.mktemp("mixed-config") / "dnspair.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return build(tmp_path_factory, "mixed", {"dns-pm02": "armhf"}, path)


@pytest.fixture(scope="session")
def built_upgrade(tmp_path_factory):
    """Both nodes arm64 (one base), with built_mixed's emulation timings and a long health
    bound: a bundle's venv installs in minutes under TCG (test_upgrade_qemu.py)."""
    import yaml
    config = yaml.safe_load(open(EXAMPLE))
    config["heartbeat"] = {"interval": 0.5, "dead_time": 5.0, "suspect_after": 1.0}
    config["dns_check"].update(interval=1.0, timeout=3.0)
    config["failure_threshold"] = 3
    config["upgrade"] = {"healthy_within": 1200}
    path = tmp_path_factory.mktemp("upgrade-config") / "dnspair.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return build(tmp_path_factory, "upgrade", None, path)
