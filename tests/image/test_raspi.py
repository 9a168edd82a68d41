"""The cards on qemu's own Raspberry Pi boards, as the user flashed them: the seed's pair from one
build, dns-pm01 (arm64) on `qemu-system-aarch64 -M raspi3b`, dns-pm02 (armhf) on
`qemu-system-arm -M raspi2b`, both on one LAN.

Each boots the way the Pi's firmware would: the kernel, initrd and device tree named by the
card's own FAT partition (copied out with mtools), its own cmdline.txt, root on the emulated SD
controller (no virtio anywhere), the card enlarged to 8 GiB (qemu wants a power of two) so the
first boot grows root to fill it. The network is qemu's usb-net (the boards have no other NIC), a
tap on a bridge inside a namespace this test makes (TEST-NET-1 only; the namespace is the client
192.0.2.100). Under the real dnspair.service: gpiozero's lgpio factory on the Broadcom pin
controller, gpioinfo lists the LED and button lines as dnspair's, and the LED lines' levels are
what the status says, and follow a bind stop.

Test-only workarounds for qemu 7.2, none of them on the card the user gets (../docs/image.md):
- `modprobe.blacklist=bcm2835_wdt` appended to the kernel command line: qemu's model of the
  Broadcom watchdog resets the board as soon as systemd arms RuntimeWatchdogSec (boot loop);
- a systemd .link file written into the test's copy of the root file system names the usb-net
  NIC eth0 (the kernel calls it usb0; a Pi's own NIC is eth0 with net.ifnames=0);
- /system/linux,revision added to the test's copy of the device tree with fdtput: the Pi
  firmware adds it, qemu's direct boot does not, and gpiozero reads the board from it.
- once both boards are up, each clock is set from the host's with `date -s` (what NTP would do;
  the test LAN has none): booted minutes apart, the two clocks were too far apart for TSIG;
- on raspi2b only (Debian's 6.1 armmp kernel), two drivers that oops on qemu's model of the
  board: `vchiq` (qemu has no VideoCore: "failed to set channelbase", then an oops in its
  recycle thread) is blacklisted, and the SD host's `dmas` are deleted from the test's copy of
  the device tree so it reads the card by PIO (its DMA completion work oopsed on a NULL request
  under TCG, and the root file system hung: no SSH in 900 s, in CI and locally).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_boot import BOOT_TIMEOUT, failed_units, qemu_installed

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
from dnspair.shell.leds import lights  # noqa: E402  (the mapping the daemon's panel uses)

NS = f"dprpi{os.getpid()}"
CARD = 8 << 30  # bytes: the card the image is flashed to
TEST_CMDLINE = "modprobe.blacklist=bcm2835_wdt"
BOARDS = {  # arch: qemu, machine, device tree, board revision, index of the card's console among -serial
    "arm64": ("qemu-system-aarch64", "raspi3b", "bcm2837-rpi-3-b.dtb", "a02082", 1, "Raspberry Pi 3 Model B"),
    "armhf": ("qemu-system-arm", "raspi2b", "bcm2836-rpi-2-b.dtb", "a01041", 0, "Raspberry Pi 2 Model B"),
}
QEMU_OOPS = {  # arch: (modules to blacklist, device-tree properties to delete), see the docstring
    "armhf": ("vchiq", [("/soc/mmc@7e202000", "dmas"), ("/soc/mmc@7e202000", "dma-names")]),
}
NODES = {"dns-pm01": ("192.0.2.1", "52:54:00:d6:00:01"), "dns-pm02": ("192.0.2.2", "52:54:00:d6:00:02")}
PINS = {"green": 17, "amber": 27, "red": 22, "button": 23}  # the config's defaults (no leds: section)


def ns(*cmd, check=True, timeout=120):
    return subprocess.run(["ip", "netns", "exec", NS, *cmd], capture_output=True, text=True,
                          check=check, timeout=timeout)


def tools_installed():
    qemu_installed()
    if not shutil.which("fdtput") or not shutil.which("debugfs"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "device-tree-compiler",
                        "e2fsprogs"], capture_output=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    assert shutil.which("fdtput") and shutil.which("debugfs"), \
        "fdtput (device-tree-compiler) or debugfs (e2fsprogs) missing"


def partitions(raw):
    table = json.loads(subprocess.run(["sfdisk", "-J", str(raw)], check=True, capture_output=True,
                                      text=True).stdout)["partitiontable"]
    return [(p["start"] * 512, p["size"] * 512) for p in table["partitions"]]


class Pi:
    def __init__(self, built, workdir, node):
        self.node, self.key = node, built.ssh_key
        self.address, mac = NODES[node]
        qemu, machine, dtb, revision, console, self.model = BOARDS[built.arch(node)]
        blacklist, drop = QEMU_OOPS.get(built.arch(node), ("", []))
        raw = built.raw(node, workdir)
        (fat_at, _), (root_at, self.root_size) = partitions(raw)
        fat = f"{raw}@@{fat_at}"

        def fat_file(name):
            subprocess.run(["mcopy", "-n", "-i", fat, f"::{name}", str(workdir / name)], check=True)
            return workdir / name
        config = subprocess.run(["mtype", "-i", fat, "::config.txt"], check=True, capture_output=True,
                                text=True).stdout
        kernel = fat_file(re.search(r"^kernel=(\S+)", config, re.M).group(1))
        initrd = fat_file(re.search(r"^initramfs (\S+)", config, re.M).group(1))
        self.dtb = fat_file(dtb)
        self.card_cmdline = subprocess.run(["mtype", "-i", fat, "::cmdline.txt"], check=True,
                                           capture_output=True, text=True).stdout.strip()
        # Test only (see the module's docstring): the firmware's board revision, eth0 for usb-net.
        subprocess.run(["fdtput", "-c", str(self.dtb), "/system"], check=True)
        subprocess.run(["fdtput", "-t", "x", str(self.dtb), "/system", "linux,revision", revision],
                       check=True)
        for path, prop in drop:
            subprocess.run(["fdtput", "-d", str(self.dtb), path, prop], check=True)
        self.test_cmdline = TEST_CMDLINE + (f",{blacklist}" if blacklist else "")
        link = workdir / "10-test-usb-net.link"
        # qemu's usb-net binds to cdc_subset with a random MAC (no mac= applies) or cdc_ether
        link.write_text("# test_raspi.py only: qemu's usb-net is usb0\n"
                        "[Match]\nDriver=cdc_subset cdc_ether\n[Link]\nName=eth0\n")
        root_fs = f"{raw}?offset={root_at}"
        subprocess.run(["debugfs", "-w", "-R", f"write {link} /etc/systemd/network/{link.name}", root_fs],
                       check=True, capture_output=True)
        written = subprocess.run(["debugfs", "-R", f"cat /etc/systemd/network/{link.name}", root_fs],
                                 capture_output=True, text=True).stdout
        assert written == link.read_text(), "debugfs could not write the .link file"  # it exits 0 anyway
        os.truncate(raw, CARD)
        self.tap = f"tap{node[-1]}"
        subprocess.run(["ip", "-n", NS, "tuntap", "add", "dev", self.tap, "mode", "tap"], check=True)
        subprocess.run(["ip", "-n", NS, "link", "set", self.tap, "master", "br0", "up"], check=True)
        self.console = workdir / "console.log"
        serials = ["-serial", "null"] * console + ["-serial", f"file:{self.console}"]
        self.started = time.monotonic()
        self.proc = subprocess.Popen([
            "ip", "netns", "exec", NS, qemu, "-M", machine, "-m", "1G",
            "-display", "none", "-monitor", "none",
            *serials, "-kernel", str(kernel), "-initrd", str(initrd), "-dtb", str(self.dtb),
            "-append", f"{self.card_cmdline} {self.test_cmdline}",
            "-drive", f"file={raw},format=raw,if=sd",
            "-netdev", f"tap,id=n0,ifname={self.tap},script=no,downscript=no",
            "-device", f"usb-net,netdev=n0,mac={mac}",
        ], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def ssh(self, command, timeout=120):
        return ns("ssh", "-i", str(self.key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                  "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20",
                  f"root@{self.address}", command, check=False, timeout=timeout)

    def wait_for_ssh(self):
        while time.monotonic() - self.started < BOOT_TIMEOUT:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.node}: qemu exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if self.ssh("true", timeout=60).returncode == 0:
                    took = time.monotonic() - self.started
                    print(f"\n{self.node} on {self.model}: SSH after {took:.0f}s", flush=True)
                    return
            except subprocess.TimeoutExpired:
                pass
            time.sleep(5)
        pytest.fail(f"{self.node}: no SSH after {BOOT_TIMEOUT}s; console:\n"
                    f"{self.console.read_text()[-3000:]}")

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    # --- the header pins, as the kernel sees them --------------------------------------------

    def chip(self):
        """gpiochipN behind /dev/dnspair-gpiochip (the unit's one device)."""
        return self.ssh("basename $(readlink -f /dev/dnspair-gpiochip)").stdout.strip()

    def levels(self, samples=1, every=0.15):
        """[{pin: (direction, level)}] of the Broadcom chip's requested lines, `samples` times
        `every` s apart inside one SSH call, from gpiolib's debugfs summary (lines dnspair holds
        cannot be requested again to be read)."""
        text = self.ssh(f"for i in $(seq {samples}); do cat /sys/kernel/debug/gpio; echo '#sample'; "
                        f"sleep {every}; done").stdout
        out = []
        for sample in text.split("#sample\n")[:samples]:
            section = re.search(r"^gpiochip\d+: GPIOs (\d+)-\d+, parent: platform/[^,]+, pinctrl-bcm283\d:\n"
                                r"((?: .*\n?)*)", sample, re.M)
            assert section, text
            base = int(section.group(1))
            out.append({int(m.group(1)) - base: (m.group(2), m.group(3) == "hi")
                        for m in re.finditer(r"gpio-(\d+) \(.*\) (in|out)\s+(hi|lo)", section.group(2))})
        return out

    def leds(self):
        """(green, amber blinking, red) read off the lines over 2 s, or None if green or red changed
        meanwhile; amber counts as blinking when its level changes (gpiozero's thread, 0.5 s)."""
        seen = [tuple(lv.get(PINS[n]) == ("out", True) for n in ("green", "amber", "red"))
                for lv in self.levels(samples=14)]
        if len({(g, r) for g, _, r in seen}) > 1:
            return None
        return seen[0][0], len({a for _, a, _ in seen}) == 2, seen[0][2]

    def status(self):
        return json.loads(self.ssh("dnspair status --json").stdout)


@pytest.fixture(scope="module")
def pis(built_mixed, tmp_path_factory):
    tools_installed()
    subprocess.run(["ip", "netns", "add", NS], check=True)
    vms = {}
    try:
        for cmd in (["link", "set", "lo", "up"], ["link", "add", "br0", "type", "bridge"],
                    ["link", "set", "br0", "up"], ["addr", "add", "192.0.2.100/24", "dev", "br0"]):
            subprocess.run(["ip", "-n", NS, *cmd], check=True)
        # One after the other, the slower armhf board first: booting both at once on 2 shared
        # cores stalled the Pi 2B's udev past systemd's 90 s device timeouts (no /boot/firmware).
        for node in ("dns-pm02", "dns-pm01"):
            vms[node] = Pi(built_mixed, tmp_path_factory.mktemp(f"raspi-{node}"), node)
            vms[node].wait_for_ssh()
        # What NTP would do (the test LAN has no server): both clocks from the host's. Booted
        # minutes apart from one build date, they differed by the boot gap, and past 300 s the
        # secondary's TSIG-signed transfers were refused, so the pair never agreed on the zones.
        for vm in vms.values():
            r = vm.ssh(f"date -s @{time.time():.0f}")
            assert r.returncode == 0, f"{vm.node}: date -s: {r.stderr}"
        # The secondary's transfers refused before that (TSIG BADTIME) left bind taking the
        # primary for unreachable, which it remembers for 10 minutes: the zones came 7 minutes
        # after the clocks agreed (CI, 2026-12-07). A fresh named forgets it.
        r = vms["dns-pm02"].ssh("systemctl restart named")
        assert r.returncode == 0, f"dns-pm02: restart named: {r.stderr}"
        yield vms
    finally:
        for vm in vms.values():
            vm.close()
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)


