"""build.sh --base: a Raspberry Pi OS Lite 64-bit bookworm image as the base.

Raspberry Pi's servers are unreachable here, so the base is a stand-in (pios_standin.py: Debian's
arm64 packages shaped like Pi OS Lite). Bad inputs are refused with one line and leave nothing
behind; the pair built from the stand-in holds the same appliance as the Debian path; one node
boots under qemu-system-aarch64 -M virt from the kernel8.img/initramfs8 on its FAT.
"""
import hashlib
import json
import os
import re
import stat
import subprocess
import time

import pytest

import pios_standin
from conftest import NODES, Built
from imagehelpers import EXAMPLE, REPO, nodesettings
from test_boot import booted
from test_contents import assert_pinned_versions, mount_images, sh

CARD = 8 << 30  # the card the booted node's image is written to

pytestmark = [pytest.mark.image, pytest.mark.skipif(os.geteuid() != 0, reason="build.sh needs root")]

ELF64 = b"\x7fELF\x02\x01\x01" + bytes(11) + b"\xb7\x00" + bytes(44)  # aarch64
ELF32 = b"\x7fELF\x01\x01\x01" + bytes(11) + b"\x28\x00" + bytes(32)  # 32-bit ARM (Raspbian)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build(*args, env=None, timeout=120):
    return subprocess.run([f"{REPO}/build.sh", *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


def one_error_line(r):
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("build.sh: error: ")]
    assert len(errors) == 1, r.stderr
    return errors[0]


@pytest.fixture(scope="module")
def pubkey(tmp_path_factory):
    key = tmp_path_factory.mktemp("key") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pios-test", "-f", str(key)],
                   check=True)
    return key


def tiny_image(d, *, rpi_issue=True, dpkg=ELF64, codename="bookworm"):
    """A few-MiB image with Pi OS's layout and just the files build.sh looks at first."""
    root, fat = d / "root", d / "fat"
    for sub in ("etc", "usr/bin", "boot/firmware"):
        (root / sub).mkdir(parents=True)
    (root / "etc/os-release").write_text(
        f'PRETTY_NAME="Debian GNU/Linux 12"\nVERSION_CODENAME={codename}\nID=debian\n')
    if rpi_issue:
        (root / "etc/rpi-issue").write_text("Raspberry Pi reference (test)\n")
    (root / "usr/bin/dpkg").write_bytes(dpkg)
    fat.mkdir()
    for name, text in (("config.txt", "auto_initramfs=1\n"), ("cmdline.txt", pios_standin.CMDLINE_TXT),
                       ("kernel8.img", "not a kernel\n")):
        (fat / name).write_text(text)
    pios_standin.assemble(d / "tiny.img", fat, root, fat_mib=40, root_mib=8)
    return pios_standin.xz_and_hash(d / "tiny.img")


def not_an_image(d):
    (d / "zeros.img").write_bytes(bytes(1 << 20))
    return pios_standin.xz_and_hash(d / "zeros.img")


def leftovers(work, out):
    """Mounts, loop devices, work files or outputs a failed build left behind."""
    with open("/proc/mounts") as f:
        mounts = [line for line in f if str(work) in line]
    loops = [line for line in sh("losetup", "-l", "-n", "-O", "NAME,BACK-FILE").splitlines()
             if str(work) in line]
    return mounts + loops + os.listdir(work) + os.listdir(out)


@pytest.mark.parametrize("case, message", [
    ("checksum", "SHA-256 does not match --base-sha256"),
    ("32-bit", "is 32-bit Raspberry Pi OS (armhf): use the 64-bit Lite image"),
    ("no rpi-issue", "is not Raspberry Pi OS Lite 64-bit bookworm: no /etc/rpi-issue"),
    ("bullseye", "does not say VERSION_CODENAME=bookworm"),
    ("no partitions", "expected an MBR with 2 partitions"),
])
def test_bad_base_images_are_refused_and_leave_nothing(case, message, pubkey, tmp_path):
    d = tmp_path / "img"
    d.mkdir()
    if case == "no partitions":
        img, digest = not_an_image(d)
    else:
        img, digest = tiny_image(d, dpkg=ELF32 if case == "32-bit" else ELF64,
                                 rpi_issue=case != "no rpi-issue",
                                 codename="bullseye" if case == "bullseye" else "bookworm")
    if case == "checksum":
        digest = "0" * 64
    before = (sha256(img), img.stat().st_mtime)
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    r = build("--config", EXAMPLE, "--ssh-key", f"{pubkey}.pub", "--base", str(img), "--base-sha256", digest,
              "--out", str(out), env={"DNSPAIR_WORKDIR": str(work)})
    assert message in one_error_line(r)
    assert leftovers(work, out) == []
    assert (sha256(img), img.stat().st_mtime) == before  # the user's file is only read


