"""A stand-in for Raspberry Pi OS Lite 64-bit bookworm, for testing build.sh --base here, where
Raspberry Pi's servers are unreachable.

It is made from the Debian arm64 base that build.sh caches (Debian's kernel, initramfs-tools and
packages, NOT Pi OS's) and shaped like the real image: MBR with a fixed disk id, FAT32 `bootfs`
(512 MiB at sector 8192) with config.txt (auto_initramfs=1), cmdline.txt (root=PARTUUID=...,
init=/usr/lib/raspberrypi-sys-mods/firstboot), kernel8.img/initramfs8 (Debian's, so qemu -M virt
can boot them); ext4 `rootfs` with /etc/rpi-issue, raspi.list, fstab by PARTUUID, a `pi` user with
a password, and stand-ins for Pi OS's first-boot machinery that leave a marker if they ever run.
The packages build.sh must add from Debian (bind9, python3-venv, ...) are purged from it.

Cached next to the base as pios-standin-KEY.img.xz, KEY from the base's name and this file.
"""
import glob
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

DISK_ID = "0f1e2d3c"
FIRSTBOOT_MARKER = "dnspair-standin-firstboot-ran"  # in / of the image, if firstboot ran
UNIT_MARKERS = "var/lib/dnspair-standin"  # NAME-ran files, if a first-boot unit ran
FIRSTBOOT_UNITS = ("userconfig", "regenerate_ssh_host_keys", "sshswitch")
PURGED = ("bind9", "bind9-dnsutils", "nagios-nrpe-server", "python3-venv", "python3-systemd",
          "raspi-firmware")

CONFIG_TXT = """\
# For more options and information see
# http://rptl.io/configtxt
# Some settings may impact device functionality. See link above for details

# Uncomment some or all of these to enable the optional hardware interfaces
#dtparam=i2c_arm=on
#dtparam=i2s=on
#dtparam=spi=on

# Enable audio (loads snd_bcm2835)
dtparam=audio=on

# Automatically load overlays for detected cameras
camera_auto_detect=1

# Automatically load overlays for detected DSI displays
display_auto_detect=1

# Automatically load initramfs files, if found
auto_initramfs=1

# Enable DRM VC4 V3D driver
dtoverlay=vc4-kms-v3d
max_framebuffers=2

# Don't have the firmware create an initial video= setting in cmdline.txt.
# Use the kernel's default instead.
disable_fw_kms_setup=1

# Run in 64-bit mode
arm_64bit=1

# Disable compensation for displays with overscan
disable_overscan=1

# Run as fast as firmware / board allows
arm_boost=1

[cm4]
otg_mode=1

[all]
"""
CMDLINE_TXT = (f"console=serial0,115200 console=tty1 root=PARTUUID={DISK_ID}-02 rootfstype=ext4 "
               "fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n")
FSTAB = (f"proc            /proc           proc    defaults          0       0\n"
         f"PARTUUID={DISK_ID}-01  /boot/firmware  vfat    defaults          0       2\n"
         f"PARTUUID={DISK_ID}-02  /               ext4    defaults,noatime  0       1\n")
SOURCES = ("deb http://deb.debian.org/debian bookworm main contrib non-free non-free-firmware\n"
           "deb http://deb.debian.org/debian-security/ bookworm-security"
           " main contrib non-free non-free-firmware\n"
           "deb http://deb.debian.org/debian bookworm-updates main contrib non-free non-free-firmware\n")
RASPI_LIST = ("deb http://archive.raspberrypi.com/debian/ bookworm main\n"
              "# Uncomment line below then 'apt-get update' to enable 'apt-get source'\n"
              "#deb-src http://archive.raspberrypi.com/debian/ bookworm main\n")
FIRSTBOOT = f"""#!/bin/sh
# dnspair test stand-in for Pi OS's first-boot script (resize, new disk id, host keys). If this
# runs, build.sh left init=... in cmdline.txt: leave a marker, then boot on.
mount -o remount,rw /
echo "stand-in firstboot ran" > /{FIRSTBOOT_MARKER}
sync
exec /sbin/init
"""
CHROOT_SCRIPT = f"""set -e
export DEBIAN_FRONTEND=noninteractive
dpkg --purge {' '.join(PURGED)}
useradd -m -s /bin/bash -G sudo pi
echo 'pi:raspberry' | chpasswd
dpkg -i /tmp/dphys-swapfile.deb
rm -f /tmp/dphys-swapfile.deb
"""


