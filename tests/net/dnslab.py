"""The pair's one DNS service on the lab network: real bind on both nodes, run with the config
`dnspair reload` renders (core/bindconf.py), and a dnspair pair beside it.

Each node's bind gets its own directories under the lab's workdir (the config's node-local
`bind:` section points there) and an rndc control channel on its own namespace's 127.0.0.1.
"""
from __future__ import annotations

import base64
import json
import re
import secrets
import time

import lab as labmod
from pair import NODE_NAME, Pair

ZONE = "home.arpa"
REVERSE = "2.0.192.in-addr.arpa"

DNS_SECTION = f"""\
dns:
  primary: dns-pm01
  # TEST-NET-1: nothing listens there; no query ever leaves the lab.
  forwarders: [192.0.2.53]
  allow_query: [192.0.2.0/24, localhost]
  drift_after: {{drift}}
  check_interval: 1
  zones:
    {ZONE}:
      - nas A 192.0.2.20
      - printer 300 A 192.0.2.21
    {REVERSE}:
      - 20 PTR nas.{ZONE}.
"""


def bind_dirs(lab, node):
    base = lab.workdir / node / "dnsbind"
    dirs = {k: base / k for k in ("etc", "zones", "cache", "run")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    return dirs


def node_bind_section(lab, node) -> str:
    d = bind_dirs(lab, node)
    return (f"bind: {{etc_dir: {d['etc']}, zone_dir: {d['zones']}, cache_dir: {d['cache']}, "
            f"run_dir: {d['run']}, rndc_key: {d['etc'] / 'rndc.key'}}}\n")


def top_conf(lab, node):
    """named.conf: the rendered options and zones, plus the health check's localhost zone and
    an rndc channel (the image has both from Debian's own named.conf)."""
    d = bind_dirs(lab, node)
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    key = f'key "rndc-key" {{ algorithm hmac-sha256; secret "{secret}"; }};\n'
    (d["etc"] / "rndc.key").write_text(key)
    (d["etc"] / "localhost.zone").write_text(
        "$TTL 60\n@ IN SOA localhost. root.localhost. 1 3600 600 86400 60\n"
        "@ IN NS localhost.\n@ IN A 127.0.0.1\n")
    # the lab's own node-specific test.example (lab.who_answers tells the nodes apart by it)
    (d["etc"] / "example.zone").write_text(
        "$TTL 60\n@ IN SOA ns.example. hostmaster.example. 1 3600 600 86400 60\n"
        f"@ IN NS ns.example.\nns IN A {labmod.NODE_ADDR[node]}\ntest IN A {labmod.ANSWER[node]}\n")
    conf = d["etc"] / "named.conf"
    conf.write_text(f'include "{d["etc"]}/named.conf.options";\n'
                    f'include "{d["etc"]}/named.conf.local";\n'
                    f'zone "localhost" {{ type primary; file "{d["etc"]}/localhost.zone"; }};\n'
                    f'zone "example" {{ type primary; file "{d["etc"]}/example.zone"; }};\n'
                    f'include "{d["etc"]}/rndc.key";\n'
                    'controls { inet 127.0.0.1 port 953 allow { 127.0.0.1; } keys { "rndc-key"; }; };\n')
    return conf


class DnsPair(Pair):
    """A Pair whose binds serve the config's local zones (primary dns-pm01 on node1)."""

    def __init__(self, lab, drift=30, extra=""):
        self.dns_text = DNS_SECTION.replace("{drift}", str(drift))
        super().__init__(lab, extra=self.dns_text + extra,
                         node_extra={n: node_bind_section(lab, n) for n in labmod.NODES})
        for n in labmod.NODES:
            r = self.cli(n, "dns", "render", "--node", NODE_NAME[n])
            assert r.returncode == 0, r.stderr
            lab.stop_bind(n)
            lab.start_bind(n, top_conf(lab, n))
        for n in labmod.NODES:
            lab.wait_bind(n)

    def rewrite_config(self, dns_text):
        """Both nodes' dnspair.yaml with another `dns:` section."""
        for path in self.configs.values():
            path.write_text(path.read_text().replace(self.dns_text, dns_text))
        self.dns_text = dns_text

    def zone_dir(self, node):
        return bind_dirs(self.lab, node)["zones"]

    def soa_serial(self, server, zone=ZONE, where="client"):
        """The SOA serial `server` answers for `zone` (None: no answer, or not authoritative)."""
        r = self.lab.run(where, "dig", "+norec", "+time=1", "+tries=1", f"@{server}", zone, "SOA",
                         "+noall", "+answer", "+comments", check=False)
        flags = re.search(r";; flags: ([^;]*);", r.stdout)
        if "status: NOERROR" not in r.stdout or not flags or "aa" not in flags.group(1).split():
            return None
        for line in r.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 7 and parts[3] == "SOA":
                return int(parts[6])
        return None

    def answer(self, server, name, qtype="A", where="client"):
        r = self.lab.run(where, "dig", "+short", "+time=1", "+tries=1", f"@{server}", name, qtype,
                         check=False)
        return r.stdout.split() if r.returncode == 0 else None

    def wait_answer(self, server, name, want, qtype="A", timeout=10.0, where="client"):
        """Seconds until `server` answers `name` with `want` (a list); AssertionError after timeout."""
        t0 = time.monotonic()
        self.wait(lambda: self.answer(server, name, qtype, where) == want,
                  f"{server} answering {name} {qtype} {want}", timeout)
        return time.monotonic() - t0

    def dns_status(self, node):
        return self.status(node)["dns"]

    def json_cli(self, node, *args):
        r = self.cli(node, *args)
        return r, (json.loads(r.stdout) if r.returncode == 0 and r.stdout.startswith("{") else None)
