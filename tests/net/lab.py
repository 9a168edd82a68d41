"""A real two-node DNS network in Linux network namespaces, for tests and the benchmark.

Standard library only, plus the `ip`, `nft` and `named` programs.

Topology (every namespace is made by this module, named ``<prefix>...``, prefix
``dp<pid>x<n>`` so parallel labs never collide)::

                 <prefix>br  (bridge namespace)
        br0: n1l0  n2l0  cl0          br1: n1l1  n2l1   (br1 only with second_link=True)
              |     |     |                 |     |
   <prefix>n1 eth0  |     |     <prefix>n1 eth1   |
   192.0.2.1/24     |     |     192.0.2.129/26    |
         <prefix>n2 eth0  |           <prefix>n2 eth1
         192.0.2.2/24     |           192.0.2.130/26
                <prefix>c eth0
                192.0.2.100/24

Address plan (TEST-NET-1 only; nothing else is ever configured or contacted):

  ==========================  ============================================
  192.0.2.1, 192.0.2.2        node1, node2 on eth0 (link 0), /24
  192.0.2.11, 192.0.2.12      VIP1, VIP2 (put there by the HA daemon under test)
  192.0.2.100                 the client
  192.0.2.129, 192.0.2.130    node1, node2 on eth1 (link 1), /26 = 192.0.2.128-191.
                              The more specific /26 route sends node-to-node traffic
                              for .129/.130 over eth1; no other lab address falls in
                              it (192.0.2.64/26 would swallow the client's .100).
  192.0.2.201, 192.0.2.202    not addresses: the A record ``test.example.`` served by
                              node1's and node2's bind, so a client can tell who answered
  ==========================  ============================================

Each node runs its own bind9 ``named -f -g`` (root, its own config dir, ``listen-on any``
so it answers on a VIP as soon as the VIP lands) serving ``example.`` (``test.example. A``
node-specific) and ``localhost.`` (the health check query).

IPv6 (``Lab(ipv6=True)``, fixture ``lab6``): the node and client namespaces keep IPv6, with
documentation addresses only (2001:db8::/32) and no router solicitations or advertisements:

  ==========================  ============================================
  2001:db8::1, 2001:db8::2    node1, node2 on eth0 (link 0), /64
  2001:db8::53, 2001:db8::54  IPv6 VIPs (put there by the daemon under test)
  2001:db8::100               the client
  2001:db8:1::1, ::2          node1, node2 on eth1 (link 1), /64
  ==========================  ============================================

and bind listens on IPv6 too. Their link-local fe80:: addresses come up as the kernel makes
them; every other packet stays inside the lab's own namespaces.

Faults: :meth:`Lab.link_down` (carrier cut at the bridge side), :meth:`Lab.stop_bind`,
:meth:`Lab.hang_bind` / :meth:`Lab.resume_bind` (SIGSTOP/SIGCONT), nftables random loss
(:meth:`Lab.drop_heartbeats`) and :meth:`Lab.partition`.

API (``with Lab(second_link=False) as lab:`` or the pytest fixtures ``lab``/``lab2``)::

    lab.query(server, name="test.example", qtype="A", where="client", timeout=2.0) -> Answer|None
        Answer(rcode, addresses, elapsed).node -> "node1"/"node2"/None
    lab.who_answers(server, where="client", timeout=2.0) -> "node1"|"node2"|None
    lab.wait_answer(server, node_or_None, timeout=30.0) -> bool
    lab.start_bind(node) / wait_bind(node) / stop_bind(node, sig=SIGTERM) / hang_bind(node)
    lab.resume_bind(node) / restore_bind(node) / bind_running(node) / bind_log(node)
    lab.link_down(node, link=0|1|"all") / link_up(node, link) / carrier(node, "eth0") -> bool
    lab.node_mac(node, link=0) / mac(where, ifname) / arp_entry(where, ip) -> MAC|None
    lab.arp_owner(ip, where="client") -> node|None / flush_arp(where)
    lab.addresses(where, ifname) / vips_on(node) / add_address(node, cidr) / del_address / clear_vips()
    lab.drop_heartbeats(node, percent, port=None, proto=None, link="all") / clear_drops(node)
    lab.drop_counter(node) -> int / partition(port=None, proto=None) / heal()
    lab.resolv_conf(nameservers, options=None) / getent(name) -> (seconds, address|None)
    lab.start_daemon(node, config_path, name=None, log=None, extra_args=(), wrapper=(),
                     env_extra=None) -> Popen
    lab.dnspair_cli(node, *args) -> CompletedProcess / write_key(path) -> Path
    lab.popen(where, cmd, log=None) -> Popen / stop_process(p, grace, sig) / send_signal(p, sig)
    lab.run(where, *cmd) -> CompletedProcess / socket(where, family, type) -> socket in that netns
    lab.ns[...] real namespace names, lab.workdir per-lab temp dir
    constants: NODES, NODE_ADDR, NODE_ADDR2, CLIENT_ADDR, VIP1, VIP2, ANSWER, MAC

Teardown (:meth:`Lab.close`, also registered with ``atexit``) kills only the processes
this lab started, by PID (and their descendants), then deletes the namespaces, the
``/etc/netns/<ns>`` directories it made and its work directory.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

NODES = ("node1", "node2")
NODE_ADDR = {"node1": "192.0.2.1", "node2": "192.0.2.2"}
NODE_ADDR2 = {"node1": "192.0.2.129", "node2": "192.0.2.130"}
PREFIX0, PREFIX1 = 24, 26
CLIENT_ADDR = "192.0.2.100"
NODE6 = {"node1": "2001:db8::1", "node2": "2001:db8::2"}
NODE6_2 = {"node1": "2001:db8:1::1", "node2": "2001:db8:1::2"}
CLIENT6 = "2001:db8::100"
VIP6A, VIP6B = "2001:db8::53", "2001:db8::54"
PREFIX6 = 64
VIP1, VIP2 = "192.0.2.11", "192.0.2.12"
VIPS = (VIP1, VIP2)
ANSWER = {"node1": "192.0.2.201", "node2": "192.0.2.202"}
WHO = {v: k for k, v in ANSWER.items()}
TEST_NAME = "test.example"
MAC = {
    ("node1", 0): "02:00:5e:00:01:00",
    ("node1", 1): "02:00:5e:00:01:01",
    ("node2", 0): "02:00:5e:00:02:00",
    ("node2", 1): "02:00:5e:00:02:01",
    ("client", 0): "02:00:5e:00:64:00",
}

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_counter = 0
_counter_lock = threading.Lock()


class LabError(RuntimeError):
    pass


def _check_addr(ip: str) -> str:
    """Refuse anything outside TEST-NET-1 and 2001:db8::/32 (and loopback for in-node health
    checks)."""
    if ip.startswith("192.0.2.") or ip in ("127.0.0.1", "::1"):
        return ip
    if ":" in ip:
        import ipaddress
        if ipaddress.IPv6Address(ip) in ipaddress.IPv6Network("2001:db8::/32"):
            return ip
    raise LabError(f"lab refuses address {ip!r}: only 192.0.2.0/24 and 2001:db8::/32 are allowed")


@contextlib.contextmanager
def scratch_netns(prefix: str, *setup: list[str]):
    """A namespace of its own for one test: `lo` up, then each `ip -n NS ...` command of
    `setup`; deleted afterwards, even on failure."""
    name = f"{prefix}{os.getpid()}x{next(_scratch)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (["link", "set", "lo", "up"], *setup):
            subprocess.run(["ip", "-n", name, *cmd], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


_scratch = iter(range(1, 1 << 30))


def requirements_missing() -> str | None:
    """Why a lab cannot be built here, or None if it can."""
    if os.geteuid() != 0:
        return "the namespace lab needs root (network namespaces, veth, nftables)"
    for tool in ("ip", "nft", "named"):
        if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
            return f"the namespace lab needs `{tool}` (apt-get install iproute2 nftables bind9)"
    return None


def _which(tool: str) -> str:
    p = shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if not p:
        raise LabError(f"{tool} not found")
    return p


# --------------------------------------------------------------------------- DNS wire (stdlib)

QTYPES = {"A": 1, "NS": 2, "SOA": 6, "TXT": 16, "AAAA": 28}


def dns_query_packet(name: str, qtype: str = "A", qid: int = 0x1234) -> bytes:
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack("!HH", QTYPES[qtype], 1)


def _skip_name(buf: bytes, off: int) -> int:
    while True:
        n = buf[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        off += 1 + n


def dns_parse_response(buf: bytes) -> tuple[int, int, list[str]]:
    """(id, rcode, [A addresses]) of a response; raises ValueError if malformed."""
    if len(buf) < 12:
        raise ValueError("short")
    qid, flags, qd, an, _ns, _ar = struct.unpack("!HHHHHH", buf[:12])
    off = 12
    for _ in range(qd):
        off = _skip_name(buf, off) + 4
    addrs = []
    for _ in range(an):
        off = _skip_name(buf, off)
        rtype, _rclass, _ttl, rdlen = struct.unpack("!HHIH", buf[off:off + 10])
        off += 10
        if rtype == 1 and rdlen == 4:
            addrs.append(socket.inet_ntoa(buf[off:off + 4]))
        off += rdlen
    return qid, flags & 0xF, addrs


@dataclass
class Answer:
    rcode: int
    addresses: list[str]
    elapsed: float

    @property
    def node(self) -> str | None:
        """'node1' / 'node2' when the answer is the node-specific test.example record."""
        for a in self.addresses:
            if a in WHO:
                return WHO[a]
        return None


# --------------------------------------------------------------------------- the lab


@dataclass
class _Proc:
    popen: subprocess.Popen
    what: str
    log: Path | None = None


@dataclass
class Lab:
    second_link: bool = False
    ipv6: bool = False
    workdir: Path | None = None
    prefix: str = ""
    ns: dict = field(default_factory=dict)
    _procs: list = field(default_factory=list)
    _named: dict = field(default_factory=dict)
    _confs: dict = field(default_factory=dict)
    _etc_netns: list = field(default_factory=list)
    _closed: bool = False
    _started: bool = False
    _own_workdir: bool = False

    # ---- lifecycle

    def __post_init__(self):
        global _counter
        with _counter_lock:
            _counter += 1
            n = _counter
        if not self.prefix:
            self.prefix = f"dp{os.getpid()}x{n}"
        self.ns = {
            "br": self.prefix + "br",
            "node1": self.prefix + "n1",
            "node2": self.prefix + "n2",
            "client": self.prefix + "c",
        }
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix=self.prefix + "-"))
            self._own_workdir = True
        else:
            self.workdir = Path(self.workdir)
            self.workdir.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self, bind: bool = True) -> Lab:
        """Build the namespaces, veths and bridges, then start bind on both nodes."""
        why = requirements_missing()
        if why:
            raise LabError(why)
        atexit.register(self.close)
        self._started = True
        try:
            self._build()
            if bind:
                for node in NODES:
                    self.start_bind(node)
                for node in NODES:
                    self.wait_bind(node)
        except BaseException:
            self.close()
            raise
        return self

    def _build(self):
        for where, ns in self.ns.items():
            self._ip("netns", "add", ns)
            if self.ipv6 and where != "br":
                # IPv6 on the hosts, but nothing that looks for routers.
                for conf in ("all", "default"):
                    for key, value in (("accept_ra", "0"), ("router_solicitations", "0")):
                        self.sysctl(ns, f"net.ipv6.conf.{conf}.{key}", value)
            else:
                # No IPv6 at all: no router solicitations, no MLD, only 192.0.2.0/24 traffic.
                for key in ("net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"):
                    self.sysctl(ns, key, "1")
            self._ip("-n", ns, "link", "set", "lo", "up")
        br = self.ns["br"]
        links = [0, 1] if self.second_link else [0]
        for link in links:
            self._ip("-n", br, "link", "add", f"br{link}", "type", "bridge",
                     "forward_delay", "0", "stp_state", "0")
            self._ip("-n", br, "link", "set", f"br{link}", "up")
        for node in NODES:
            for link in links:
                addr = NODE_ADDR[node] if link == 0 else NODE_ADDR2[node]
                plen = PREFIX0 if link == 0 else PREFIX1
                self._veth(f"{self._short(node)}l{link}", self.ns[node], f"eth{link}",
                           MAC[(node, link)], f"br{link}", f"{addr}/{plen}")
        self._veth("cl0", self.ns["client"], "eth0", MAC[("client", 0)], "br0",
                   f"{CLIENT_ADDR}/{PREFIX0}")
        if self.ipv6:
            # nodad: the lab's own addresses serve at once (the daemon's VIPs are its business)
            for node in NODES:
                for link in links:
                    addr = NODE6[node] if link == 0 else NODE6_2[node]
                    self._ip("-n", self.ns[node], "addr", "add", f"{addr}/{PREFIX6}",
                             "dev", f"eth{link}", "nodad")
            self._ip("-n", self.ns["client"], "addr", "add", f"{CLIENT6}/{PREFIX6}", "dev", "eth0",
                     "nodad")
        for node in NODES:
            # Take the bind answer through VIPs on eth0 quickly; accept gratuitous ARP-learnt peers.
            self.sysctl(node, "net.ipv4.conf.all.arp_ignore", "0")

    @staticmethod
    def _short(node: str) -> str:
        return {"node1": "n1", "node2": "n2", "client": "c"}[node]

    def _veth(self, br_side: str, ns: str, name: str, mac: str, bridge: str, cidr: str):
        br = self.ns["br"]
        self._ip("-n", br, "link", "add", br_side, "type", "veth", "peer", "name", name,
                 "netns", ns)
        self._ip("-n", ns, "link", "set", name, "address", mac)
        self._ip("-n", br, "link", "set", br_side, "master", bridge)
        self._ip("-n", br, "link", "set", br_side, "up")
        self._ip("-n", ns, "addr", "add", cidr, "dev", name)
        self._ip("-n", ns, "link", "set", name, "up")

    def close(self):
        """Kill what this lab started (by PID), delete its namespaces and files. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for p in reversed(self._procs):
            self._terminate(p.popen, grace=5.0)
        self._procs.clear()
        for _node, p in list(self._named.items()):
            self._terminate(p, grace=5.0)
        self._named.clear()
        if self._started:
            for ns in self.ns.values():
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for d in self._etc_netns:
            shutil.rmtree(d, ignore_errors=True)
            try:
                d.parent.rmdir()  # /etc/netns, only if nothing else lives there
            except OSError:
                pass
        if self._own_workdir and self.workdir and not os.environ.get("DNSPAIR_LAB_KEEP"):
            shutil.rmtree(self.workdir, ignore_errors=True)
        try:
            atexit.unregister(self.close)
        except Exception:
            pass

    # ---- running things

    def nsname(self, where: str) -> str:
        """Real namespace name for 'node1', 'node2', 'client', 'br' (or a real name)."""
        return self.ns.get(where, where)

    def _ip(self, *args, check=True):
        return self._run(["ip", *args], check=check)

    @staticmethod
    def _run(cmd, check=True, timeout=30, input=None):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise LabError(f"{' '.join(cmd)}: rc={r.returncode} {r.stderr.strip()}")
        return r

    def run(self, where: str, *cmd, check=True, timeout=30, input=None):
        """Run a command inside a namespace; returns CompletedProcess (text)."""
        return self._run(["ip", "netns", "exec", self.nsname(where), *cmd], check=check,
                         timeout=timeout, input=input)

    def popen(self, where: str, cmd, log: Path | str | None = None, env=None, what=None,
              **kw) -> subprocess.Popen:
        """Start a long-running process in a namespace; the lab kills it (by PID) on close."""
        out = open(log, "ab") if log else subprocess.DEVNULL
        try:
            p = subprocess.Popen(["ip", "netns", "exec", self.nsname(where), *map(str, cmd)],
                                 stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
                                 env=env, start_new_session=True, **kw)
        finally:
            if log:
                out.close()
        self._procs.append(_Proc(p, what or str(cmd[0]), Path(log) if log else None))
        return p

    def _descendants(self, pid: int) -> list[int]:
        return sorted(proc_tree_pids(pid) - {pid})

    def _terminate(self, p: subprocess.Popen, grace: float = 5.0, sig=signal.SIGTERM):
        """SIGTERM (then SIGKILL) a process we started, plus any descendants it left."""
        if p.poll() is not None:
            return
        desc = self._descendants(p.pid)
        for pid in [p.pid]:
            try:
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            desc = self._descendants(p.pid) + desc
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(10)
        for pid in desc:  # children it spawned and did not reap (e.g. track scripts)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop_process(self, p: subprocess.Popen, grace: float = 10.0, sig=signal.SIGTERM) -> int:
        """Stop one process started with popen()/start_daemon(); returns its exit code."""
        self._terminate(p, grace=grace, sig=sig)
        self._procs[:] = [x for x in self._procs if x.popen is not p]
        return p.returncode

    def send_signal(self, p: subprocess.Popen, sig: int):
        """Send a signal to a process this lab started (e.g. SIGSTOP/SIGCONT/SIGKILL)."""
        if not any(x.popen is p for x in self._procs) and p not in self._named.values():
            raise LabError("refusing to signal a process this lab did not start")
        os.kill(p.pid, sig)

    def sysctl(self, where: str, key: str, value: str):
        path = "/proc/sys/" + key.replace(".", "/")
        self.run(where, "sh", "-c", f"echo {value} > {path}")

    # ---- sockets opened inside a namespace (no fork: setns in a throwaway thread)

    def socket(self, where: str, family=socket.AF_INET, type=socket.SOCK_DGRAM, proto=0):
        """A socket living in namespace `where` (usable from any thread of this process)."""
        result: dict = {}
        path = f"/run/netns/{self.nsname(where)}"

        def worker():
            try:
                fd = os.open(path, os.O_RDONLY)
                try:
                    if _libc.setns(fd, CLONE_NEWNET) != 0:
                        e = ctypes.get_errno()
                        raise OSError(e, f"setns {path}: {os.strerror(e)}")
                finally:
                    os.close(fd)
                result["sock"] = socket.socket(family, type, proto)
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller
                result["err"] = e

        t = threading.Thread(target=worker)
        t.start()
        t.join()
        if "err" in result:
            raise result["err"]
        return result["sock"]

    # ---- DNS

    def query(self, server: str, name: str = TEST_NAME, qtype: str = "A",
              where: str = "client", timeout: float = 2.0) -> Answer | None:
        """One UDP DNS query from `where`; None on timeout or ICMP refusal."""
        _check_addr(server)
        s = self.socket(where, socket.AF_INET6 if ":" in server else socket.AF_INET)
        try:
            s.settimeout(timeout)
            qid = int.from_bytes(os.urandom(2), "big")
            t0 = time.monotonic()
            s.sendto(dns_query_packet(name, qtype, qid), (server, 53))
            deadline = t0 + timeout
            while True:
                s.settimeout(max(0.001, deadline - time.monotonic()))
                try:
                    buf, _ = s.recvfrom(4096)
                except (TimeoutError, ConnectionRefusedError, OSError):
                    return None
                try:
                    rid, rcode, addrs = dns_parse_response(buf)
                except (ValueError, struct.error, IndexError):
                    continue
                if rid == qid:
                    return Answer(rcode, addrs, time.monotonic() - t0)
        finally:
            s.close()

    def who_answers(self, server: str, where: str = "client", timeout: float = 2.0) -> str | None:
        """'node1' or 'node2' (whose bind answered `test.example` at `server`), or None."""
        a = self.query(server, where=where, timeout=timeout)
        return a.node if a else None

    def wait_answer(self, server: str, node: str | None, timeout: float = 30.0,
                    where: str = "client") -> bool:
        """Poll until `server` is answered by `node` (None: until nobody answers)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.who_answers(server, where=where, timeout=0.5) == node:
                return True
            time.sleep(0.05)
        return False

    # ---- bind

    def _named_conf(self, node: str) -> Path:
        d = self.workdir / node / "bind"
        d.mkdir(parents=True, exist_ok=True)
        (d / "example.zone").write_text(
            "$TTL 60\n"
            "@ IN SOA ns.example. hostmaster.example. 1 3600 600 86400 60\n"
            "@ IN NS ns.example.\n"
            f"ns IN A {NODE_ADDR[node]}\n"
            f"test IN A {ANSWER[node]}\n"
            f"whoami IN TXT \"{node}\"\n")
        (d / "localhost.zone").write_text(
            "$TTL 60\n"
            "@ IN SOA localhost. root.localhost. 1 3600 600 86400 60\n"
            "@ IN NS localhost.\n"
            "@ IN A 127.0.0.1\n")
        conf = d / "named.conf"
        conf.write_text(f"""