def cache_dir():
    return Path(os.environ.get("DNSPAIR_CACHE", "/var/cache/dnspair-build"))


def debian_base():
    """The newest cached Debian arm64 base tarball, or None."""
    tars = sorted(glob.glob(str(cache_dir() / "base-arm64-*.tar")), key=os.path.getmtime)
    return Path(tars[-1]) if tars else None


def run(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def unit(description, command):
    return (f"[Unit]\nDescription={description}\n\n[Service]\nType=oneshot\nExecStart={command}\n\n"
            f"[Install]\nWantedBy=multi-user.target\n")


def dphys_swapfile_deb(work):
    """A package named dphys-swapfile whose enabled unit leaves a marker: build.sh must purge it."""
    pkg = work / "dphys"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN/control").write_text(
        "Package: dphys-swapfile\nVersion: 20100506-7.1+rpt3+dnspairstandin\nArchitecture: all\n"
        "Maintainer: dnspair tests <root@localhost>\n"
        "Description: dnspair test stand-in for Pi OS's swap file\n")
    units = pkg / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    (units / "dphys-swapfile.service").write_text(
        unit("stand-in dphys-swapfile",
             f"/bin/sh -c 'mkdir -p /{UNIT_MARKERS} && touch /{UNIT_MARKERS}/dphys-swapfile-ran'"))
    wants = pkg / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    (wants / "dphys-swapfile.service").symlink_to("/usr/lib/systemd/system/dphys-swapfile.service")
    run("dpkg-deb", "--root-owner-group", "-b", str(pkg), str(work / "dphys-swapfile.deb"),
        capture_output=True)
    return work / "dphys-swapfile.deb"


