"""The HA systems the benchmark compares, each as an adapter over the namespace lab.

An adapter writes its per-run configs into a temp dir, starts and stops its daemon on both
nodes (by PID, through the lab), and knows how to do an orderly stop and a planned move.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from lab import NODE_ADDR, NODES, VIP1, VIP2, Lab

PEER = {"node1": "node2", "node2": "node1"}
PRIO = {("node1", VIP1): 200, ("node2", VIP1): 100, ("node1", VIP2): 100, ("node2", VIP2): 200}


class System:
    name = "?"
    label = "?"
    # how drop_heartbeats() should narrow to this system's heartbeats
    heartbeat_match: dict = {}
    settle_timeout = 20.0  # start-up until both VIPs are home

    def __init__(self, lab: Lab, workdir: Path):
        self.lab = lab
        self.workdir = Path(workdir) / self.name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}

    def available(self) -> str | None:
        """None if it can run here, else why not."""
        return None

    def prepare(self):
        """Write configs (once per benchmark)."""

    def start(self):
        for node in NODES:
            self.procs[node] = self.start_node(node)

    def start_node(self, node: str) -> subprocess.Popen:
        raise NotImplementedError

    def stop(self):
        for node in NODES:
            p = self.procs.pop(node, None)
            if p is not None:
                self.lab.stop_process(p, grace=10)

    def orderly_stop(self, node: str):
        """Begin an orderly stop of `node`'s daemon; returns at once."""
        self.lab.send_signal(self.procs[node], signal.SIGTERM)

    def planned_move(self, node: str):
        """Ask `node` to hand its VIPs over (maintenance)."""
        raise NotImplementedError

    def end_planned_move(self, node: str):
        pass

    def rest_pid(self, node: str = "node1") -> int:
        return self.procs[node].pid

    def log(self, node: str) -> str:
        try:
            return (self.workdir / f"{node}.log").read_text(errors="replace")
        except OSError:
            return ""

    def describe(self) -> str:
        return self.label


# --------------------------------------------------------------------------- keepalived

CHECK_SCRIPT = """#!/bin/sh
# DNS track script: fails while the maintenance flag exists or bind does not answer.
[ -e "{flag}" ] && exit 1
{wrap}/usr/bin/dig +time=1 +tries=1 +short @127.0.0.1 localhost A 2>/dev/null | grep -qx 127.0.0.1
"""


class Keepalived(System):
    """Debian's keepalived, VRRP unicast between the node addresses, one instance per VIP,
    both nodes start BACKUP, a DNS track script (dig against the local bind) with its own
    timeout. Preemption stays on (keepalived's default): with `nopreempt` the start-up
    election is a race whoever's timer fires first keeps both VIPs, so runs would not start
    from the same placement. Within a run the failed node never comes back, so no fault
    measured here depends on failback."""

    def __init__(self, lab, workdir, tuned: bool):
        self.tuned = tuned
        self.name = "keepalived-tuned" if tuned else "keepalived-default"
        if tuned:
            self.label = "keepalived tuned (VRRPv3, advert 0.1 s, dig check every 1 s, 0.5 s limit)"
        else:
            self.label = "keepalived default (VRRPv2, advert 1 s, dig check every 1 s, 2 s limit)"
        self.heartbeat_match = {"proto": "vrrp"}
        self.settle_timeout = 3.0 if tuned else 8.0
        # keepalived takes whole seconds for script interval/timeout; the tuned check bounds
        # dig itself with coreutils timeout so a hung bind fails the check in 0.5 s.
        self.script_timeout = 1 if tuned else 2
        self.wrap = "/usr/bin/timeout 0.5 " if tuned else ""
        super().__init__(lab, workdir)

    def available(self):
        if not Path("/usr/sbin/keepalived").exists():
            return "keepalived not installed (apt-get install keepalived)"
        if not Path("/usr/bin/dig").exists():
            return "dig not installed (apt-get install bind9-dnsutils)"
        return None

    def flag(self, node):
        return self.workdir / node / "maintenance"

    def prepare(self):
        for node in NODES:
            d = self.workdir / node
            d.mkdir(parents=True, exist_ok=True)
            chk = d / "chk_dns.sh"
            chk.write_text(CHECK_SCRIPT.format(flag=self.flag(node), wrap=self.wrap))
            chk.chmod(0o755)
            advert = "0.1" if self.tuned else "1"
            version = 3 if self.tuned else 2
            instances = []
            for i, vip in enumerate((VIP1, VIP2), start=1):
                instances.append(f"""
vrrp_instance VI_{i} {{
    state BACKUP
    interface eth0
    virtual_router_id {50 + i}
    priority {PRIO[(node, vip)]}
    advert_int {advert}
    unicast_src_ip {NODE_ADDR[node]}
    unicast_peer {{
        {NODE_ADDR[PEER[node]]}
    }}
    virtual_ipaddress {{
        {vip}/24 dev eth0
    }}
    track_script {{
        chk_dns
    }}
}}
""")
            (d / "keepalived.conf").write_text(f"""
global_defs {{
    router_id {node}
    script_user root
    vrrp_version {version}
}}
vrrp_script chk_dns {{
    script "{chk}"
    interval 1
    timeout {self.script_timeout}
    fall 1
    rise 1
}}
""" + "".join(instances))

    def start_node(self, node):
        d = self.workdir / node
        for f in ("keepalived.pid", "vrrp.pid", "checkers.pid"):
            (d / f).unlink(missing_ok=True)
        self.flag(node).unlink(missing_ok=True)
        return self.lab.popen(node, [
            "/usr/sbin/keepalived", "--dont-fork", "--log-console", "--log-detail",
            "--vrrp", "--use-file", d / "keepalived.conf",
            "--pid", d / "keepalived.pid", "--vrrp_pid", d / "vrrp.pid",
            "--checkers_pid", d / "checkers.pid"],
            log=self.workdir / f"{node}.log", what=f"keepalived@{node}")

    def planned_move(self, node):
        # The usual keepalived maintenance idiom: make the track script fail.
        self.flag(node).touch()

    def end_planned_move(self, node):
        self.flag(node).unlink(missing_ok=True)