options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    listen-on port 53 {{ any; }};
    listen-on-v6 {{ {"any" if self.ipv6 else "none"}; }};
    recursion no;
    dnssec-validation no;
    allow-query {{ any; }};
    automatic-interface-scan yes;
    notify no;
}};
controls {{ }};
zone "example" {{ type primary; file "{d}/example.zone"; }};
zone "localhost" {{ type primary; file "{d}/localhost.zone"; }};
""")
        return conf

    def start_bind(self, node: str, conf: Path | None = None) -> subprocess.Popen:
        """Start named (foreground, -4) in `node`; returns the Popen. Does not wait.
        `conf`: a named.conf of the test's own (kept for later restarts of that node)."""
        old = self._named.get(node)
        if old is not None and old.poll() is None:
            raise LabError(f"bind already running on {node}")
        if conf is not None:
            self._confs[node] = Path(conf)
        conf = self._confs.get(node) or self._named_conf(node)
        log = self.workdir / node / "named.log"
        out = open(log, "ab")
        try:
            p = subprocess.Popen(
                ["ip", "netns", "exec", self.ns[node], _which("named"), "-f", "-g",
                 *([] if self.ipv6 else ["-4"]), "-n", "1", "-c", str(conf)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        finally:
            out.close()
        self._named[node] = p
        return p

    def wait_bind(self, node: str, timeout: float = 60.0):
        """Wait until `node`'s bind answers `localhost` on 127.0.0.1 inside the node."""
        deadline = time.monotonic() + timeout
        p = self._named[node]
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise LabError(f"named on {node} exited rc={p.returncode}: "
                               + self.bind_log(node)[-2000:])
            a = self.query("127.0.0.1", "localhost", where=node, timeout=0.5)
            if a and a.addresses == ["127.0.0.1"]:
                return
            time.sleep(0.1)
        raise LabError(f"named on {node} not answering after {timeout}s")

    def bind_log(self, node: str) -> str:
        try:
            return (self.workdir / node / "named.log").read_text(errors="replace")
        except OSError:
            return ""

    def bind_process(self, node: str) -> subprocess.Popen | None:
        return self._named.get(node)

    def stop_bind(self, node: str, sig: int = signal.SIGTERM, wait: float = 10.0):
        """Stop bind on `node` (SIGTERM like `systemctl stop named`, or SIGKILL)."""
        p = self._named.get(node)
        if p is None or p.poll() is not None:
            return
        os.kill(p.pid, signal.SIGCONT)
        os.kill(p.pid, sig)
        try:
            p.wait(wait)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)

    def hang_bind(self, node: str):
        """Freeze bind on `node` (SIGSTOP): the port stays open, nothing answers."""
        pid = self._named[node].pid
        os.kill(pid, signal.SIGSTOP)
        _wait_state(pid, "T")

    def resume_bind(self, node: str):
        pid = self._named[node].pid
        os.kill(pid, signal.SIGCONT)
        _wait_state(pid, "RSDI")

    def bind_running(self, node: str) -> bool:
        p = self._named.get(node)
        return p is not None and p.poll() is None

    def restore_bind(self, node: str, timeout: float = 60.0):
        """Make bind answer again on `node` whatever was done to it."""
        if self.bind_running(node):
            self.resume_bind(node)
        else:
            self.start_bind(node)
        self.wait_bind(node, timeout)

    # ---- links, addresses, ARP

    def _bridge_port(self, node: str, link: int) -> str:
        return f"{self._short(node)}l{link}"

    def _links(self, link):
        if link == "all":
            return [0, 1] if self.second_link else [0]
        return [link]

    def link_down(self, node: str, link: int | str = 0):
        """Cut `node`'s cable: the bridge-side veth goes down, the node's ethN loses carrier.
        link: 0, 1 or 'all'."""
        for li in self._links(link):
            self._ip("-n", self.ns["br"], "link", "set", self._bridge_port(node, li), "down")

    def link_up(self, node: str, link: int | str = 0):
        for li in self._links(link):
            self._ip("-n", self.ns["br"], "link", "set", self._bridge_port(node, li), "up")

    def carrier(self, node: str, ifname: str = "eth0") -> bool:
        r = self._ip("-n", self.nsname(node), "-j", "link", "show", ifname)
        return "NO-CARRIER" not in json.loads(r.stdout)[0].get("flags", [])

    def node_mac(self, node: str, link: int = 0) -> str:
        return self.mac(node, f"eth{link}")

    def mac(self, where: str, ifname: str = "eth0") -> str:
        r = self._ip("-n", self.nsname(where), "-j", "link", "show", ifname)
        return json.loads(r.stdout)[0]["address"]

    def arp_entry(self, where: str, ip: str) -> str | None:
        """MAC that namespace `where` has cached for `ip` (None if absent/incomplete/failed)."""
        _check_addr(ip)
        r = self._ip("-n", self.nsname(where), "-j", "neigh", "show", ip)
        for e in json.loads(r.stdout or "[]"):
            if e.get("lladdr") and "FAILED" not in e.get("state", []) \
                    and "INCOMPLETE" not in e.get("state", []):
                return e["lladdr"]
        return None

    def arp_owner(self, ip: str, where: str = "client") -> str | None:
        """Which node the client's ARP cache points `ip` at ('node1'/'node2'/None)."""
        mac = self.arp_entry(where, ip)
        for (node, _link), m in MAC.items():
            if m == mac and node in NODES:
                return node
        return None

    def flush_arp(self, where: str = "client"):
        self._ip("-n", self.nsname(where), "neigh", "flush", "dev", "eth0")

    def addresses(self, where: str, ifname: str = "eth0", family: str = "inet") -> list[str]:
        """IPv4 (family="inet6": IPv6) addresses on an interface, e.g. to see which VIPs a node
        holds."""
        return [a["local"] for a in self.address_info(where, ifname) if a.get("family") == family]

    def address_info(self, where: str, ifname: str = "eth0") -> list[dict]:
        """`ip -j addr` entries of an interface: local, prefixlen, family, flags (tentative, nodad...)."""
        r = self._ip("-n", self.nsname(where), "-j", "addr", "show", "dev", ifname)
        return [a for link in json.loads(r.stdout or "[]") for a in link.get("addr_info", [])]

    def vips_on(self, node: str) -> list[str]:
        return [a for a in self.addresses(node, "eth0") if a in VIPS]

    def add_address(self, node: str, cidr: str, ifname: str = "eth0"):
        _check_addr(cidr.split("/")[0])
        self._ip("-n", self.ns[node], "addr", "add", cidr, "dev", ifname)

    def del_address(self, node: str, cidr: str, ifname: str = "eth0"):
        self._ip("-n", self.ns[node], "addr", "del", cidr, "dev", ifname, check=False)

    def clear_vips(self):
        for node in NODES:
            for v in self.vips_on(node):
                self.del_address(node, f"{v}/{PREFIX0}")

    # ---- nftables: loss and partitions (inside the node namespaces only)

    def _peer_addrs(self, node: str) -> list[str]:
        peer = "node2" if node == "node1" else "node1"
        addrs = [NODE_ADDR[peer]]
        if self.second_link:
            addrs.append(NODE_ADDR2[peer])
        return addrs

    def _nft(self, node: str, script: str):
        self.run(node, _which("nft"), "-f", "-", input=script)

    def drop_heartbeats(self, node: str, percent: int, port: int | None = None,
                        proto: str | None = None, link: int | str = "all"):
        """Drop `percent` % (at random) of packets arriving at `node` from the peer node's
        addresses. Narrow with port (UDP dport) or proto ('udp', 'vrrp', ...). Replaces any
        previous loss rule on that node. percent=0 removes it."""
        self.clear_drops(node)
        if percent <= 0:
            return
        peers = self._peer_addrs(node)
        if link != "all":
            peer = "node2" if node == "node1" else "node1"
            peers = [NODE_ADDR[peer] if link == 0 else NODE_ADDR2[peer]]
        match = f"ip saddr {{ {', '.join(peers)} }}"
        if proto == "vrrp":
            match += " ip protocol 112"
        elif port is not None:
            match += f" udp dport {int(port)}"
        elif proto:
            match += f" ip protocol {proto}"
        loss = "" if percent >= 100 else f"numgen random mod 100 < {int(percent)} "
        self._nft(node, f"""
table ip dplab {{
    chain input {{
        type filter hook input priority -10; policy accept;
        {match} {loss}counter drop
    }}
}}
""")

    def clear_drops(self, node: str):
        self.run(node, _which("nft"), "delete", "table", "ip", "dplab", check=False)

    def drop_counter(self, node: str) -> int:
        """Packets dropped so far by the loss rule on `node`."""
        r = self.run(node, _which("nft"), "-j", "list", "table", "ip", "dplab", check=False)
        if r.returncode != 0:
            return 0
        for item in json.loads(r.stdout).get("nftables", []):
            rule = item.get("rule")
            if rule:
                for ex in rule.get("expr", []):
                    if "counter" in ex:
                        return ex["counter"]["packets"]
        return 0

    def partition(self, port: int | None = None, proto: str | None = None):
        """Nodes stop hearing each other (both ways, every link); clients still reach both."""
        for node in NODES:
            self.drop_heartbeats(node, 100, port=port, proto=proto)

    def heal(self):
        for node in NODES:
            self.clear_drops(node)

    # ---- the client's glibc resolver

    def resolv_conf(self, nameservers=VIPS, options: str | None = None,
                    where: str = "client") -> Path:
        """Write /etc/netns/<ns>/resolv.conf: `ip netns exec` bind-mounts it over
        /etc/resolv.conf for programs run in that namespace (getent, glibc)."""
        d = Path("/etc/netns") / self.nsname(where)
        d.mkdir(parents=True, exist_ok=True)
        if d not in self._etc_netns:
            self._etc_netns.append(d)
        text = "".join(f"nameserver {_check_addr(n)}\n" for n in nameservers)
        if options:
            text += f"options {options}\n"
        (d / "resolv.conf").write_text(text)
        return d / "resolv.conf"

    def getent(self, name: str = TEST_NAME, where: str = "client",
               timeout: float = 60.0) -> tuple[float, str | None]:
        """`getent hosts name` in the client (glibc, via resolv_conf()); (seconds, address)."""
        t0 = time.monotonic()
        r = self.run(where, "getent", "hosts", name, check=False, timeout=timeout)
        dt = time.monotonic() - t0
        return dt, (r.stdout.split()[0] if r.returncode == 0 and r.stdout.strip() else None)

    # ---- the HA daemon under test

    def dnspair_command(self) -> list[str]:
        """How to run dnspair: $DNSPAIR_CMD, a `dnspair` next to this python, the repo .venv,
        else `python -m dnspair`."""
        env = os.environ.get("DNSPAIR_CMD")
        if env:
            return env.split()
        here = Path(sys.executable).parent / "dnspair"
        if here.exists():
            return [str(here)]
        repo = Path(__file__).resolve().parents[2]
        venv = repo / ".venv" / "bin" / "dnspair"
        if venv.exists():
            return [str(venv)]
        return [sys.executable, "-m", "dnspair"]

    def start_daemon(self, node: str, config_path, name: str | None = None,
                     log: Path | str | None = None, extra_args=(), wrapper=(),
                     env_extra=None, **popen_kw) -> subprocess.Popen:
        """Run `dnspair daemon --config FILE --node NAME` in `node`'s namespace.
        stdout+stderr go to `log` (default <workdir>/<node>/dnspair.log). `wrapper` goes
        before the command (e.g. faketime and its arguments), `env_extra` into its
        environment; popen_kw go to subprocess.Popen (e.g. preexec_fn for a resource limit)."""
        log = Path(log) if log else self.workdir / node / "dnspair.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env_extra or {}))
        env.pop("NOTIFY_SOCKET", None)
        env.pop("WATCHDOG_USEC", None)
        src = Path(__file__).resolve().parents[2] / "src"
        env["PYTHONPATH"] = f"{src}:{env['PYTHONPATH']}" if env.get("PYTHONPATH") else str(src)
        cmd = [*wrapper, *self.dnspair_command(), "daemon", "--config", str(config_path),
               "--node", name or node, *extra_args]
        return self.popen(node, cmd, log=log, env=env, what=f"dnspair@{node}", **popen_kw)

    def dnspair_cli(self, node: str, *args, timeout: float = 30.0):
        """Run `dnspair ARGS...` in `node` (e.g. 'status', '--json'); CompletedProcess."""
        env = dict(os.environ)
        src = Path(__file__).resolve().parents[2] / "src"
        env["PYTHONPATH"] = f"{src}:{env['PYTHONPATH']}" if env.get("PYTHONPATH") else str(src)
        return subprocess.run(["ip", "netns", "exec", self.ns[node], *self.dnspair_command(),
                               *map(str, args)], capture_output=True, text=True,
                              timeout=timeout, env=env)

    def write_key(self, path=None) -> Path:
        """A fresh 64-hex-char key file, mode 0600."""
        import secrets
        path = Path(path) if path else self.workdir / "authkey"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        os.chmod(path, 0o600)
        return path


def _wait_state(pid: int, states: str, timeout: float = 5.0) -> bool:
    """Wait until every thread of pid is in one of `states` (e.g. 'T' after SIGSTOP)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ok = True
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    st = f.read()
                if st[st.rindex(")") + 2] not in states + "Z":
                    ok = False
                    break
            if ok:
                return True
        except (OSError, ValueError):
            return False
        time.sleep(0.002)
    return False


def _proc_stats() -> dict[int, list[str]]:
    """{pid: /proc/PID/stat fields after the command name} of every process now."""
    stats = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            stats[int(d)] = st[st.rindex(")") + 2:].split()
        except (OSError, ValueError):
            continue
    return stats


def _tree(pid: int, stats: dict[int, list[str]]) -> set[int]:
    kids: dict[int, list[int]] = {}
    for p, fields in stats.items():
        kids.setdefault(int(fields[1]), []).append(p)
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        out.add(p)
        todo.extend(kids.get(p, []))
    return out


def proc_tree_pids(pid: int) -> set[int]:
    """pid and all its descendants."""
    return _tree(pid, _proc_stats())


def proc_rss(pids) -> int:
    """Summed resident set size (bytes) of these processes (gone ones count 0)."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for ln in f:
                    if ln.startswith("VmRSS:"):
                        total += int(ln.split()[1]) * 1024
        except OSError:
            pass
    return total


def proc_tree_usage(pid: int) -> tuple[float, int]:
    """(cpu seconds incl. reaped children, RSS bytes) summed over pid and its descendants."""
    tick, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    stats = _proc_stats()
    cpu, rss = 0.0, 0
    for p in _tree(pid, stats):
        f = stats.get(p)
        if f is None:
            continue
        # Its own threads to the nanosecond (utime and stime count in clock ticks: a process
        # that wakes 20 times a second for 0.3 ms is charged a whole tick or nothing, and 20 s
        # of it moved by a fifth from run to run); reaped children (track scripts) in ticks.
        own = on_cpu(p)
        if own is None:
            own = (int(f[11]) + int(f[12])) / tick
        cpu += own + (int(f[13]) + int(f[14])) / tick
        rss += int(f[21]) * page
    return cpu, rss


def on_cpu(pid: int) -> float | None:
    """Seconds on CPU of pid's live threads (/proc/PID/task/*/schedstat, nanoseconds); None
    if schedstat is not there (a kernel without schedstats, a process just gone)."""
    total = 0
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/schedstat") as fh:
                total += int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total / 1e9


def stale_labs() -> dict[str, list[int]]:
    """Namespaces left by labs whose process is gone (e.g. SIGKILLed): {name: [pids in it]}."""
    import re
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    out = {}
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        m = re.fullmatch(r"dp(\d+)x\d+(br|n1|n2|c)", name)
        if not m or Path(f"/proc/{m.group(1)}").exists():
            continue
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
        out[name] = [int(p) for p in pids.stdout.split()]
    return out


def main(argv=None) -> int:
    """`python3 tests/net/lab.py --cleanup`: delete namespaces of labs whose process died.
    Processes still inside them are listed, not killed: check them and end them by PID."""
    import argparse
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--cleanup", action="store_true", help="delete empty stale namespaces")
    a = ap.parse_args(argv)
    stale = stale_labs()
    if not stale:
        print("no stale lab namespaces")
    for name, pids in sorted(stale.items()):
        if pids:
            print(f"{name}: still has processes {pids}; not deleted")
        elif a.cleanup:
            subprocess.run(["ip", "netns", "del", name])
            print(f"{name}: deleted")
        else:
            print(f"{name}: stale (use --cleanup)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
