"""Long, opt-in (marker `slow_image`, not in CI): the rolling upgrade on two emulated nodes.

Both cards (arm64, one build) boot under qemu's virt machine on one bridge in a namespace this
test makes (TEST-NET-1 only; the namespace is the client at 192.0.2.100 and serves the apt
repository). The test makes a local apt repository holding `dnspair-canary` 1.0, installs it
on both nodes, then adds 2.0 (whose postinst asks for a reboot, as a kernel or libc update
would), drops an arm64 update bundle built by `build.sh --update-bundle` into each node's
/var/lib/dnspair/updates, and runs `systemctl start dnspair-upgrade` on node 1, then on node 2,
while the client asks both VIPs. Proves: no query lost, both nodes on canary 2.0 and on the
bundle's dnspair, each went through its reboot and was resumed by dnspair-upgrade-resume.service.

`test_a_broken_bundle_is_rolled_back_on_an_emulated_node`: a bundle built from a copy of this
tree whose daemon exits at once (it installs and accepts the config) is given to node 1 with
`--no-apt --healthy-within 180`; proves, on real systemd, that the node switches back to the
release it ran, is back in service, reports the failed upgrade, and no query is lost.

Test-only: the nodes' Debian sources are moved aside (only the local repository is reachable).
Run: ./test.sh -m slow_image tests/image/test_upgrade_qemu.py (time in README.md).
"""
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from test_boot import BOOT_TIMEOUT, qemu_installed
from test_pair import NODES, NS, LanVM, ns, wait_until

pytestmark = pytest.mark.slow_image

REPO = Path(__file__).resolve().parents[2]
NEW = "0.1.0+qemu2"
BROKEN = "0.1.0+broken"
VIPS = ("192.0.2.11", "192.0.2.12")


def deb(work: Path, version: str) -> Path:
    root = work / f"canary-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr/share/dnspair-canary").mkdir(parents=True)
    (root / "usr/share/dnspair-canary/version").write_text(version + "\n")
    (root / "DEBIAN/control").write_text(
        f"Package: dnspair-canary\nVersion: {version}\nArchitecture: all\nMaintainer: test <t@example.org>\n"
        "Description: a package the upgrade test updates\n")
    post = root / "DEBIAN/postinst"
    post.write_text("#!/bin/sh\nset -e\n" + ("touch /var/run/reboot-required\n" if version != "1.0" else ""))
    post.chmod(0o755)
    out = work / "repo" / f"dnspair-canary_{version}_all.deb"
    out.parent.mkdir(exist_ok=True)
    subprocess.run(["dpkg-deb", "-Zgzip", "--build", "--root-owner-group", str(root), str(out)],
                   check=True, capture_output=True)
    return out


def index(repo: Path):
    """A flat repository's Packages file (what dpkg-scanpackages writes)."""
    import hashlib
    parts = []
    for f in sorted(repo.glob("*.deb")):
        control = subprocess.run(["dpkg-deb", "-f", str(f)], check=True, capture_output=True,
                                 text=True).stdout.strip()
        data = f.read_bytes()
        parts.append(f"{control}\nFilename: ./{f.name}\nSize: {len(data)}\n"
                     f"SHA256: {hashlib.sha256(data).hexdigest()}\n")
    (repo / "Packages").write_text("\n".join(parts))


