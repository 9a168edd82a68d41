"""`dnspair upgrade` on the namespace network: real bind, real daemons installed from update
bundles that `build.sh --update-bundle` made from this tree, the real adapters (control socket,
bundle checksum, venv release, atomic switch, rollback).

What stands in for the appliance: no systemd as PID 1 here, so each node's daemon runs under a
small loop that restarts it like the unit's Restart=always, and `systemctl restart dnspair` is
a SIGTERM to it (DNSPAIR_UPGRADE_RESTART). No apt and no reboot: those run in the planner's unit
tests (tests/unit/test_upgrade_plan.py) and in the emulated pair (tests/image/test_upgrade_qemu.py).

The rolling-upgrade test is opt-in (marker `slow_net`, not in CI: it takes minutes, and CI's
45 are nearly full): ./test.sh -m slow_net tests/net/test_upgrade.py (time in README.md). The
refusal test, which builds no bundle, stays in CI.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

import lab as labmod
from pair import NODE_NAME, Pair
from test_faults_common import Watcher

REPO = Path(__file__).resolve().parents[2]
BASE, NEW, BROKEN = "0.1.0+base", "0.1.0+new", "0.1.0+broken"
PYTHON = "/usr/bin/python3"

HOST_GROUPS = "admin_group: root, monitor_group: adm"


def build_bundle(out: Path, version: str, tree: Path = REPO) -> Path:
    r = subprocess.run([str(tree / "build.sh"), "--update-bundle", "--arch", "native",
                        "--bundle-version", version, "--out", str(out)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    found = list(out.glob(f"dnspair-update-{version}-*.tar.gz"))
    assert len(found) == 1 and Path(str(found[0]) + ".sha256").exists(), list(out.iterdir())
    return found[0]


def broken_tree(dst: Path) -> Path:
    """This tree with a daemon that exits at once: it installs and checks the config fine."""
    for item in ("build.sh", "image", "src", "pyproject.toml", "constraints.txt", "README.md",
                 "overlays"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst / item)
    cli = dst / "src/dnspair/cli.py"
    text = cli.read_text()
    broken = 'def cmd_daemon(args) -> int:\n    raise SystemExit("broken on purpose")\n'
    cli.write_text(text.replace('def cmd_daemon(args) -> int:\n', broken, 1))
    return dst


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    if os.geteuid() != 0 or not os.path.exists(PYTHON):
        pytest.skip("needs root and /usr/bin/python3")
    out = tmp_path_factory.mktemp("bundles")
    tree = broken_tree(tmp_path_factory.mktemp("broken"))
    return {v: build_bundle(out, v, t) for v, t in ((BASE, REPO), (NEW, REPO), (BROKEN, tree))}


class KernelTimedWatcher(Watcher):
    """The Watcher, judged by when the kernel received each answer (SO_TIMESTAMPNS), not by
    when this thread got to read it: on this loaded 2-core machine the thread itself stalls
    for over a second at times, which is not a query the pair lost. A query is lost when no
    answer arrives within `timeout` (3 s: a VIP nobody holds never answers); answers after
    more than 1 s are kept in `late` and reported."""

    def __post_init__(self):
        super().__post_init__()
        self.late = []   # (sent, vip, seconds): answered, but after more than 1 s
        for sock in self._socks.values():
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)

    def _ask(self, vip):
        s = self._socks[vip]
        qid = int.from_bytes(os.urandom(2), "big")
        sent = time.time()
        deadline = time.monotonic() + self.timeout
        try:
            s.sendto(labmod.dns_query_packet(labmod.TEST_NAME, "A", qid), (vip, 53))
        except OSError:
            return None
        while True:
            left = deadline - time.monotonic()
            s.settimeout(max(left, 0.0) or None)
            if left <= 0:
                s.setblocking(False)   # past the deadline: only what already arrived
            try:
                buf, anc, _, _ = s.recvmsg(4096, 64)
            except (TimeoutError, BlockingIOError, OSError):
                return None
            try:
                rid, _rcode, addrs = labmod.dns_parse_response(buf)
            except Exception:  # noqa: BLE001 - a garbled answer is no answer
                continue
            if rid != qid:
                continue
            arrived = next((struct.unpack("qq", data[:16]) for lvl, kind, data in anc
                            if lvl == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS), None)
            took = None if arrived is None else arrived[0] + arrived[1] / 1e9 - sent
            if took is None or took > self.timeout:
                return None
            if took > 1.0:
                self.late.append((sent, vip, took))
            return next((labmod.WHO[a] for a in addrs if a in labmod.WHO), None)

    def lost_at(self, since, until):
        """Wall-clock times of the unanswered queries, for the failure message."""
        off = time.time() - time.monotonic()
        return [(s.vip, time.strftime("%H:%M:%S", time.localtime(s.t + off)) + f"{(s.t + off) % 1:.3f}"[1:])
                for s in self.samples if s.node is None and since <= s.t < until]


SO_TIMESTAMPNS = 35   # Linux (SCM_TIMESTAMPNS has the same value)

SUPERVISOR = """\
# stand-in for systemd's Restart=always (this machine has no systemd as PID 1)
while [ ! -e "$DIR/stop" ]; do
    "$DIR/opt/dnspair/bin/dnspair" daemon --config "$CFG" --node "$NAME" >> "$DIR/dnspair.log" 2>&1 &
    echo $! > "$DIR/daemon.pid"
    wait $!
    sleep 0.3