@pytest.mark.parametrize("extra, message", [
    (["--arch", "armhf"], "--base takes the 64-bit Raspberry Pi OS Lite image only"),
    (["--read-only-root"], "--read-only-root is not supported with --base"),
])
def test_base_options_it_cannot_honour_are_refused_at_once(extra, message, pubkey, tmp_path):
    img = tmp_path / "x.img.xz"
    img.write_bytes(b"x")
    r = build("--config", EXAMPLE, "--ssh-key", f"{pubkey}.pub", "--base", str(img),
              "--base-sha256", "0" * 64, "--out", str(tmp_path / "out"), *extra)
    assert message in one_error_line(r)
    assert not (tmp_path / "out").exists()  # refused before anything was made


# --- The pair built from the stand-in ---

@pytest.fixture(scope="session")
def standin(request):
    base = pios_standin.debian_base()
    if base is None:  # a cold cache: a normal Debian build makes the base
        request.getfixturevalue("built")
        base = pios_standin.debian_base()
    started = time.monotonic()
    img, digest = pios_standin.standin(base)
    print(f"\nPi OS stand-in: {img.name} ({time.monotonic() - started:.0f}s)")
    return img, digest


@pytest.fixture(scope="module")
def pios(standin, pubkey, tmp_path_factory):
    img, digest = standin
    before = (sha256(img), img.stat().st_mtime)
    out = tmp_path_factory.mktemp("pios") / "out"
    started = time.monotonic()
    proc = subprocess.run([f"{REPO}/build.sh", "--config", EXAMPLE, "--ssh-key", f"{pubkey}.pub",
                           "--base", str(img), "--base-sha256", digest, "--out", str(out), "--xz-level", "1"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60 * 60)
    seconds = time.monotonic() - started
    (out.parent / "build.log").write_text(proc.stdout)
    assert proc.returncode == 0, f"build.sh --base failed after {seconds:.0f}s:\n{proc.stdout[-4000:]}"
    print(f"\n--base build: {seconds:.0f}s")
    assert (sha256(img), img.stat().st_mtime) == before
    return Built(out, pubkey, seconds, proc.stdout)


@pytest.fixture(scope="module")
def images(pios, tmp_path_factory):
    """Both nodes mounted as test_contents mounts the Debian ones, with each disk's partition table."""
    for mounted in mount_images(pios, tmp_path_factory):  # one pass; unmounts when the module ends
        for img in mounted.values():
            img.table = json.loads(sh("sfdisk", "--json", str(img.raw)))["partitiontable"]
        yield mounted


def test_outputs_and_report_name_the_base(pios, standin):
    img, digest = standin
    for node in NODES:
        xz = pios.out / f"{node}.img.xz"
        assert (pios.out / f"{node}.img.xz.sha256").read_text().split() == [sha256(xz), xz.name]
        assert (pios.out / f"{node}.img.bmap").is_file()
    report = (pios.out / "build-report.txt").read_text()
    assert f"base: Raspberry Pi OS {img.name} (sha256 {digest})" in report
    assert re.search(r"^bind9=1:9\.18", report, re.M)


def fs_label(raw, sector):
    """The label of the file system starting at SECTOR (of 512 bytes) in the raw image."""
    return sh("blkid", "-p", "-O", str(sector * 512), "-o", "value", "-s", "LABEL", str(raw)).strip()


def test_pi_os_layout_with_a_disk_id_per_node(images):
    ids = set()
    for img in images.values():
        table = img.table
        assert table["label"] == "dos"
        p1, p2 = table["partitions"]
        assert p1["type"] == "c" and p1["start"] == 8192 and p1["size"] == 512 * 2048
        assert p2["type"] == "83" and p2["start"] == p1["start"] + p1["size"]
        assert fs_label(img.raw, 8192) == "bootfs"
        assert fs_label(img.raw, p2["start"]) == "rootfs"
        disk_id = table["id"].removeprefix("0x")
        assert re.fullmatch(r"[0-9a-f]{8}", disk_id)
        ids.add(disk_id)
        cmdline = img.text("boot/firmware/cmdline.txt").split()
        assert f"root=PARTUUID={disk_id}-02" in cmdline
        assert not [a for a in cmdline if a.startswith("init=")], cmdline
        for kept in ("console=serial0,115200", "console=tty1", "rootfstype=ext4", "rootwait",
                     "net.ifnames=0"):
            assert kept in cmdline
        fstab = [line.split() for line in img.text("etc/fstab").splitlines()
                 if line and not line.startswith("#")]
        assert [f[0] for f in fstab if f[1] == "/"] == [f"PARTUUID={disk_id}-02"]
        assert [f[0] for f in fstab if f[1] == "/boot/firmware"] == [f"PARTUUID={disk_id}-01"]
        assert not [f for f in fstab if f[2] == "swap"]
    assert len(ids) == 2 and pios_standin.DISK_ID not in ids


def test_pi_os_boot_files_and_config_txt_are_kept(pm01):
    assert pm01.text("boot/firmware/config.txt") == pios_standin.CONFIG_TXT
    for f in ("kernel8.img", "kernel_2712.img", "initramfs8", "initramfs_2712", "bcm2711-rpi-4-b.dtb",
              "overlays/README", "dnspair-node.txt"):
        assert pm01.path(f"boot/firmware/{f}").is_file(), f
    assert pm01.path("etc/rpi-issue").read_text().startswith("Raspberry Pi reference")


@pytest.fixture(scope="module")
def pm01(images):
    return images["dns-pm01"]


def test_first_boot_machinery_is_off_and_no_swap(pm01):
    wants = pm01.root / "etc/systemd/system/multi-user.target.wants"
    for name in pios_standin.FIRSTBOOT_UNITS:
        assert pm01.path(f"usr/lib/systemd/system/{name}.service").exists()
        assert not os.path.lexists(wants / f"{name}.service"), name
    assert not os.path.lexists(wants / "dphys-swapfile.service")
    status = pm01.chroot("dpkg-query", "-W", "-f", "${db:Status-Abbrev}", "dphys-swapfile").stdout
    assert not status.startswith("ii"), status


def test_apt_sources_are_pi_os_own_and_packages_came_from_debian(pm01):
    assert pm01.text("etc/apt/sources.list.d/raspi.list") == pios_standin.RASPI_LIST
    assert pm01.text("etc/apt/sources.list") == pios_standin.SOURCES
    assert not pm01.path("usr/sbin/policy-rc.d").exists()
    # Pi OS builds its own initramfs8: none of the Debian base's initramfs or raspi-firmware settings
    assert not pm01.path("etc/initramfs-tools/conf.d/dnspair").exists()
    assert not pm01.path("etc/default/raspi-firmware").exists()
    r = pm01.chroot("dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\n", *pios_standin.PURGED[:-1])
    assert sorted(r.stdout.split("\n")[:-1]) == sorted(f"{p} ii " for p in pios_standin.PURGED[:-1]), r.stdout


def test_the_same_appliance_as_the_debian_base(pios, images):
    a, b = images["dns-pm01"], images["dns-pm02"]
    key = a.path("etc/dnspair/authkey")
    assert key.stat().st_uid == 0 and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert re.fullmatch(r"[0-9a-f]{64}\n", key.read_text())
    assert key.read_text() == b.text("etc/dnspair/authkey")
    assert a.text("etc/ssh/ssh_host_ed25519_key.pub") != b.text("etc/ssh/ssh_host_ed25519_key.pub")
    wants = a.root / "etc/systemd/system/multi-user.target.wants"
    for unit in ("named.service", "ssh.service", "NetworkManager.service", "nagios-nrpe-server.service",
                 "dnspair.service", "dnspair-dns-clock.path"):
        assert os.path.lexists(wants / unit), unit
    assert os.path.lexists(a.root / "etc/systemd/system/sysinit.target.wants/dnspair-node-settings.service")
    for node, img in images.items():
        s = nodesettings.parse(img.text("boot/firmware/dnspair-node.txt"))
        assert s["NODE"] == node
        keyfile = img.path("etc/NetworkManager/system-connections/dnspair-eth0.nmconnection")
        assert keyfile.read_text() == nodesettings.render_keyfile(s)
    assert "Storage=volatile" in a.text("etc/systemd/journald.conf.d/dnspair.conf")
    assert a.path("etc/systemd/system.conf.d/dnspair-watchdog.conf").is_file()
    assert a.path("usr/lib/clock-epoch").is_file()
    assert "command[check_dnspair]" in a.text("etc/nagios/nrpe.d/dnspair.cfg")
    r = a.chroot("named-checkconf", "-z")
    assert r.returncode == 0, r.stdout + r.stderr
    r = a.chroot("/usr/local/bin/dnspair", "check-config", "--key", "/etc/dnspair/dnspair.yaml")
    assert r.returncode == 0, r.stdout + r.stderr


def test_dnspair_at_the_pinned_versions(pm01):
    assert_pinned_versions(pm01)


def test_ssh_key_only_and_every_password_locked(pios, pm01):
    assert pm01.text("root/.ssh/authorized_keys") == pios.ssh_key.with_suffix(".pub").read_text()
    shadow = dict(line.split(":")[:2] for line in pm01.text("etc/shadow").splitlines())
    assert "pi" in shadow  # the stand-in's user with a password
    assert [n for n, p in shadow.items() if not p.startswith(("*", "!"))] == []
    effective = pm01.chroot("sh", "-c", "mkdir -p /run/sshd && exec sshd -T")
    assert effective.returncode == 0, effective.stderr
    assert "passwordauthentication no" in effective.stdout
    assert "permitrootlogin without-password" in effective.stdout


# --- One node boots (after the content checks: the VM writes to its own copy) ---

@pytest.fixture(scope="module")
def pios_vm(pios, tmp_path_factory):
    yield from booted(pios, tmp_path_factory.mktemp("pios-boot"), card=CARD)


def test_pios_node_boots_with_the_appliance_running(pios_vm):
    r = pios_vm.ssh("systemctl is-system-running --wait", timeout=600)
    assert r.stdout.strip() == "running", r.stdout + pios_vm.ssh("systemctl --failed --no-legend").stdout
    props = pios_vm.ssh("systemctl show dnspair -p Type -p ActiveState -p SubState").stdout
    assert "Type=notify" in props and "ActiveState=active" in props and "SubState=running" in props, props
    assert pios_vm.ssh("hostname").stdout.strip() == "dns-pm01"
    assert "inet 192.0.2.1/24" in pios_vm.ssh("ip -4 addr show dev eth0").stdout
    r = pios_vm.ssh("dig +short +time=2 +tries=1 @192.0.2.1 localhost A")
    assert r.stdout.strip() == "127.0.0.1", r.stdout + r.stderr
    r = pios_vm.ssh("dnspair status")
    assert "dns-pm01" in r.stdout, r.stdout + r.stderr


def test_pios_node_booted_by_partuuid_without_first_boot_machinery(pios_vm):
    cmdline = pios_vm.ssh("cat /proc/cmdline").stdout
    assert re.search(r"root=PARTUUID=[0-9a-f]{8}-02", cmdline) and "init=" not in cmdline, cmdline
    marker = pios_vm.ssh(f"test -e /{pios_standin.FIRSTBOOT_MARKER} && echo ran || echo absent")
    assert marker.stdout.strip() == "absent"
    assert pios_vm.ssh(f"ls -A /{pios_standin.UNIT_MARKERS} 2>/dev/null").stdout.strip() == ""
    assert pios_vm.ssh("swapon --show --noheadings").stdout.strip() == ""
    assert pios_vm.ssh("findmnt -n -o FSTYPE /boot/firmware").stdout.strip() == "vfat"


def test_pios_root_grew_to_fill_the_card_on_first_boot(pios_vm):
    size = int(pios_vm.ssh("df -B1 --output=size / | tail -1").stdout)
    assert size > CARD - (768 << 20), f"root is {size} bytes on a {CARD}-byte card"
    log = pios_vm.ssh("journalctl -b -o cat -u dnspair-grow-root").stdout
    assert "CHANGED:" in log and "root file system: " in log, log
    # fstab and cmdline.txt still find root and boot by PARTUUID after the partition grew
    assert pios_vm.ssh("findmnt -n -o FSTYPE /boot/firmware").stdout.strip() == "vfat"