# --------------------------------------------------------------------------- dnspair

class Dnspair(System):
    """dnspair with its shipped defaults (only addresses, names and paths set)."""
    name = "dnspair"
    label = "dnspair (shipped defaults)"
    heartbeat_match = {}  # every packet from the peer's node addresses

    def available(self):
        cmd = self.lab.dnspair_command()
        env = dict(os.environ)
        src = Path(__file__).resolve().parents[1] / "src"
        env["PYTHONPATH"] = str(src)
        try:
            r = subprocess.run([*cmd, "daemon", "--help"], capture_output=True, text=True,
                               timeout=60, env=env)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"dnspair not runnable: {e}"
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["?"]
            return f"`{' '.join(cmd)} daemon --help` failed: {tail[0]}"
        return None

    def describe(self):
        """Label with the shipped defaults read from the code under test."""
        import sys
        src = str(Path(__file__).resolve().parents[1] / "src")
        try:
            if src not in sys.path:
                sys.path.insert(0, src)
            from dnspair.core import config as c  # noqa: PLC0415
            hb, dc = c.Heartbeat(), c.DnsCheck()
            return (f"dnspair defaults (heartbeat {hb.interval:g} s, dead {hb.dead_time:g} s, "
                    f"DNS check {dc.interval:g} s / {dc.timeout:g} s limit)")
        except Exception:  # noqa: BLE001 - label only
            return self.label

    def prepare(self):
        key = self.lab.write_key(self.workdir / "authkey")
        self.socket = {n: self.workdir / n / "control.sock" for n in NODES}
        for n in NODES:
            (self.workdir / n).mkdir(parents=True, exist_ok=True)
        # One file for both nodes, like the appliance; the control socket differs per node,
        # so each node gets its own copy with only that path changed.
        for n in NODES:
            (self.workdir / n / "dnspair.yaml").write_text(f"""cluster: bench
key_file: {key}
nodes:
  node1:
    addresses: [{NODE_ADDR['node1']}]
  node2:
    addresses: [{NODE_ADDR['node2']}]
vips:
  - address: {VIP1}/24
    interface: eth0
    prefers: {{node1: 200, node2: 100}}
  - address: {VIP2}/24
    interface: eth0
    prefers: {{node1: 100, node2: 200}}
dns_check:
  server: 127.0.0.1
  query: localhost
  type: A
failure_threshold: 1
failback: manual
control:
  socket: {self.socket[n]}
state_dir: {self.workdir / n / "state"}
""")

    def start(self):
        # Each run is a fresh pair, as keepalived's are: a state directory kept from the last
        # run's fault would keep VIP1 away from node1 (failback: manual) until a cleanup.
        for node in NODES:
            shutil.rmtree(self.workdir / node / "state", ignore_errors=True)
        super().start()

    def start_node(self, node):
        return self.lab.start_daemon(node, self.workdir / node / "dnspair.yaml",
                                     log=self.workdir / f"{node}.log")

    def cli(self, node, *args):
        return self.lab.dnspair_cli(node, *args, "--config",
                                    str(self.workdir / node / "dnspair.yaml"))

    def planned_move(self, node):
        r = self.cli(node, "standby")
        if r.returncode != 0:
            raise RuntimeError(f"dnspair standby failed: {r.stderr.strip() or r.stdout.strip()}")

    def end_planned_move(self, node):
        self.cli(node, "unstandby")


def make_systems(lab, workdir, names):
    out = []
    for n in names:
        if n == "keepalived-default":
            out.append(Keepalived(lab, workdir, tuned=False))
        elif n == "keepalived-tuned":
            out.append(Keepalived(lab, workdir, tuned=True))
        elif n == "dnspair":
            out.append(Dnspair(lab, workdir))
        else:
            raise SystemExit(f"unknown system {n!r}")
    return out