done
"""


class Node:
    """One node's /opt (its releases and the /opt/dnspair link) and its supervised daemon."""

    def __init__(self, lab, pair: Pair, node: str):
        self.lab, self.pair, self.node, self.name = lab, pair, node, NODE_NAME[node]
        self.dir = lab.workdir / node
        self.link = self.dir / "opt" / "dnspair"
        self.releases = self.dir / "opt" / "dnspair-releases"
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NOTIFY_SOCKET")}
        self.env.update(DNSPAIR_UPGRADE_LINK=str(self.link), DNSPAIR_UPGRADE_RELEASES=str(self.releases),
                        DNSPAIR_UPGRADE_REBOOT_FLAG=str(self.dir / "reboot-required"),
                        DNSPAIR_UPGRADE_PYTHON=PYTHON,
                        DNSPAIR_UPGRADE_RESTART=f"sh -c 'kill $(cat {self.dir}/daemon.pid) || true'",
                        DNSPAIR_UPGRADE_APT="false")

    def install_first(self, bundle: Path):
        """What build.sh does in the image: a release venv behind the link."""
        top = self.dir / "unpacked"
        top.mkdir(parents=True)
        subprocess.run(["tar", "-C", str(top), "-xzf", str(bundle)], check=True)
        rel = self.releases / f"{BASE}-image"
        subprocess.run([PYTHON, "-m", "venv", "--system-site-packages", str(rel)], check=True)
        subprocess.run([str(rel / "bin/pip"), "install", "-q", "--no-index", "--find-links",
                        str(top / "dnspair-update/wheels"), "-c", str(top / "dnspair-update/constraints.txt"),
                        f"dnspair=={BASE}"], check=True, capture_output=True)
        shutil.rmtree(top)
        self.link.symlink_to(rel)

    def start(self):
        env = dict(self.env, DIR=str(self.dir), CFG=str(self.pair.configs[self.node]), NAME=self.name,
                   PYTHONUNBUFFERED="1")
        self.lab.popen(self.node, ["sh", "-c", SUPERVISOR], env=env, what=f"supervisor@{self.node}")

    def stop(self):
        (self.dir / "stop").touch()

    def upgrade(self, *args, popen=False, timeout=300):
        cmd = ["ip", "netns", "exec", self.lab.ns[self.node], str(self.link / "bin/dnspair"), "upgrade",
               "--config", str(self.pair.configs[self.node]), "--no-apt", *map(str, args)]
        if popen:
            return subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)

    def status(self) -> dict:
        return self.pair.status(self.node)

    def me(self) -> dict:
        return next(n for n in self.status()["nodes"] if n["self"])


