"""The seed's mixed pair from one build: dns-pm01 for a Pi 3B (arm64), dns-pm02 for a Pi 2B (armhf,
`--arch dns-pm02=armhf`). What is inside the armhf image; test_pair.py boots the two together."""
import os
import re

import pytest

from imagehelpers import REPO
from test_contents import mount_images, sh


@pytest.fixture(scope="module")
def mixed(built_mixed, tmp_path_factory):
    yield from mount_images(built_mixed, tmp_path_factory)


@pytest.fixture(scope="module")
def pm02(mixed):
    return mixed["dns-pm02"]


def test_report_names_each_nodes_arch_and_one_key(built_mixed):
    report = (built_mixed.out / "build-report.txt").read_text()
    assert "dns-pm01.img (arm64):" in report and "dns-pm02.img (armhf):" in report
    assert report.count("dns-pm01.img (") == report.count("dns-pm02.img (") == 1
    assert "== arch arm64: dns-pm01" in report and "== arch armhf: dns-pm02" in report
    assert re.search(r"^linux-image-6\.\S+-armmp=", report, re.M)
    assert len(re.findall(r"key id \(", report)) == 1


def test_both_arches_share_the_builds_key(mixed):
    keys = {node: img.path("etc/dnspair/authkey").read_bytes() for node, img in mixed.items()}
    assert keys["dns-pm01"] == keys["dns-pm02"] and len(keys["dns-pm01"].strip()) == 64


def test_both_nodes_start_their_clocks_at_the_same_build_date(mixed):
    # Each arch's tree is made minutes apart; a clock epoch per tree put dns-pm02's clock 109 s
    # ahead of dns-pm01's, on top of the boot gap, against TSIG's 300 s between the two binds.
    epochs = {node: img.path("usr/lib/clock-epoch").stat().st_mtime for node, img in mixed.items()}
    assert epochs["dns-pm01"] == epochs["dns-pm02"], epochs


def elf_machine(path):
    """(class, machine) from an ELF header: (2, 0xB7) is 64-bit AArch64, (1, 0x28) 32-bit ARM."""
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF"
    return head[4], int.from_bytes(head[18:20], "little")


def test_each_image_holds_its_own_arch(mixed):
    python = "usr/bin/python3.11"
    assert elf_machine(mixed["dns-pm01"].path(python)) == (2, 0xB7)
    assert elf_machine(mixed["dns-pm02"].path(python)) == (1, 0x28)
    assert mixed["dns-pm02"].chroot("dpkg", "--print-architecture").stdout.strip() == "armhf"


def test_pi2_boot_files_and_drivers(pm02):
    fw = pm02.root / "boot/firmware"
    config = pm02.text("boot/firmware/config.txt")
    kernel = re.search(r"^kernel=(vmlinuz-\S+-armmp)$", config, re.M).group(1)
    initrd = re.search(r"^initramfs (initrd\.img-\S+-armmp)$", config, re.M).group(1)
    assert "arm_64bit=1" not in config
    for f in (kernel, initrd, "bootcode.bin", "start.elf", "fixup.dat", "bcm2836-rpi-2-b.dtb",
              "dnspair-node.txt"):
        assert (fw / f).is_file(), f
    cmdline = pm02.text("boot/firmware/cmdline.txt").split()
    assert "root=LABEL=RASPIROOT" in cmdline and "net.ifnames=0" in cmdline
    # The Pi 2B's GPIO header UART is the PL011.
    assert "console=ttyAMA0,115200" in cmdline
    listing = pm02.chroot("lsinitramfs", f"/boot/firmware/{initrd}")
    assert listing.returncode == 0, listing.stderr
    for mod in ("/bcm2835.ko", "dwc2.ko", "usb-storage.ko", "virtio_blk.ko", "ext4.ko", "overlay.ko"):
        assert mod in listing.stdout, mod
    # The Pi 2B's Ethernet (LAN9514 on USB) and its watchdog, which systemd drives.
    kver = kernel.removeprefix("vmlinuz-")
    mods = sh("find", str(pm02.path(f"usr/lib/modules/{kver}")), "-name", "*.ko*")
    assert "/smsc95xx.ko" in mods and "/bcm2835_wdt.ko" in mods


def test_dnspair_runs_in_the_armhf_image(pm02):
    check = pm02.chroot("/usr/local/bin/dnspair", "check-config", "--key", "/etc/dnspair/dnspair.yaml")
    assert check.returncode == 0, check.stdout + check.stderr
    # PyPI has no armv7 lgpio wheel: build.sh built one from the sdist (image/12-extras.sh).
    pins = dict(line.strip().split("==") for line in open(os.path.join(REPO, "constraints.txt"))
                if "==" in line and not line.startswith("#"))
    freeze = pm02.chroot("/opt/dnspair/bin/python", "-m", "pip", "freeze", "--local")
    assert f"gpiozero=={pins['gpiozero']}" in freeze.stdout and f"lgpio=={pins['lgpio']}" in freeze.stdout
    # lgpio's C library is linked into the module (no liblgpio.so in the image) and loads here
    r = pm02.chroot("sh", "-c", "cd /tmp && LG_WD=/tmp /opt/dnspair/bin/python -c "
                    "'import lgpio; print(lgpio.LGPIO_PY_VERSION)'")
    assert r.returncode == 0, r.stdout + r.stderr
    assert pm02.chroot("gpioinfo", "--version").returncode == 0
    # nftables from step 12's armhf .debs: its libraries resolve (`nft` itself opens a netlink
    # socket at start, which qemu-user does not emulate; the booted tests run it)
    r = pm02.chroot("ldd", "/usr/sbin/nft")
    assert r.returncode == 0 and "libnftables" in r.stdout and "not found" not in r.stdout, r.stdout
    named = pm02.chroot("named-checkconf", "-z")
    assert named.returncode == 0, named.stdout + named.stderr


def test_the_scheduled_node_alone_has_its_upgrade_timer_enabled(mixed):
    # upgrade.schedule names dns-pm02 only (conftest.built_mixed): build.sh wrote its timer.
    unit = "etc/systemd/system/dnspair-upgrade.timer"
    wants = "etc/systemd/system/timers.target.wants/dnspair-upgrade.timer"
    pm01, pm02 = mixed["dns-pm01"], mixed["dns-pm02"]
    assert "\nOnCalendar=Thu *-*-* 03:30\n" in pm02.text(unit)
    assert "\nUnit=dnspair-upgrade.service\n" in pm02.text(unit)
    assert pm02.link(wants) == "../dnspair-upgrade.timer"
    assert not os.path.lexists(pm01.path(unit)) and not os.path.lexists(pm01.path(wants))
