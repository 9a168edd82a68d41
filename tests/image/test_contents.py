"""What is inside the built images, read from the .img.xz files build.sh wrote (mounted read-only),
with the image's own ARM binaries run in a chroot under qemu-user."""
import hashlib
import json
import os
import re
import stat
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import NODES
from imagehelpers import REPO, nodesettings

UNIT = "etc/systemd/system/dnspair.service"


class Mounted:
    def __init__(self, raw, loop, root):
        self.raw, self.loop, self.root = raw, loop, root

    def path(self, rel):
        return self.root / rel

    def link(self, rel):
        """Where a symlink in the image points (absolute targets mean the image's root, not ours)."""
        return os.readlink(self.root / rel)

    def text(self, rel):
        return self.path(rel).read_text()

    def chroot(self, *cmd):
        return subprocess.run(["chroot", str(self.root), *cmd], capture_output=True, text=True, timeout=300,
                              env={"PATH": "/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin",
                                   "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
                                   "SYSTEMD_LOG_LEVEL": "warning"})


def sh(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def mount_images(built, tmp_path_factory):
    """Both nodes' images: root partition mounted read-only at mnt, the FAT's files at mnt/boot/firmware."""
    undo, mounted = [], {}

    def mount(*args):
        """mount ARGS... TARGET, unmounted again (in reverse order) when the module is done."""
        sh("mount", *args)
        undo.append(["umount", args[-1]])

    try:
        for node in NODES:
            d = tmp_path_factory.mktemp(node)
            raw = built.raw(node, d)
            loop = sh("losetup", "-r", "-P", "-f", "--show", str(raw)).strip()
            undo.append(["losetup", "-d", loop])
            subprocess.run(["partx", "-a", loop], capture_output=True)  # no udev here: make p1/p2 appear
            root = d / "mnt"
            root.mkdir()
            mount("-o", "ro", f"{loop}p2", str(root))
            # The FAT is read with mtools (build machines' kernels may lack vfat) and bound in place.
            fat = d / "firmware"
            fat.mkdir()
            sh("mcopy", "-s", "-n", "-m", "-i", f"{raw}@@{4 << 20}", "::/*", str(fat))
            mount("--bind", "-o", "ro", str(fat), str(root / "boot/firmware"))
            mount("-t", "proc", "proc", str(root / "proc"))
            mount("--bind", "/dev", str(root / "dev"))
            for scratch in ("run", "tmp"):  # sshd -T and systemd-analyze want somewhere to write
                mount("-t", "tmpfs", "tmpfs", str(root / scratch))
            mounted[node] = Mounted(raw, loop, root)
        yield mounted
    finally:
        for cmd in reversed(undo):
            subprocess.run(cmd, capture_output=True)


@pytest.fixture(scope="module")
def images(built, tmp_path_factory):
    yield from mount_images(built, tmp_path_factory)


@pytest.fixture(scope="module")
def pm01(images):
    return images["dns-pm01"]


def test_outputs_have_checksums_bmaps_and_a_report(built):
    for node in NODES:
        xz = built.out / f"{node}.img.xz"
        digest, name = (built.out / f"{node}.img.xz.sha256").read_text().split()
        assert name == xz.name
        assert digest == hashlib.sha256(xz.read_bytes()).hexdigest()
        bmap = ET.parse(built.out / f"{node}.img.bmap").getroot()
        assert bmap.tag == "bmap" and int(bmap.findtext("MappedBlocksCount")) > 0
    report = (built.out / "build-report.txt").read_text()
    for line in open(os.path.join(REPO, "constraints.txt")):
        if line.startswith(("dnspython", "gpiozero", "PyYAML", "nagiosplugin")):
            name, version = line.strip().split("==")
            assert f"{name.lower()}=={version}" in report
    assert re.search(r"^linux-image-6\.\S+-arm64=", report, re.M)
    assert re.search(r"^bind9=1:9\.18", report, re.M)
    assert "dns-pm01.img (arm64):" in report and "MiB xz" in report
    assert "== arch arm64: dns-pm01 dns-pm02" in report


def test_the_output_is_as_secret_as_the_key_whatever_the_umask(built):
    # conftest builds under umask 022, where the outputs used to come out 0755/0644.
    assert stat.S_IMODE(built.out.stat().st_mode) == 0o700
    files = sorted(built.out.iterdir())
    assert {f.name for f in files} >= {f"{n}.img.xz{s}" for n in NODES for s in ("", ".sha256")}
    for f in files:
        assert f.is_file() and stat.S_IMODE(f.stat().st_mode) == 0o600, (f, oct(f.stat().st_mode))
    assert "is mode 0700 and its files 0600" in built.log and "as secret as the key" in built.log


def test_partitions_are_a_pi_boot_fat_and_an_ext4_root(pm01):
    table = json.loads(sh("sfdisk", "--json", str(pm01.raw)))["partitiontable"]
    assert table["label"] == "dos"
    p1, p2 = table["partitions"]
    assert p1["type"] == "c" and p1["start"] == 8192  # FAT32 LBA at 4 MiB: what the Pi's boot ROM reads
    assert p2["type"] == "83" and p2["start"] == p1["start"] + p1["size"]
    p1, p2 = sh("blkid", "-p", f"{pm01.loop}p1"), sh("blkid", "-p", f"{pm01.loop}p2")
    assert 'LABEL="RASPIFIRM"' in p1 and "vfat" in p1
    assert 'LABEL="RASPIROOT"' in p2 and "ext4" in p2
    assert sh("e2fsck", "-fn", f"{pm01.loop}p2") is not None  # raises if the file system has errors


def test_boot_partition_has_firmware_kernel_and_generated_config(pm01):
    fw = pm01.root / "boot/firmware"
    config = pm01.text("boot/firmware/config.txt")
    kernel = re.search(r"^kernel=(vmlinuz-\S+)$", config, re.M).group(1)
    initrd = re.search(r"^initramfs (initrd\.img-\S+)$", config, re.M).group(1)
    assert "arm_64bit=1" in config and "upstream_kernel=1" in config
    for f in (kernel, initrd, "bootcode.bin", "start4.elf", "fixup4.dat", "start.elf",
              "dnspair-node.txt",
              # upstream_kernel=1: the firmware looks for the mainline device tree names
              "bcm2837-rpi-3-b.dtb", "bcm2837-rpi-3-b-plus.dtb", "bcm2711-rpi-4-b.dtb",
              "bcm2837-rpi-zero-2-w.dtb"):
        assert (fw / f).is_file(), f
    # MODULES=list keeps the initrd small (MODULES=most made 35 MB and took ~20 min under qemu)
    assert (fw / initrd).stat().st_size < 20 << 20
    cmdline = pm01.text("boot/firmware/cmdline.txt").split()
    assert "root=LABEL=RASPIROOT" in cmdline and "net.ifnames=0" in cmdline
    assert "console=ttyS1,115200" in cmdline and "dnspair.overlayroot" not in cmdline
    listing = pm01.chroot("lsinitramfs", f"/boot/firmware/{initrd}")
    assert listing.returncode == 0, listing.stderr
    for mod in ("sdhci-iproc.ko", "/bcm2835.ko", "gpio-regulator.ko", "/fixed.ko", "dwc2.ko", "uas.ko",
                "virtio_blk.ko", "virtio_pci.ko", "ext4.ko", "overlay.ko"):
        assert mod in listing.stdout, mod
    assert "scripts/local-bottom/dnspair-overlayroot" in listing.stdout


def test_node_identity_comes_from_the_settings_file(images):
    for node, img in images.items():
        s = nodesettings.parse(img.text("boot/firmware/dnspair-node.txt"))
        assert s["NODE"] == node and s["INTERFACE"] == "eth0"
        assert img.text("etc/hostname") == f"{node}\n"
        keyfile = img.path("etc/NetworkManager/system-connections/dnspair-eth0.nmconnection")
        assert keyfile.read_text() == nodesettings.render_keyfile(s)
        assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
        assert img.text("etc/machine-id") == ""  # made at first boot, one per board
    assert images["dns-pm01"].text("boot/firmware/dnspair-node.txt").count("ADDRESS=192.0.2.1/24") == 1
    assert "ADDRESS=192.0.2.2/24" in images["dns-pm02"].text("boot/firmware/dnspair-node.txt")


def test_units_are_enabled(pm01):
    wants = pm01.root / "etc/systemd/system/multi-user.target.wants"
    for unit in ("named.service", "ssh.service", "NetworkManager.service"):
        assert pm01.link(wants / unit) == f"/lib/systemd/system/{unit}", unit
    assert pm01.link("etc/systemd/system/sysinit.target.wants/dnspair-node-settings.service") == \
        "/etc/systemd/system/dnspair-node-settings.service"
    assert pm01.link(wants / "dnspair.service") == "/" + UNIT
    assert pm01.text(UNIT) == open(os.path.join(REPO, "overlays", UNIT)).read()
    assert pm01.link("etc/systemd/system/local-fs.target.wants/dnspair-grow-root.service") == \
        "/etc/systemd/system/dnspair-grow-root.service"
    assert not os.path.lexists(wants / "systemd-networkd.service")
    # Rolling upgrades (docs/upgrade.md): the resume after a reboot, and /opt/dnspair a link to a
    # release (what `dnspair upgrade` switches); no timer without upgrade.schedule.
    assert pm01.link(wants / "dnspair-upgrade-resume.service") == \
        "/etc/systemd/system/dnspair-upgrade-resume.service"
    assert pm01.link("opt/dnspair").startswith("dnspair-releases/")
    assert not os.path.lexists(pm01.path("etc/systemd/system/dnspair-upgrade.timer"))


def test_the_firewall_is_installed_enabled_and_generated_for_each_node(images):
    for node, peer in (("dns-pm01", "192.0.2.2"), ("dns-pm02", "192.0.2.1")):
        img = images[node]
        assert img.path("usr/sbin/nft").is_file(), "nftables is in the image"
        # from step 12's .debs on top of the cached base: its libraries (libnftables1, ...) came
        # too. `nft --version` opens a netlink socket, which qemu-user does not emulate, so the
        # libraries are resolved instead; the booted tests run nft.
        r = img.chroot("ldd", "/usr/sbin/nft")
        assert r.returncode == 0 and "libnftables" in r.stdout and "not found" not in r.stdout, \
            r.stdout + r.stderr
        assert img.link("etc/systemd/system/sysinit.target.wants/dnspair-firewall.service") == \
            "/etc/systemd/system/dnspair-firewall.service"
        assert img.link("etc/systemd/system/multi-user.target.wants/dnspair-firewall.path") == \
            "/etc/systemd/system/dnspair-firewall.path"
        assert img.path("etc/dnspair/firewall.d/README").is_file()
        r = img.chroot("/usr/local/bin/dnspair", "firewall", "--node", node)
        assert r.returncode == 0, r.stderr
        assert f"ip saddr {peer} ip daddr " in r.stdout and "counter name dropped drop" in r.stdout


def test_one_fresh_key_per_build_shared_by_the_pair_and_per_node_host_keys(images):
    a, b = images["dns-pm01"], images["dns-pm02"]
    key = a.path("etc/dnspair/authkey")
    st = key.stat()
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600
    assert re.fullmatch(r"[0-9a-f]{64}\n", key.read_text())
    assert key.read_text() == b.text("etc/dnspair/authkey")
    assert a.text("etc/ssh/ssh_host_ed25519_key.pub") != b.text("etc/ssh/ssh_host_ed25519_key.pub")
    assert a.text("etc/bind/rndc.key") != b.text("etc/bind/rndc.key")
    assert a.text("etc/dnspair/dnspair.yaml") == open(os.path.join(REPO, "example/dnspair.yaml")).read()


def test_ssh_takes_the_users_key_and_no_passwords(built, pm01):
    assert pm01.text("root/.ssh/authorized_keys") == (built.ssh_key.parent / "id_ed25519.pub").read_text()
    for line in pm01.text("etc/shadow").splitlines():
        name, password = line.split(":")[:2]
        assert password.startswith(("*", "!")), f"{name} has a password"
    effective = pm01.chroot("sh", "-c", "mkdir -p /run/sshd && exec sshd -T")
    assert effective.returncode == 0, effective.stderr
    assert "passwordauthentication no" in effective.stdout
    assert "kbdinteractiveauthentication no" in effective.stdout
    assert "permitrootlogin without-password" in effective.stdout


def test_sd_card_care(pm01):
    assert "Storage=volatile" in pm01.text("etc/systemd/journald.conf.d/dnspair.conf")
    watchdog = pm01.text("etc/systemd/system.conf.d/dnspair-watchdog.conf")
    assert re.search(r"^RuntimeWatchdogSec=\d+s$", watchdog, re.M)
    fstab = [line.split() for line in pm01.text("etc/fstab").splitlines()
             if line and not line.startswith("#")]
    assert [f[2] for f in fstab if f[1] == "/"] == ["ext4"]
    # a slow or missing FAT must not send the node to emergency mode (no console login exists)
    assert "nofail" in [f[3] for f in fstab if f[1] == "/boot/firmware"][0].split(",")
    assert not [f for f in fstab if f[2] == "swap"]
    assert not pm01.path("swapfile").exists() and not pm01.path("var/swap").exists()


@pytest.mark.parametrize("node", NODES)
def test_bind_config_checks_in_the_image(images, node):
    img = images[node]
    r = img.chroot("named-checkconf", "-z")
    assert r.returncode == 0, r.stdout + r.stderr
    options = img.text("etc/bind/named.conf.options")
    assert "listen-on { any; };" in options and "allow-recursion { localhost; localnets; };" in options
    assert "listen-on-v6 { any; };" in options, "IPv6 VIPs are answered too"
    assert f'server-id "{node}";' in options   # per node, never replicated
    local = img.text("etc/bind/named.conf.local")
    if node == "dns-pm01":   # the example's primary: its zones load from the image's seed files
        assert "zone home.arpa/IN: loaded serial 1" in r.stdout, r.stdout
        assert "zone catalog.dnspair.invalid/IN: loaded serial 1" in r.stdout, r.stdout
        assert 'zone "home.arpa" { type primary;' in local
    else:                    # the secondary learns its zones from the catalog zone
        assert 'catalog-zones { zone "catalog.dnspair.invalid" default-primaries { 192.0.2.1 key' in options
        assert "home.arpa" not in local
    key = img.path("etc/bind/dnspair.key")
    assert key.stat().st_uid == 0 and stat.S_IMODE(key.stat().st_mode) == 0o640
    assert key.read_text() == images["dns-pm01"].text("etc/bind/dnspair.key")
    assert img.text("etc/dnspair/authkey").strip() not in key.read_text()
    group = [ln for ln in img.text("etc/group").splitlines() if ln.startswith("bind:")][0]
    bind_gid = int(group.split(":")[2])
    zones = img.path("var/lib/bind/dnspair")
    assert zones.stat().st_gid == bind_gid and zones.stat().st_mode & 0o020
    assert not img.path("usr/local/lib/dnspair-image/bind").exists()


def test_a_board_without_a_clock_can_still_set_it(built, pm01):
    # systemd moves the clock forward to clock-epoch's mtime at boot: the build's date.
    epoch = pm01.path("usr/lib/clock-epoch").stat().st_mtime
    image_written = (built.out / "dns-pm01.img.xz").stat().st_mtime
    assert image_written - built.seconds - 60 <= epoch <= image_written
    # With that clock DNSSEC fails, so the NTP pool's names are not validated ...
    options = pm01.text("etc/bind/named.conf.options")
    assert re.search(r'^\s*validate-except \{ "ntp\.org"; \};$', options, re.M), options
    # ... and the first NTP sync flushes what was cached under the wrong time.
    assert pm01.link("etc/systemd/system/multi-user.target.wants/dnspair-dns-clock.path") == \
        "/etc/systemd/system/dnspair-dns-clock.path"
    assert "ExecStart=/usr/sbin/rndc flush" in pm01.text("etc/systemd/system/dnspair-dns-clock.service")


def test_dnspair_accepts_the_config_inside_the_image(pm01):
    r = pm01.chroot("/usr/local/bin/dnspair", "check-config", "--key", "/etc/dnspair/dnspair.yaml")
    assert r.returncode == 0, r.stdout + r.stderr
    for tool in ("dnspair", "check_dnspair"):
        assert pm01.link(f"usr/local/bin/{tool}") == f"/opt/dnspair/bin/{tool}"
        assert pm01.path(f"opt/dnspair/bin/{tool}").is_file()


def test_image_python_packages_match_constraints(pm01):
    assert_pinned_versions(pm01)


def assert_pinned_versions(img):
    """The image's venv holds exactly constraints.txt's versions (what the tests ran)."""
    pins = dict(line.strip().split("==") for line in open(os.path.join(REPO, "constraints.txt"))
                if "==" in line and not line.startswith("#"))
    names = ["dnspython", "gpiozero", "PyYAML", "systemd-python", "nagiosplugin",
             "colorzero", "lgpio"]
    code = "import importlib.metadata as m, sys; print(' '.join(m.version(n) for n in sys.argv[1:]))"
    r = img.chroot("/opt/dnspair/bin/python", "-c", code, *names)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [pins[n] for n in names]
    # the test-only libraries are not on the card (the daemon builds its netlink and ARP itself)
    r = img.chroot("/opt/dnspair/bin/python", "-c",
                   "import importlib.util as u; print([n for n in ('pyroute2', 'scapy') if u.find_spec(n)])")
    assert r.stdout.strip() == "[]", r.stdout + r.stderr


def test_units_pass_systemd_analyze_verify(pm01):
    units = ["/etc/systemd/system/dnspair-node-settings.service",
             "/etc/systemd/system/dnspair-grow-root.service",
             "/etc/systemd/system/dnspair-dns-clock.path",
             "/etc/systemd/system/dnspair-dns-clock.service",
             "/etc/systemd/system/dnspair-firewall.service", "/etc/systemd/system/dnspair-firewall.path",
             "/" + UNIT]
    r = pm01.chroot("systemd-analyze", "verify", *units)
    assert r.returncode == 0, r.stdout + r.stderr


def test_nrpe_serves_the_dnspair_check(pm01):
    assert pm01.link("etc/systemd/system/multi-user.target.wants/nagios-nrpe-server.service") == \
        "/lib/systemd/system/nagios-nrpe-server.service"
    assert "command[check_dnspair]=/usr/local/bin/check_dnspair" in pm01.text("etc/nagios/nrpe.d/dnspair.cfg")
    groups = {g.split(":")[0]: g.split(":")[3].split(",") for g in pm01.text("etc/group").splitlines()}
    # NRPE reads the status (the monitor group) and nothing more: not adm, not the admin group
    assert "nagios" in groups["dnspair-monitor"]
    assert "nagios" not in groups["adm"] and "nagios" not in groups["dnspair-admin"]


def test_gpio_the_unit_may_open_is_the_header_chip_only(pm01):
    unit = pm01.text(UNIT)
    allowed = [line for line in unit.splitlines() if line.startswith(("DeviceAllow=", "DevicePolicy="))]
    assert allowed == ["DevicePolicy=closed", "DeviceAllow=/dev/dnspair-gpiochip rw"]
    assert "Environment=LG_WD=%t/dnspair" in unit and "RuntimeDirectory=dnspair" in unit
    rule = pm01.text("etc/udev/rules.d/60-dnspair-gpio.rules")
    assert 'DRIVERS=="pinctrl-bcm2835|pinctrl-rp1", SYMLINK+="dnspair-gpiochip"' in rule
    # Debian's gpiod, to see the lines dnspair holds (gpioinfo) on the board
    r = pm01.chroot("gpioinfo", "--version")
    assert r.returncode == 0 and "libgpiod" in r.stdout, r.stdout + r.stderr
    assert pm01.chroot("sh", "-c", "command -v growpart; command -v resize2fs").stdout.split() == \
        ["/usr/bin/growpart", "/usr/sbin/resize2fs"]