def logs_around(lab, lost, seconds=2.0) -> str:
    """Both daemons' log lines within `seconds` of each lost query (HH:MM:SS.mmm)."""
    def secs(hms):
        h, m, rest = hms.split(":")
        return int(h) * 3600 + int(m) * 60 + float(rest)
    out = []
    for node in labmod.NODES:
        for line in (lab.workdir / node / "dnspair.log").read_text().splitlines():
            stamp = line[11:23].replace(",", ".")
            try:
                t = secs(stamp)
            except ValueError:
                continue
            if any(abs(t - secs(at)) <= seconds for _, at in lost):
                out.append(f"{node}: {line}")
    return "\n".join(out)


@pytest.mark.slow_net
def test_rolling_upgrade_of_both_nodes_loses_no_query_and_a_broken_bundle_rolls_back(lab, bundles):
    # A dead time of 1 s: this shared machine stalls processes for a few tenths of a second under
    # load, and a stall read as a death is a fault test's business, not an upgrade's.
    # Likewise a bind slowed past 0.25 s by the load (the fault tests' "bind hung") must not
    # count as failed here: the node serving both VIPs alone would drop them.
    # Groups this host has: each release's `check-config --key` (the upgrade's own check) refuses a
    # control group that does not exist, as it should on the appliance, which has dnspair's.
    pair = Pair(lab, extra="heartbeat: {interval: 0.1, dead_time: 1.0, suspect_after: 0.5}\n",
                control=HOST_GROUPS)
    for path in pair.configs.values():
        text = path.read_text().replace("failure_threshold: 1\n", "failure_threshold: 5\n")
        path.write_text(text.replace("  type: A\n", "  type: A\n  timeout: 1.0\n", 1))
    nodes = {n: Node(lab, pair, n) for n in labmod.NODES}
    for n in nodes.values():
        n.install_first(bundles[BASE])
    for n in nodes.values():
        n.start()
    for n in labmod.NODES:
        pair.wait(lambda n=n: pair.me(n)["ready"], f"{n} ready", 60)
    pair.wait_served(labmod.VIP1, "node1")
    pair.wait_served(labmod.VIP2, "node2")
    n1, n2 = nodes["node1"], nodes["node2"]
    assert n1.status()["daemon"]["version"] == BASE

    with KernelTimedWatcher(lab, timeout=3.0) as w:
        t0 = time.monotonic()
        # node 1, and node 2 refused while node 1 is in maintenance
        p = n1.upgrade("--bundle", bundles[NEW], popen=True)
        pair.wait(lambda: next(x for x in n2.status()["nodes"] if not x["self"])["maintenance"],
                  "node2 sees node1's maintenance flag", 30)
        r2 = n2.upgrade("--bundle", bundles[NEW])
        assert r2.returncode == 1 and "peer dns-pm01 is in maintenance" in r2.stderr, r2.stderr
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, out + err + pair.logs()
        assert f"upgraded: bundle (dnspair {NEW})" in out
        print(f"\nnode1 upgraded in {time.monotonic() - t0:.1f} s")
        # then node 2
        r2 = n2.upgrade("--bundle", bundles[NEW])
        assert r2.returncode == 0, r2.stdout + r2.stderr + pair.logs()
        pair.wait_served(labmod.VIP1, "node1")
        pair.wait_served(labmod.VIP2, "node2")
        t1 = time.monotonic()
    summary = (f"{w.summary(t0, t1)}; lost at {w.lost_at(t0, t1)}; {len(w.late)} answered after > 1 s\n"
               + logs_around(lab, w.lost_at(t0, t1)))
    assert all(len(w.of(v, t0, t1)) > 100 for v in labmod.VIPS), summary
    assert w.lost(labmod.VIP1, t0, t1) == 0 and w.lost(labmod.VIP2, t0, t1) == 0, summary
    for n in nodes.values():
        assert n.status()["daemon"]["version"] == NEW
        assert os.path.realpath(n.link).startswith(str(n.releases / NEW))
        kept = sorted(x.name.split("-")[0] for x in n.releases.iterdir())
        assert kept == [BASE, NEW], kept             # the new release and the one to roll back to
        me = n.me()
        assert not me["standby"] and not me["maintenance"]

    # A broken bundle on node 1: it installs, its daemon never comes up; rolled back.
    before = os.path.realpath(n1.link)
    with KernelTimedWatcher(lab, timeout=3.0) as w:
        t0 = time.monotonic()
        r = n1.upgrade("--bundle", bundles[BROKEN], "--healthy-within", "10")
        t1 = time.monotonic()
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"rolled back to {before}" in r.stdout and "not healthy within 10 s" in r.stdout, r.stdout
    assert os.path.realpath(n1.link) == before
    assert n1.status()["daemon"]["version"] == NEW
    pair.wait_served(labmod.VIP1, "node1")
    assert w.lost(labmod.VIP1, t0, t1) == 0 and w.lost(labmod.VIP2, t0, t1) == 0, (
        f"{w.summary(t0, t1)}; lost at {w.lost_at(t0, t1)}\n{logs_around(lab, w.lost_at(t0, t1))}")
    failed = [f for f in n1.status()["failed_actions"] if f["what"] == "upgrade"]
    assert failed and "rolled back" in failed[0]["why"]
    last = json.loads((lab.workdir / "node1" / "state" / "upgrade.last.json").read_text())
    assert last["phase"] == "failed" and "rollback" in last["done"]

    # A bundle whose checksum does not match is refused before anything changes.
    bad = lab.workdir / bundles[NEW].name
    shutil.copy(bundles[NEW], bad)
    Path(str(bad) + ".sha256").write_text("0" * 64 + "  x\n")
    r = n1.upgrade("--bundle", bad)
    assert r.returncode == 1 and "does not match" in r.stderr, r.stderr
    assert not n1.me()["maintenance"]
    for n in nodes.values():
        n.stop()


