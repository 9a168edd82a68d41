"""A dnspair pair on the lab network: configs, daemons, and waiting for what a client sees."""
from __future__ import annotations

import json
import time
from pathlib import Path

import lab as labmod

NODE_NAME = {"node1": "dns-pm01", "node2": "dns-pm02"}
LAB_NODE = {v: k for k, v in NODE_NAME.items()}


V4_VIPS = """\
  - address: 192.0.2.11/24
    interface: eth0
    prefers: {dns-pm01: 200, dns-pm02: 100}
  - address: 192.0.2.12/24
    interface: eth0
    prefers: {dns-pm01: 100, dns-pm02: 200}"""


def vip_yaml(*vips: tuple[str, str]) -> str:
    """The `vips:` entries for (address/prefix, home lab node) pairs, scores 200 vs 100."""
    out = []
    for address, home in vips:
        s1, s2 = (200, 100) if home == "node1" else (100, 200)
        out.append(f"  - address: {address}\n    interface: eth0\n"
                   f"    prefers: {{dns-pm01: {s1}, dns-pm02: {s2}}}")
    return "\n".join(out)


def config_text(lab, extra: str = "", second_link: bool = False, failback: str = "manual",
                vips: str = V4_VIPS, addresses: tuple[str, str] | None = None,
                dns_server: str = "127.0.0.1") -> str:
    a1 = "[192.0.2.1, 192.0.2.129]" if second_link else "[192.0.2.1]"
    a2 = "[192.0.2.2, 192.0.2.130]" if second_link else "[192.0.2.2]"
    if addresses:
        a1, a2 = addresses
    return f"""\
cluster: clst-01
key_file: {lab.workdir / 'authkey'}
nodes:
  dns-pm01:
    addresses: {a1}
  dns-pm02:
    addresses: {a2}
vips:
{vips}
dns_check:
  server: '{dns_server}'
  query: localhost
  type: A
failure_threshold: 1
failback: {failback}
{extra}
"""


class Pair:
    def __init__(self, lab, extra: str = "", failback: str = "manual", node_extra=None, control: str = "",
                 **config_kw):
        """`node_extra`: {lab node: config text for that node only} (node-local sections);
        `control`: more keys of the control mapping, e.g. "admin_group: x, monitor_group: y";
        config_kw go to config_text (vips=, addresses=, dns_server=)."""
        self.lab = lab
        lab.write_key(lab.workdir / "authkey")
        self.procs = {}
        self.configs = {}
        for node in labmod.NODES:
            path = lab.workdir / f"{node}.yaml"
            sock = lab.workdir / node / "control.sock"
            ctl = f"socket: {sock}" + (f", {control}" if control else "")
            path.write_text(config_text(lab, extra + (node_extra or {}).get(node, "")
                                        + f"\ncontrol: {{{ctl}}}\n"
                                        f"state_dir: {lab.workdir / node / 'state'}\n",
                                        lab.second_link, failback, **config_kw))
            self.configs[node] = path

    def start(self, node=None, wait=True, **daemon_kw):
        """daemon_kw go to lab.start_daemon (wrapper=, env_extra=, or Popen arguments)."""
        for n in ([node] if node else labmod.NODES):
            self.procs[n] = self.lab.start_daemon(n, self.configs[n], name=NODE_NAME[n], **daemon_kw)
        if wait:
            for n in ([node] if node else labmod.NODES):
                self.wait(lambda n=n: self.status(n)["nodes"] and self.me(n)["ready"], f"{n} ready")

    def stop(self, node, sig=None):
        import signal
        p = self.procs.pop(node)
        return self.lab.stop_process(p, sig=sig or signal.SIGTERM)

    def cli(self, node, *args):
        return self.lab.dnspair_cli(node, *args, "--config", str(self.configs[node]))

    def status(self, node) -> dict:
        r = self.cli(node, "status", "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def me(self, node):
        return next(n for n in self.status(node)["nodes"] if n["self"])

    def owners(self, node="node1") -> dict:
        return {v["address"].split("/")[0]: v["owner"] for v in self.status(node)["vips"]}

    def wait(self, cond, what, timeout=20.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = cond()
                if last:
                    return last
            except (AssertionError, ValueError, KeyError, StopIteration) as e:
                last = e
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what} (last: {last!r})\n{self.logs()}")

    def wait_served(self, vip, lab_node, timeout=20.0):
        """The client gets its answer through `vip` from `lab_node`'s bind."""
        return self.wait(lambda: self.lab.who_answers(vip, timeout=0.5) == lab_node,
                         f"{vip} answered by {lab_node}", timeout)

    def logs(self) -> str:
        out = []
        for node in labmod.NODES:
            p = Path(self.lab.workdir / node / "dnspair.log")
            if p.exists():
                out.append(f"--- {node} dnspair log (tail)\n" + "\n".join(p.read_text().splitlines()[-25:]))
        return "\n".join(out)