class Client(threading.Thread):
    """Asks both VIPs every 0.2 s from the namespace (dig, 2 s timeout); records misses."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop, self.asked, self.missed = threading.Event(), 0, []

    def run(self):
        while not self.stop.is_set():
            for vip in VIPS:
                r = ns("dig", "+short", "+time=2", "+tries=1", f"@{vip}", "localhost", "A", check=False)
                self.asked += 1
                if r.stdout.strip() != "127.0.0.1":
                    self.missed.append((time.strftime("%H:%M:%S"), vip))
            time.sleep(0.2)


@pytest.fixture(scope="module")
def setup(built_upgrade, tmp_path_factory):
    qemu_installed()
    work = tmp_path_factory.mktemp("upgrade-qemu")
    r = subprocess.run([str(REPO / "build.sh"), "--update-bundle", "--arch", "arm64", "--bundle-version", NEW,
                        "--out", str(work / "bundle")], capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    bundle = next((work / "bundle").glob("dnspair-update-*.tar.gz"))
    deb(work, "1.0")
    index(work / "repo")
    subprocess.run(["ip", "netns", "add", NS], check=True)
    vms, procs = {}, []
    try:
        for cmd in (["link", "set", "lo", "up"], ["link", "add", "br0", "type", "bridge"],
                    ["link", "set", "br0", "up"], ["addr", "add", "192.0.2.100/24", "dev", "br0"]):
            subprocess.run(["ip", "-n", NS, *cmd], check=True)
        procs.append(subprocess.Popen(["ip", "netns", "exec", NS, sys.executable, "-m", "http.server", "8080",
                                       "--bind", "192.0.2.100", "--directory", str(work / "repo")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for node in NODES:
            vms[node] = LanVM(built_upgrade, tmp_path_factory.mktemp(f"up-{node}"), node)
        for vm in vms.values():
            vm.wait_for_ssh()
        yield work, bundle, vms
    finally:
        for vm in vms.values():
            vm.close()
        for p in procs:
            p.terminate()
            p.wait(10)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)


def put(vm, local: Path, remote: str):
    with open(local, "rb") as f:
        r = subprocess.run(["ip", "netns", "exec", NS, "ssh", "-i", str(vm.key), "-o", "BatchMode=yes",
                            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                            "-o", "LogLevel=ERROR", f"root@{vm.address}", f"cat > {remote}"],
                           stdin=f, capture_output=True, timeout=600)
    assert r.returncode == 0, r.stderr


def ok(vm, cmd, timeout=600):
    r = vm.ssh(cmd, timeout=timeout)
    assert r.returncode == 0, f"{cmd}: {r.stdout}{r.stderr}"
    return r.stdout


def canary(vm):
    return vm.ssh("dpkg-query -W -f '${Version}' dnspair-canary").stdout.strip()


def last_job(vm):
    try:
        r = vm.ssh("cat /var/lib/dnspair/upgrade.last.json", timeout=60)
    except subprocess.TimeoutExpired:
        return None
    return json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else None


def both_vips_answer() -> bool:
    """Each VIP answers the client's query for localhost."""
    return all(ns("dig", "+short", "+time=2", "+tries=1", f"@{v}", "localhost", check=False)
               .stdout.strip() == "127.0.0.1" for v in VIPS)


def test_rolling_upgrade_of_two_emulated_nodes(setup):
    work, bundle, vms = setup
    started = time.monotonic()
    wait_until("both VIPs answer", both_vips_answer, BOOT_TIMEOUT)
    for vm in vms.values():
        ok(vm, "mkdir -p /root/apt-sources-aside && mv /etc/apt/sources.list /etc/apt/sources.list.d/* "
               "/root/apt-sources-aside/ 2>/dev/null; "
               "echo 'deb [trusted=yes] http://192.0.2.100:8080 ./' > /etc/apt/sources.list.d/local.list; "
               "apt-get -q update && DEBIAN_FRONTEND=noninteractive apt-get -q -y install dnspair-canary")
        assert canary(vm) == "1.0"
        ok(vm, "mkdir -p /var/lib/dnspair/updates")
        put(vm, bundle, f"/var/lib/dnspair/updates/{bundle.name}")
        put(vm, Path(f"{bundle}.sha256"), f"/var/lib/dnspair/updates/{bundle.name}.sha256")
    deb(work, "2.0")
    index(work / "repo")
    client = Client()
    client.start()
    times = {}
    try:
        for node in NODES:   # node 1, then node 2
            vm, t0 = vms[node], time.monotonic()
            ok(vm, "rm -f /var/lib/dnspair/upgrade.last.json; systemctl start --no-block dnspair-upgrade")
            wait_until(f"{node}'s upgrade finished", lambda vm=vm: (last_job(vm) or {}).get("phase")
                       in ("done", "failed"), 60 * 60)
            job = last_job(vm)
            times[node] = time.monotonic() - t0
            assert job["phase"] == "done", (job, vm.ssh("journalctl -b -u 'dnspair-upgrade*' --no-pager "
                                                        "| tail -40").stdout)
            assert set(job["done"]) == {"bundle", "apt", "reboot"}, job
            assert canary(vm) == "2.0"
            st = json.loads(ok(vm, "dnspair status --json"))
            assert st["daemon"]["version"] == NEW
            assert not any(n["maintenance"] or n["standby"] for n in st["nodes"])
            resumed = vm.ssh("journalctl -b -u dnspair-upgrade-resume --no-pager").stdout
            assert "upgraded:" in resumed, resumed
    finally:
        client.stop.set()
        client.join(30)
    total = time.monotonic() - started
    print(f"\nupgrade times (TCG): {', '.join(f'{n} {t:.0f} s' for n, t in times.items())}; "
          f"whole test after boot {total:.0f} s; client asked {client.asked}, missed {len(client.missed)}")
    assert client.asked > 100 and client.missed == [], client.missed
    assert os.path.exists(bundle)


