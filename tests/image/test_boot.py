"""The built image boots under qemu-system-aarch64 (-M virt, the image's own kernel and initrd):
systemd reaches its default target, dnspair reports READY, bind answers, `dnspair status` prints.

The VM's network is qemu's user-mode network with restrict=on: the guest reaches nothing, only the
SSH port forwarded from 127.0.0.1 comes in. The guest keeps the image's own address, 192.0.2.1.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from conftest import NODES  # noqa: F401  (the image fixtures live there)

BOOT_TIMEOUT = 15 * 60  # TCG emulation on 2 shared cores; a boot took 2-4 min when measured


# qemu's virt machine for each image arch: a Pi 3's cores (Cortex-A53), a Pi 2B's (Cortex-A7). The
# armmp kernel has no LPAE, so its PCI host must sit below 4 GiB (highmem=off).
QEMU = {"arm64": ("qemu-system-aarch64", "virt", "cortex-a53"),
        "armhf": ("qemu-system-arm", "virt,highmem=off", "cortex-a7")}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VM:
    def __init__(self, built, workdir, extra_cmdline="", node="dns-pm01", smp="2", wrap=(), settings=None,
                 guest="192.0.2.1", qemu_args=(), card=None):
        self.key = built.ssh_key
        raw = built.raw(node, workdir)
        if card:  # the image written to a bigger card: the first boot grows root to fill it
            os.truncate(raw, card)
        fat = f"{raw}@@{4 << 20}"
        if settings is not None:  # what a user does from any computer before first boot
            (workdir / "dnspair-node.txt").write_text(settings)
            subprocess.run(["mcopy", "-o", "-i", fat, str(workdir / "dnspair-node.txt"),
                            "::dnspair-node.txt"], check=True)
        config = subprocess.run(["mtype", "-i", fat, "::config.txt"],
                                check=True, capture_output=True, text=True).stdout
        # What the Pi's firmware loads: config.txt's kernel=/initramfs lines (Debian's raspi-firmware),
        # else kernel8.img and, with auto_initramfs=1, initramfs8 (Raspberry Pi OS).
        kernel = re.search(r"^kernel=(\S+)", config, re.M)
        kernel = kernel.group(1) if kernel else "kernel8.img"
        initrd = re.search(r"^initramfs (\S+)", config, re.M)
        if initrd:
            initrd = initrd.group(1)
        else:
            initrd = "initramfs8" if re.search(r"^auto_initramfs=1", config, re.M) else None
        assert initrd, "config.txt names no initramfs"
        for f in (kernel, initrd):
            subprocess.run(["mcopy", "-n", "-i", fat, f"::{f}", str(workdir / f)], check=True)
        cmdline = subprocess.run(["mtype", "-i", fat, "::cmdline.txt"],
                                 check=True, capture_output=True, text=True).stdout
        # The Pi's consoles do not exist on qemu's virt machine; its UART is ttyAMA0.
        args = [a for a in cmdline.split() if not a.startswith("console=")] + ["console=ttyAMA0"]
        if extra_cmdline:
            args.append(extra_cmdline)
        self.cmdline = " ".join(args)
        self.console = workdir / "console.log"
        if not hasattr(self, "netdev"):  # qemu's user network, restricted: only SSH comes in
            self.port = free_port()
            self.netdev = [
                "-netdev", f"user,id=n0,restrict=on,net=192.0.2.0/24,host=192.0.2.254,"
                           f"hostfwd=tcp:127.0.0.1:{self.port}-{guest}:22",
                # no option ROM: the kernel is loaded directly
                "-device", "virtio-net-pci,netdev=n0,romfile=",
            ]
        qemu, machine, cpu = QEMU[built.arch(node)]
        self.proc = subprocess.Popen([
            *wrap, qemu, "-M", machine, "-cpu", cpu, "-smp", smp, "-m", "1024",
            "-display", "none", "-serial", f"file:{self.console}", "-monitor", "none",
            "-kernel", str(workdir / kernel), "-initrd", str(workdir / initrd), "-append", self.cmdline,
            "-drive", f"file={raw},format=raw,if=virtio", *self.netdev,
            "-device", "i6300esb",  # a PCI hardware watchdog, standing in for the Pi's bcm2835-wdt
            *qemu_args,
        ], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def ssh(self, command, timeout=120):
        return subprocess.run(
            ["ssh", "-i", str(self.key), "-p", str(self.port), "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
             "-o", "ConnectTimeout=20", "root@127.0.0.1", command],
            capture_output=True, text=True, timeout=timeout)

    def wait_for_ssh(self):
        started = time.monotonic()
        while time.monotonic() - started < BOOT_TIMEOUT:
            if self.proc.poll() is not None:
                pytest.fail(f"qemu exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if self.ssh("true", timeout=60).returncode == 0:
                    return time.monotonic() - started
            except subprocess.TimeoutExpired:
                pass
            time.sleep(5)
        pytest.fail(f"no SSH after {BOOT_TIMEOUT}s; console:\n{self.console.read_text()[-3000:]}")

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def failed_units(vm):
    """What failed and why: each failed unit with the end of its journal, for an assertion message."""
    return vm.ssh("systemctl --failed --no-legend; for u in $(systemctl --failed --no-legend --plain"
                  " | cut -d' ' -f1); do journalctl -b --no-pager -n 30 -u $u; done").stdout


def qemu_installed():
    if not (shutil.which("qemu-system-aarch64") and shutil.which("qemu-system-arm")):  # like build.sh
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "qemu-system-arm"],
                       capture_output=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    assert shutil.which("qemu-system-aarch64") and shutil.which("qemu-system-arm"), \
        "qemu-system-aarch64/-arm missing and apt-get could not install qemu-system-arm"


def booted(built, workdir, extra_cmdline="", **kw):
    qemu_installed()
    machine = VM(built, workdir, extra_cmdline, **kw)
    try:
        seconds = machine.wait_for_ssh()
        how = f" ({extra_cmdline})" if extra_cmdline else ""
        print(f"\nqemu boot to SSH{how}: {seconds:.0f}s", flush=True)
        yield machine
    finally:
        machine.close()


@pytest.fixture(scope="module")
def vm(built, tmp_path_factory):
    yield from booted(built, tmp_path_factory.mktemp("boot"))


def test_systemd_reaches_the_default_target_with_nothing_failed(vm):
    r = vm.ssh("systemctl is-system-running --wait", timeout=600)
    assert r.stdout.strip() == "running", f"{r.stdout}{failed_units(vm)}"
    assert vm.ssh("systemctl is-active default.target").stdout.strip() == "active"


def test_node_identity_and_address_were_applied(vm):
    assert vm.ssh("hostname").stdout.strip() == "dns-pm01"
    assert "inet 192.0.2.1/24" in vm.ssh("ip -4 addr show dev eth0").stdout
    active = vm.ssh("systemctl is-active dnspair-node-settings NetworkManager").stdout.split()
    assert active == ["active", "active"]
    assert "nameserver 127.0.0.1" in vm.ssh("cat /etc/resolv.conf").stdout


def test_dnspair_is_ready(vm):
    # Type=notify: systemd calls the unit active only after the daemon sent READY=1.
    props = vm.ssh("systemctl show dnspair -p Type -p ActiveState -p SubState -p NRestarts").stdout
    assert "Type=notify" in props and "ActiveState=active" in props and "SubState=running" in props, props
    assert "NRestarts=0" in props, props


def test_bind_answers_on_the_node_address_and_on_a_vip(vm):
    r = vm.ssh("dig +short +time=2 +tries=1 @192.0.2.1 localhost A")
    assert r.stdout.strip() == "127.0.0.1", r.stdout + r.stderr
    # Alone on its LAN, dns-pm01 holds its preferred VIP; bind answers there as soon as it lands.
    deadline = time.monotonic() + 60
    while True:
        r = vm.ssh("dig +short +time=2 +tries=1 @192.0.2.11 localhost A")
        if r.stdout.strip() == "127.0.0.1":
            break
        assert time.monotonic() < deadline, \
            vm.ssh("ip -4 addr; journalctl -u dnspair --no-pager | tail -30").stdout
        time.sleep(3)


def test_the_firewall_is_loaded_before_the_daemon_and_follows_the_config(vm):
    fw = vm.ssh("systemctl show dnspair-firewall -p Result -p ExecMainExitTimestampMonotonic").stdout
    started = vm.ssh("systemctl show dnspair -p ExecMainStartTimestampMonotonic").stdout
    assert "Result=success" in fw, fw + vm.ssh("journalctl -b -u dnspair-firewall --no-pager").stdout
    assert int(fw.split("ExecMainExitTimestampMonotonic=")[1].split()[0]) \
        < int(started.split("=")[1]), (fw, started)
    table = vm.ssh("nft list table inet dnspair").stdout
    assert "ip saddr 192.0.2.2 ip daddr 192.0.2.1 udp dport 7405" in table, table
    assert "5666" not in table
    # A config change and a rule of your own: dnspair-firewall.path regenerates, both are in.
    vm.ssh("echo 'firewall: {monitoring: [192.0.2.77]}' >> /etc/dnspair/dnspair.yaml")
    vm.ssh("echo 'add rule inet dnspair own ip saddr 192.0.2.78 tcp dport 9100 accept' "
           "> /etc/dnspair/firewall.d/exporter.nft")
    deadline = time.monotonic() + 120
    while True:
        table = vm.ssh("nft list table inet dnspair").stdout
        if "192.0.2.77" in table and "192.0.2.78" in table:
            break
        assert time.monotonic() < deadline, table + vm.ssh("journalctl -b -u dnspair-firewall -n 20").stdout
        time.sleep(3)
    assert "tcp dport 5666 accept" in table
    allow = vm.ssh("systemctl show dnspair -p IPAddressAllow").stdout
    assert "192.0.2.2/32" in allow, allow


def test_dnspair_status_prints(vm):
    r = vm.ssh("dnspair status")
    assert r.returncode in (0, 1, 2), r.stderr  # exit code tells health; the text must be there either way
    assert "dns-pm01" in r.stdout, r.stdout + r.stderr
    j = vm.ssh("dnspair status --json")
    assert "dns-pm01" in json.dumps(json.loads(j.stdout))


def test_sd_card_care_at_runtime(vm):
    assert vm.ssh("swapon --show --noheadings").stdout.strip() == ""
    # Storage=volatile: the journal's files are in /run, none on the card
    assert vm.ssh("journalctl --header -n0 | grep -c '^File path: /run/log/journal/'").stdout.strip() != "0"
    assert vm.ssh("find /var/log/journal -type f 2>/dev/null | wc -l").stdout.strip() == "0"
    assert vm.ssh("systemctl show -p RuntimeWatchdogUSec").stdout.strip() == "RuntimeWatchdogUSec=14s"
    assert "Using hardware watchdog" in vm.ssh("journalctl -b -o cat _PID=1 | grep -i watchdog").stdout
    assert "vfat" in vm.ssh("findmnt -n -o FSTYPE /boot/firmware").stdout


def test_no_password_login(vm):
    r = subprocess.run(["ssh", "-p", str(vm.port), "-o", "BatchMode=yes", "-o", "PubkeyAuthentication=no",
                        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                        "-o", "PreferredAuthentications=password,keyboard-interactive",
                        "root@127.0.0.1", "true"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr, r.stderr


@pytest.fixture(scope="module")
def ro_vm(built, tmp_path_factory, vm):
    """The same image booted with what --read-only-root adds to cmdline.txt (after `vm` is gone)."""
    vm.close()
    yield from booted(built, tmp_path_factory.mktemp("boot-ro"), "dnspair.overlayroot")


def test_read_only_root_keeps_the_card_untouched(ro_vm):
    assert ro_vm.ssh("findmnt -n -o FSTYPE /").stdout.strip() == "overlay"
    assert ro_vm.ssh("findmnt -n -o OPTIONS /media/root-ro").stdout.startswith("ro,")
    r = ro_vm.ssh("echo x > /etc/written-at-runtime && test -e /etc/written-at-runtime "
                  "&& test ! -e /media/root-ro/etc/written-at-runtime && echo in-ram")
    assert r.stdout.strip() == "in-ram", r.stdout + r.stderr
    assert ro_vm.ssh("systemctl is-system-running --wait", timeout=600).stdout.strip() == "running", \
        ro_vm.ssh("systemctl --failed --no-legend").stdout
    assert ro_vm.ssh("systemctl is-active dnspair named").stdout.split() == ["active", "active"]


EDITED = "NODE=dns-pm01\r\nINTERFACE=eth0\r\nADDRESS=192.0.2.9/24\r\nGATEWAY=192.0.2.254\r\nDNS=127.0.0.1\r\n"


@pytest.fixture(scope="module")
def edited_vm(built, tmp_path_factory, ro_vm):
    """A fresh copy of the image whose dnspair-node.txt was edited on the FAT before its first boot,
    on a board whose clock starts in the past (a Pi has no real-time clock)."""
    ro_vm.close()
    yield from booted(built, tmp_path_factory.mktemp("boot-edited"), settings=EDITED, guest="192.0.2.9",
                      qemu_args=("-rtc", "base=2020-01-01T00:00:00"))


def test_settings_edited_on_the_boot_partition_apply_at_first_boot(edited_vm):
    assert "inet 192.0.2.9/24" in edited_vm.ssh("ip -4 addr show dev eth0").stdout
    assert "192.0.2.1/" not in edited_vm.ssh("ip -4 addr show dev eth0").stdout
    keyfile = edited_vm.ssh("cat /etc/NetworkManager/system-connections/dnspair-eth0.nmconnection").stdout
    assert "address1=192.0.2.9/24,192.0.2.254" in keyfile
    log = edited_vm.ssh("journalctl -b -o cat -u dnspair-node-settings").stdout
    assert "applied /boot/firmware/dnspair-node.txt" in log and "nmconnection" in log, log


def test_a_board_without_a_clock_starts_at_the_build_date_and_flushes_bind_once_ntp_syncs(edited_vm):
    epoch = int(edited_vm.ssh("stat -c %Y /usr/lib/clock-epoch").stdout)
    now = int(edited_vm.ssh("date +%s").stdout)
    assert epoch <= now < epoch + BOOT_TIMEOUT + 3600, (epoch, now)  # not 2020, not the host's time
    assert edited_vm.ssh("systemctl is-active dnspair-dns-clock.path").stdout.strip() == "active"
    assert edited_vm.ssh("systemctl is-active dnspair-dns-clock.service").stdout.strip() == "inactive"
    # What systemd-timesyncd does on a successful sync (its man page); the guest reaches no NTP server.
    edited_vm.ssh("touch /run/systemd/timesync/synchronized")
    deadline = time.monotonic() + 60
    while edited_vm.ssh("systemctl is-active dnspair-dns-clock.service").stdout.strip() != "active":
        assert time.monotonic() < deadline, edited_vm.ssh("systemctl status dnspair-dns-clock.service").stdout
        time.sleep(2)
    log = edited_vm.ssh("journalctl -b -o cat -u named").stdout
    assert "flushing caches in all views succeeded" in log, log[-2000:]