def wait_until(what, predicate, seconds):
    deadline = time.monotonic() + seconds
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"not within {seconds}s: {what}"
        time.sleep(2)
    return result


@pytest.mark.parametrize("node", NODES)
def test_the_card_boots_on_its_board_from_the_sd_card_with_its_own_boot_files(pis, node):
    vm = pis[node]
    assert vm.ssh("tr -d '\\0' < /proc/device-tree/model").stdout.startswith(vm.model)
    assert vm.ssh("cat /proc/cmdline").stdout.strip() == f"{vm.card_cmdline} {vm.test_cmdline}"
    assert vm.ssh("findmnt -n -o SOURCE /").stdout.strip() == "/dev/mmcblk0p2"
    assert vm.ssh("findmnt -n -o SOURCE /boot/firmware").stdout.strip() == "/dev/mmcblk0p1"
    assert vm.ssh("ls /sys/bus/virtio/devices 2>/dev/null | wc -l").stdout.strip() == "0"
    state = vm.ssh("systemctl is-system-running --wait", timeout=BOOT_TIMEOUT)
    assert state.stdout.strip() == "running", failed_units(vm)
    assert vm.ssh("systemctl is-active dnspair named").stdout.split() == ["active", "active"]


@pytest.mark.parametrize("node", NODES)
def test_root_grew_to_fill_the_card_on_first_boot(pis, node):
    vm = pis[node]
    size = int(vm.ssh("df -B1 --output=size / | tail -1").stdout)
    assert size > CARD - (512 << 20), f"root is {size} bytes on an {CARD}-byte card (image: {vm.root_size})"
    b = "/sys/class/block"
    end = vm.ssh(f"echo $(( $(cat {b}/mmcblk0p2/start) + $(cat {b}/mmcblk0p2/size) ))"
                 f" $(cat {b}/mmcblk0/size)").stdout.split()
    # the partition ends where the card does (growpart leaves the last few sectors, < 1 MiB)
    assert 0 <= int(end[1]) - int(end[0]) < 2048, end
    log = vm.ssh("journalctl -b -o cat -u dnspair-grow-root").stdout
    assert "root file system: " in log and "CHANGED:" in log, log
    assert vm.ssh("test -e /var/lib/dnspair-image/root-grown && echo once").stdout.strip() == "once"