def in_chroot(root, script):
    mounts = []
    try:
        for kind, src, dst in (("proc", "proc", "proc"), ("bind", "/dev", "dev")):
            target = root / dst
            target.mkdir(exist_ok=True)
            run("mount", *(["--bind", src] if kind == "bind" else ["-t", "proc", src]), str(target))
            mounts.append(target)
        run("chroot", str(root), "/bin/sh", "-c", script, capture_output=True,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"})
    finally:
        for m in reversed(mounts):
            subprocess.run(["umount", "-l", str(m)], capture_output=True)


def shape_root(root, work):
    """Debian base tree -> Pi OS-like root. Returns the kernel and initrd paths."""
    in_root = lambda rel: root / rel  # noqa: E731
    shutil.copy(dphys_swapfile_deb(work), in_root("tmp/dphys-swapfile.deb"))
    in_chroot(root, CHROOT_SCRIPT)
    in_root("etc/rpi-issue").write_text(
        "Raspberry Pi reference 2024-11-19\n"
        "Generated using pi-gen, https://github.com/RPi-Distro/pi-gen, stage2\n"
        "dnspair test stand-in: Debian's arm64 packages shaped like Raspberry Pi OS Lite,"
        " not Raspberry Pi OS\n")
    in_root("etc/fstab").write_text(FSTAB)
    # dnspair's initramfs settings are baked into the Debian base; Pi OS has none of them.
    for rel in ("conf.d/dnspair", "hooks/dnspair-modules", "scripts/local-bottom/dnspair-overlayroot"):
        in_root(f"etc/initramfs-tools/{rel}").unlink()
    in_root("etc/apt/sources.list").write_text(SOURCES)
    in_root("etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
    in_root("etc/apt/sources.list.d/raspi.list").write_text(RASPI_LIST)
    sysmods = in_root("usr/lib/raspberrypi-sys-mods")
    sysmods.mkdir(parents=True, exist_ok=True)
    (sysmods / "firstboot").write_text(FIRSTBOOT)
    (sysmods / "firstboot").chmod(0o755)
    wants = in_root("etc/systemd/system/multi-user.target.wants")
    for name in FIRSTBOOT_UNITS:
        in_root(f"usr/lib/systemd/system/{name}.service").write_text(
            unit(f"stand-in for Pi OS's {name}",
                 f"/bin/sh -c 'mkdir -p /{UNIT_MARKERS} && touch /{UNIT_MARKERS}/{name}-ran'"))
        (wants / f"{name}.service").symlink_to(f"/usr/lib/systemd/system/{name}.service")
    shutil.rmtree(in_root("boot/firmware"), ignore_errors=True)  # the FAT's mount point: empty on ext4
    in_root("boot/firmware").mkdir()
    kernel = sorted(in_root("boot").glob("vmlinuz-*"))[-1]
    initrd = sorted(in_root("boot").glob("initrd.img-*"))[-1]
    return kernel, initrd


def fill_fat(fat, kernel, initrd, root):
    fat.mkdir()
    for name in ("kernel8.img", "kernel_2712.img"):
        shutil.copy(kernel, fat / name)
    for name in ("initramfs8", "initramfs_2712"):
        shutil.copy(initrd, fat / name)
    (fat / "config.txt").write_text(CONFIG_TXT)
    (fat / "cmdline.txt").write_text(CMDLINE_TXT)
    (fat / "issue.txt").write_text((root / "etc/rpi-issue").read_text())
    for dtb in glob.glob(str(root / "usr/lib/linux-image-*/broadcom/bcm2711-rpi-4-b.dtb")) + \
            glob.glob(str(root / "usr/lib/linux-image-*/broadcom/bcm2837-rpi-3-b.dtb")):
        shutil.copy(dtb, fat)
    (fat / "overlays").mkdir()
    (fat / "overlays/README").write_text("stand-in: no overlays\n")


def assemble(img, fat_dir, root_dir, disk_id=DISK_ID, fat_mib=512, root_mib=None, fat_label="bootfs",
             root_label="rootfs"):
    """Pi OS's layout: MBR, FAT32 at sector 8192, ext4 after it (written at offsets, no loop device)."""
    if root_mib is None:
        used = int(subprocess.run(["du", "-sxm", str(root_dir)], check=True, capture_output=True,
                                  text=True).stdout.split()[0])
        root_mib = used + used // 5 + 200
    total = 4 + fat_mib + root_mib
    with open(img, "wb") as f:
        f.truncate(total << 20)
    table = (f"label: dos\nlabel-id: 0x{disk_id}\nstart=8192, size={fat_mib * 2048}, type=c\n"
             f"start={(4 + fat_mib) * 2048}, type=83\n")
    run("sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(img),
        input=table, text=True, capture_output=True)
    run("mkfs.vfat", "-F", "32", "-s", "1", "-n", fat_label, "--offset", "8192", str(img),
        str(fat_mib * 1024), capture_output=True)
    run("mcopy", "-s", "-p", "-m", "-i", f"{img}@@{4 << 20}", *[str(p) for p in sorted(fat_dir.iterdir())],
        "::/", env=dict(os.environ, MTOOLS_SKIP_CHECK="1"))
    run("mke2fs", "-q", "-t", "ext4", "-L", root_label, "-d", str(root_dir),
        "-E", f"offset={(4 + fat_mib) << 20},root_owner=0:0", str(img), f"{root_mib * 1024}k")


def xz_and_hash(img):
    run("xz", "-T0", "-1", "-f", str(img))
    xz = Path(f"{img}.xz")
    h = hashlib.sha256()
    with open(xz, "rb") as f:
        for block in iter(lambda: f.read(4 << 20), b""):
            h.update(block)
    return xz, h.hexdigest()


def standin(base_tar):
    """(path of the stand-in .img.xz, its sha256), from the cache or made from base_tar."""
    recipe = base_tar.name.encode() + Path(__file__).read_bytes()
    key = hashlib.sha256(recipe).hexdigest()[:16]
    cached = cache_dir() / f"pios-standin-{key}.img.xz"
    if cached.exists() and Path(f"{cached}.sha256").exists():
        return cached, Path(f"{cached}.sha256").read_text().split()[0]
    with tempfile.TemporaryDirectory(dir=os.environ.get("DNSPAIR_WORKDIR", "/var/tmp"),
                                     prefix="pios-standin.") as tmp:
        work = Path(tmp)
        root = work / "root"
        root.mkdir()
        run("tar", "-C", str(root), "--xattrs", "--xattrs-include=*", "--numeric-owner",
            "-xpf", str(base_tar))
        kernel, initrd = shape_root(root, work)
        fill_fat(work / "fat", kernel, initrd, root)
        img = work / "2024-11-19-raspios-bookworm-arm64-lite-STANDIN.img"
        assemble(img, work / "fat", root)
        shutil.rmtree(root)
        xz, digest = xz_and_hash(img)
        for old in cache_dir().glob("pios-standin-*"):
            old.unlink()
        shutil.move(xz, f"{cached}.partial")
        os.replace(f"{cached}.partial", cached)
        Path(f"{cached}.sha256").write_text(f"{digest}  {cached.name}\n")
    return cached, digest