def test_upgrade_is_refused_while_the_peer_is_down(lab):
    """Through the tree's own dnspair (no bundle needed to refuse)."""
    pair = Pair(lab)
    pair.start()
    pair.stop("node2")
    pair.wait(lambda: not next(x for x in pair.status("node1")["nodes"] if not x["self"])["online"],
              "node2 offline")
    state = lab.workdir / "node1" / "state"

    def refused(says, *args):
        """One line on stderr, exit 1, and nothing changed: not drained, no job written."""
        before = pair.me("node1")
        r = pair.cli("node1", "upgrade", *args)
        assert r.returncode == 1 and says in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and not r.stdout.strip(), r.stdout + r.stderr
        after = pair.me("node1")
        assert (after["standby"], after["maintenance"]) == (before["standby"], before["maintenance"])
        assert not (state / "upgrade.json").exists()

    refused("/nonexistent.tar.gz: no such bundle", "--no-apt", "--bundle", "/nonexistent.tar.gz")
    refused("peer dns-pm02 is not reachable")
    assert not pair.me("node1")["standby"] and not pair.me("node1")["maintenance"]
    # This node already in maintenance (an upgrade that failed in standby, say): refused too.
    from dnspair.shell import upgrade as up
    from dnspair.shell.files import load_config
    host = up.Host(load_config(str(pair.configs["node1"])), str(pair.configs["node1"]))
    assert host.command("maintenance", "on") is None
    pair.wait(lambda: pair.me("node1")["maintenance"], "node1 in maintenance")
    refused("this node is already in maintenance")
    assert pair.me("node1")["maintenance"] and not pair.me("node1")["standby"]