@pytest.mark.parametrize("node", NODES)
def test_the_unit_drives_the_broadcom_chip_with_lgpio(pis, node):
    vm = pis[node]
    chip = vm.chip()
    assert re.fullmatch(r"gpiochip\d+", chip), chip
    assert re.search(rf"^{chip} \[pinctrl-bcm283\d\]", vm.ssh("gpiodetect").stdout, re.M)
    log = vm.ssh("journalctl -b -o cat -u dnspair").stdout
    assert re.search(rf"GPIO: LGPIOFactory on /dev/{chip} \(pinctrl-bcm283\d\)", log), log[-3000:]
    assert "no GPIO" not in log and "LED error" not in log, log[-3000:]
    fds = vm.ssh("ls -l /proc/$(systemctl show -p MainPID --value dnspair)/fd").stdout
    assert f"/dev/{chip}" in fds, fds
    assert "/dev/gpiomem" not in fds and "/dev/mem" not in fds
    props = vm.ssh("systemctl show dnspair -p DevicePolicy -p DeviceAllow -p Environment").stdout
    assert "DevicePolicy=closed" in props and "DeviceAllow=/dev/dnspair-gpiochip rw" in props, props
    assert "LG_WD=/run/dnspair" in props, props


@pytest.mark.parametrize("node", NODES)
def test_gpioinfo_lists_the_led_and_button_lines_as_dnspairs(pis, node):
    vm = pis[node]
    info = vm.ssh(f"gpioinfo {vm.chip()}").stdout
    for name, pin in PINS.items():
        line = re.search(rf"^\s*line\s+{pin}:.*$", info, re.M)
        assert line, info
        direction = "input" if name == "button" else "output"
        assert direction in line.group(0) and "[used" in line.group(0), line.group(0)