def broken_bundle(work: Path) -> Path:
    """An arm64 bundle of this tree whose daemon exits at once (as tests/net/test_upgrade.py's)."""
    tree = work / "broken-tree"
    tree.mkdir()
    for item in ("build.sh", "image", "src", "pyproject.toml", "constraints.txt", "README.md", "overlays"):
        (shutil.copytree if (REPO / item).is_dir() else shutil.copy2)(REPO / item, tree / item)
    cli = tree / "src/dnspair/cli.py"
    text = cli.read_text()
    assert "def cmd_daemon(args) -> int:\n" in text
    broken = 'def cmd_daemon(args) -> int:\n    raise SystemExit("broken on purpose")\n'
    cli.write_text(text.replace("def cmd_daemon(args) -> int:\n", broken, 1))
    r = subprocess.run([str(tree / "build.sh"), "--update-bundle", "--arch", "arm64",
                        "--bundle-version", BROKEN, "--out", str(work / "broken")],
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    return next((work / "broken").glob(f"dnspair-update-{BROKEN}-aarch64.tar.gz"))


def test_a_broken_bundle_is_rolled_back_on_an_emulated_node(setup):
    work, _, vms = setup
    vm = vms["dns-pm01"]
    bundle = broken_bundle(work)
    wait_until("both VIPs answer", both_vips_answer, BOOT_TIMEOUT)
    before = ok(vm, "readlink -f /opt/dnspair").strip()
    version = json.loads(ok(vm, "dnspair status --json"))["daemon"]["version"]
    put(vm, bundle, f"/root/{bundle.name}")
    put(vm, Path(f"{bundle}.sha256"), f"/root/{bundle.name}.sha256")
    client = Client()
    client.start()
    t0 = time.monotonic()
    try:
        ok(vm, "rm -f /var/lib/dnspair/upgrade.last.json; systemd-run --unit dnspair-upgrade-broken "
               "--service-type=oneshot --no-block dnspair upgrade --no-apt --healthy-within 180 "
               f"--bundle /root/{bundle.name}")
        wait_until("the broken upgrade finished", lambda: (last_job(vm) or {}).get("phase")
                   in ("done", "failed"), 60 * 60)
        seconds = time.monotonic() - t0
        wait_until("both VIPs answer again", both_vips_answer, 300)
    finally:
        client.stop.set()
        client.join(30)
    job = last_job(vm)
    log = vm.ssh("journalctl -u dnspair-upgrade-broken --no-pager").stdout
    assert job["phase"] == "failed" and "bundle" in job["done"] and "rollback" in job["done"], (job, log)
    assert f"rolled back to {before}" in log, log
    assert ok(vm, "readlink -f /opt/dnspair").strip() == before
    st = json.loads(ok(vm, "dnspair status --json"))
    assert st["daemon"]["version"] == version
    assert not any(n["maintenance"] or n["standby"] for n in st["nodes"]), st["nodes"]
    failed = [f for f in st["failed_actions"] if f["what"] == "upgrade"]
    assert failed and "rolled back" in failed[0]["why"], st["failed_actions"]
    print(f"\nbroken bundle rolled back (TCG): {seconds:.0f} s; client asked {client.asked}, "
          f"missed {len(client.missed)}")
    assert client.asked > 100 and client.missed == [], client.missed