def lines_show_the_status(vm, wanted, seconds=180):
    """Waits until vm's status satisfies wanted(lights) and its LED lines show those lights;
    returns them."""
    seen = []

    def shown():
        st = vm.status()
        want, got = lights(st), vm.leds()
        seen[:] = [want, got, st["vips"], st.get("findings")]
        return wanted(want) and got == want and want
    try:
        return wait_until(f"{vm.node}'s LED lines showing its status", shown, seconds)
    except AssertionError as e:
        raise AssertionError(f"{e}: status lights {seen[0]}, lines {seen[1]}, vips {seen[2]}, "
                             f"findings {seen[3]}") from None


def test_the_led_lines_show_the_status_and_follow_a_bind_stop(pis):
    pm01, pm02 = pis["dns-pm01"], pis["dns-pm02"]
    # The boards boot one after the other, so dns-pm02 served VIP1 until dns-pm01 came up, and
    # the example's failback is manual: the operator's cleanup sends it home.
    def peer_heard():  # the daemon may still be starting (no status yet) when run on its own
        r = pm01.ssh("dnspair status --json")
        return r.returncode == 0 and all(n["online"] for n in json.loads(r.stdout)["nodes"])
    wait_until("dns-pm01 hears dns-pm02",
               lambda: peer_heard() and pm01.ssh("dnspair cleanup").returncode == 0, 300)
    # A healthy pair: each node green on its own VIP, no amber, no red.
    for vm in (pm01, pm02):
        assert lines_show_the_status(vm, lambda g: g == (True, False, False), 300)
    pm01.ssh("systemctl stop named")
    try:
        # dns-pm01's DNS failed: its red lights, its green goes out; dns-pm02 takes its VIP: amber blinks.
        assert lines_show_the_status(pm01, lambda g: g[0] is False and g[2] is True)
        assert lines_show_the_status(pm02, lambda g: g[1] is True)
    finally:
        pm01.ssh("systemctl start named")


def test_stopping_the_unit_frees_the_lines(pis):
    vm = pis["dns-pm02"]
    vm.ssh("systemctl stop dnspair")
    try:
        (lv,) = vm.levels()
        assert all(lv.get(p) is None for p in PINS.values()), lv  # no longer requested
        info = vm.ssh(f"gpioinfo {vm.chip()}").stdout
        assert not re.search(rf"^\s*line\s+{PINS['red']}:.*\[used", info, re.M), info
    finally:
        vm.ssh("systemctl start dnspair")
