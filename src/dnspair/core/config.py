"""The pair's config: one YAML file, identical on both nodes.

Pure: `parse(text, name)` turns text into a `Config` or raises `ConfigError` listing every
problem with its key and line. Reading files and checking key permissions is the shell's job.
"""
from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar, cast

import yaml

_T = TypeVar("_T")
_C = TypeVar("_C")
# A check returns the problem with a value, or None if the value is fine.
_Check = Callable[[_T], str | None]
# {field: (kind, check, required)}. Each field's check takes that field's kind, which a dict's
# value type cannot tie together: hence Any for the check's argument.
_Spec = dict[str, tuple[type[object], _Check[Any] | None, bool]]

# Keys that were once valid: a config that still has one gets this instead of "unknown key".
REMOVED = {
    "control.group": "no longer used: give control.admin_group (may standby, unstandby, move, "
                     "cleanup; default dnspair-admin) and/or control.monitor_group (status only; "
                     "default dnspair-monitor) instead (docs/security.md)",
}
GROUP_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
RDTYPES = ("A", "AAAA", "NS", "SOA", "TXT", "MX", "PTR", "CNAME", "SRV")
RCODES = ("NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED")


class ConfigError(Exception):
    """Every problem found in one file, each `file:line: key: message`."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Node:
    name: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class Vip:
    address: str          # "192.0.2.11/24"
    interface: str
    prefers: dict[str, int]

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]

    @property
    def prefixlen(self) -> int:
        return int(self.address.split("/")[1])

    @property
    def family(self) -> int:
        """4 or 6: which announcement claims it (gratuitous ARP, or a Neighbour Advertisement)."""
        return 6 if ":" in self.ip else 4

    def home(self, nodes: tuple[str, ...]) -> str:
        """The node that prefers this VIP most (ties: first in name order)."""
        return max(sorted(nodes), key=lambda n: self.prefers.get(n, 0))


@dataclass(frozen=True)
class DnsCheck:
    server: str = "127.0.0.1"
    port: int = 53
    query: str = "localhost"
    type: str = "A"
    expect: str | None = None   # an answer (e.g. 127.0.0.1) or an rcode (e.g. NOERROR)
    interval: float = 0.1
    timeout: float = 0.25


@dataclass(frozen=True)
class Heartbeat:
    port: int = 7405
    # Every wakeup costs a Pi CPU time, so heartbeats are not faster than the dead time
    # needs; a silence past suspect_after starts rapid probing, so random loss cannot fake
    # a death (it would have to eat dozens of probes in a row).
    interval: float = 0.1
    dead_time: float = 0.2
    suspect_after: float = 0.13
    probe_interval: float = 0.002


@dataclass(frozen=True)
class Witness:
    address: str
    interval: float = 1.0
    timeout: float = 0.5


@dataclass(frozen=True)
class Arp:
    # Spread past the kernel's 1 s neighbour locktime: after a partition a client ignores
    # announcements that come within a second of the previous owner's.
    count: int = 5
    spacing: float = 0.3


@dataclass(frozen=True)
class Control:
    socket: str = "/run/dnspair/control.sock"
    admin_group: str = "dnspair-admin"      # standby, unstandby, move, cleanup (and status)
    monitor_group: str = "dnspair-monitor"  # status only


@dataclass(frozen=True)
class StatusHttp:
    listen: str   # "ADDRESS:PORT"

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


@dataclass(frozen=True)
class Firewall:
    """Who may reach the node (core/firewall.py makes the nftables ruleset). None: the LAN
    (the VIPs' networks)."""
    enabled: bool = True
    ssh_from: tuple[str, ...] | None = None
    dns_from: tuple[str, ...] | None = None
    monitoring: tuple[str, ...] = ()   # NRPE (5666) and the status endpoint; none by default
    notify_to: tuple[str, ...] = ()    # what the notify commands may reach (IPAddressAllow=)


@dataclass(frozen=True)
class Leds:
    enabled: bool = True
    green: int = 17
    amber: int = 27
    red: int = 22
    button: int = 23


@dataclass(frozen=True)
class Record:
    """One resource record of a local zone, as written: NAME [TTL] TYPE DATA (NAME relative
    to the zone, "@" its apex)."""
    name: str
    type: str
    data: str
    ttl: int | None = None

    def text(self) -> str:
        return " ".join([self.name] + ([str(self.ttl)] if self.ttl is not None else [])
                        + [self.type, self.data])


@dataclass(frozen=True)
class Zone:
    name: str                     # "home.arpa": lower case, no trailing dot
    records: tuple[Record, ...] = ()


@dataclass(frozen=True)
class Dns:
    """The pair's one DNS service (docs/dns.md): local zones, upstream, who may ask."""
    zones: tuple[Zone, ...]
    primary: str
    forwarders: tuple[str, ...] = ()
    forward: str = "only"
    allow_query: tuple[str, ...] = ("localhost", "localnets")
    ttl: int = 3600
    drift_after: float = 30.0
    drift_severity: str = "warning"
    check_interval: float = 5.0

    def zone_of(self, name: str) -> Zone | None:
        """The local zone a name falls in (the longest match), None if none."""
        n = name.lower().rstrip(".")
        best = None
        for z in self.zones:
            if (n == z.name or n.endswith("." + z.name)) and (best is None or len(z.name) > len(best.name)):
                best = z
        return best


@dataclass(frozen=True)
class Bind:
    """Where this node's bind keeps things. Node-local (not in the config digest): the image's
    defaults are Debian's; the namespace tests point them at their own directories."""
    etc_dir: str = "/etc/bind"
    zone_dir: str = "/var/lib/bind/dnspair"
    cache_dir: str = "/var/cache/bind"
    run_dir: str = "/run/named"
    rndc_key: str | None = None     # rndc -k FILE (None: rndc's own default)
    rndc_port: int = 953


@dataclass(frozen=True)
class Config:
    cluster: str
    key_file: str
    nodes: dict[str, Node]
    vips: tuple[Vip, ...]
    dns_check: DnsCheck = DnsCheck()
    heartbeat: Heartbeat = Heartbeat()
    failure_threshold: int = 1
    failback: str = "manual"
    hold_down: float = 30.0
    witness: Witness | None = None
    arp: Arp = Arp()
    control: Control = Control()
    status_http: StatusHttp | None = None
    leds: Leds = Leds()
    state_dir: str = "/var/lib/dnspair"
    runtime_dir: str = "/run/dnspair"
    notify: tuple[str, ...] = ()
    notify_timeout: float = 10.0
    notify_queue: int = 100
    dns: Dns | None = None
    bind: Bind = Bind()
    firewall: Firewall = Firewall()
    digest: str = field(default="", compare=False)

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(sorted(self.nodes))

    def peer_of(self, name: str) -> str:
        return next(n for n in self.node_names if n != name)

    def vip(self, text: str) -> int:
        """Index of a VIP given as '192.0.2.11' or '192.0.2.11/24'; ValueError if unknown."""
        text = _canonical(text)
        for i, v in enumerate(self.vips):
            if text in (v.address, v.ip):
                return i
        raise ValueError(f"unknown VIP {text!r} (known: {', '.join(v.ip for v in self.vips)})")


# --- validation -------------------------------------------------------------------------

class _Checker:
    """Walks the composed YAML tree so every problem can name its line."""

    def __init__(self, filename: str):
        self.filename = filename
        self.problems: list[str] = []

    def err(self, node: yaml.Node | None, key: str, msg: str) -> None:
        line = f"{node.start_mark.line + 1}" if node is not None else "?"
        self.problems.append(f"{self.filename}:{line}: {key}: {_short(msg, 300)}")

    def mapping(self, node: yaml.Node, key: str,
                allowed: dict[str, bool]) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """{name: (key_node, value_node)}; unknown and missing-required keys are problems."""
        if not isinstance(node, yaml.MappingNode):
            self.err(node, key, "must be a mapping")
            return {}
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for k, v in node.value:
            name = _short(k.value, 64) if isinstance(k, yaml.ScalarNode) else "<complex key>"
            path = f"{key}.{name}" if key else name
            if path in REMOVED:
                self.err(k, path, REMOVED[path])
            elif allowed and name not in allowed:
                self.err(k, path, f"unknown key (allowed: {', '.join(sorted(allowed))})")
            elif name in out:
                self.err(k, path, "duplicate key")
            else:
                out[name] = (k, v)
        for name, required in allowed.items():
            if required and name not in out:
                self.err(node, f"{key}.{name}" if key else name, "missing required key")
        return out

    def scalar(self, node: yaml.Node, key: str, kind: type[_T], check: _Check[_T] | None = None,
               hint: str = "") -> _T | None:
        value: object
        if not isinstance(node, yaml.ScalarNode):
            self.err(node, key, f"must be a {kind.__name__ if isinstance(kind, type) else kind}")
            return None
        raw = node.value
        try:
            if kind is bool:
                value = yaml.safe_load(raw) if node.tag != "tag:yaml.org,2002:str" else raw
                if not isinstance(value, bool):
                    raise ValueError
            elif kind is int:
                if node.tag == "tag:yaml.org,2002:str" and node.style:
                    raise ValueError
                value = int(raw, 10)
            elif kind is float:
                if node.tag == "tag:yaml.org,2002:str" and node.style:
                    raise ValueError
                value = float(raw)
                if value != value or value in (float("inf"), float("-inf")):
                    raise ValueError
            else:
                value = raw
        except ValueError:
            self.err(node, key, f"must be {'an' if kind is int else 'a'} "
                                f"{ {int: 'integer', float: 'number', bool: 'boolean'}.get(kind, 'string')}, "
                                f"got {_short(repr(raw))}")
            return None
        result = cast(_T, value)  # the branch on kind above made it one
        if check is not None:
            problem = check(result)
            if problem:
                self.err(node, key, problem)
                return None
        return result

    def sequence(self, node: yaml.Node, key: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            self.err(node, key, "must be a list")
            return []
        return list(node.value)


def _range(lo: float, hi: float, unit: str = "") -> _Check[float]:
    def check(v: float) -> str | None:
        if not (lo <= v <= hi):
            return f"must be between {lo} and {hi}{unit}, got {v}"
        return None
    return check


def _ipv4(v: str) -> str | None:
    try:
        ipaddress.IPv4Address(v)
    except ValueError:
        return f"must be an IPv4 address, got {v!r}"
    return None


def _canonical(text: str) -> str:
    """One spelling per address ('2001:DB8:0::53/64' -> '2001:db8::53/64'); others unchanged."""
    ip, sep, plen = text.partition("/")
    try:
        return str(ipaddress.ip_address(ip)) + sep + plen
    except ValueError:
        return text


def _ipv6_problem(ip: ipaddress.IPv6Address) -> str | None:
    """Why an IPv6 address cannot be a VIP or a heartbeat address, or None."""
    if ip.is_link_local:
        return (f"{ip} is link-local: it needs an interface scope and is not reachable beyond "
                f"the link (use a global or ULA fd00::/8 address)")
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback:
        return f"{ip} is a multicast, unspecified or loopback address"
    if ip.ipv4_mapped is not None:
        return f"{ip} is an IPv4-mapped address: write the IPv4 address itself"
    return None


SCOPED = "has a %scope: give the address alone"


def _node_address(v: str) -> str | None:
    if ":" not in v:
        return _ipv4(v)
    if "%" in v:
        return f"{v} {SCOPED}"
    try:
        ip = ipaddress.IPv6Address(v)
    except ValueError:
        return f"must be an IPv4 or IPv6 address, got {v!r}"
    return _ipv6_problem(ip)


def _any_ip(v: str) -> str | None:
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return f"must be an IPv4 or IPv6 address, got {v!r}"
    return None


def _group(v: str) -> str | None:
    return None if GROUP_RE.match(v) else f"not a group name: {v!r}"


def _name(v: str) -> str | None:
    return None if NAME_RE.match(v) else f"must be 1-32 letters, digits, '.', '_' or '-', got {v!r}"


# An IPv6 VIP's prefix is on-link: a LAN's is /64; shorter would take other subnets' traffic.
V6_PREFIX_MIN = 64


def _vip_address(v: str) -> str | None:
    if "/" not in v:
        return f"must be ADDRESS/PREFIX, e.g. 192.0.2.11/24 or 2001:db8::53/64, got {v!r}"
    if ":" in v:
        return _vip6_address(v)
    try:
        iface = ipaddress.IPv4Interface(v)
    except ValueError:
        return f"must be an IPv4 ADDRESS/PREFIX, got {v!r}"
    if iface.network.prefixlen < 32 and iface.ip in (iface.network.network_address,
                                                       iface.network.broadcast_address):
        return f"{iface.ip} is the network or broadcast address of {iface.network}"
    return None


def _vip6_address(v: str) -> str | None:
    if "%" in v:
        return f"{v} {SCOPED} (the interface is vips[].interface)"
    try:
        iface = ipaddress.IPv6Interface(v)
    except ValueError:
        return f"must be an IPv6 ADDRESS/PREFIX, e.g. 2001:db8::53/64, got {v!r}"
    problem = _ipv6_problem(iface.ip)
    if problem:
        return problem
    plen = iface.network.prefixlen
    if plen < V6_PREFIX_MIN:
        return f"prefix /{plen} is too short for a LAN: use /{V6_PREFIX_MIN} to /128"
    if plen < 127 and iface.ip == iface.network.network_address:
        return f"{iface.ip} is the subnet-router anycast address of {iface.network}"
    return None


def _listen(v: str) -> str | None:
    host, sep, port = v.rpartition(":")
    if not sep or _ipv4(host) or not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"must be IPV4:PORT, e.g. 192.0.2.1:8053, got {v!r}"
    return None


def _sub(c: _Checker, root: dict[str, tuple[yaml.Node, yaml.Node]], key: str,
         cls: Callable[..., _C], spec: _Spec) -> _C | None:
    """Fill dataclass `cls` from the mapping at `key`, `spec` = {field: (kind, check, required)}."""
    if key not in root:
        return None
    fields = c.mapping(root[key][1], key, {k: req for k, (_, _, req) in spec.items()})
    values: dict[str, object] = {}
    for name, (_knode, vnode) in fields.items():
        if name in spec:
            kind, check, _ = spec[name]
            v = c.scalar(vnode, f"{key}.{name}", kind, check)
            if v is not None:
                values[name] = v
    try:
        return cls(**values)
    except TypeError:
        return None  # a required field was already reported


def parse(text: str, filename: str = "<config>") -> Config:
    try:
        tree = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise ConfigError([f"{filename}:{_yaml_line(e, text)}: not valid YAML: {_yaml_problem(e)}"]) from None
    except RecursionError:
        raise ConfigError([f"{filename}:?: nested too deeply to be a dnspair config"]) from None
    if tree is None:
        raise ConfigError([f"{filename}:1: the file is empty"])
    tagged = _explicit_tag(text)
    if tagged is not None:
        line, tag = tagged
        raise ConfigError([f"{filename}:{line}: YAML tags are not accepted here, got {_short(tag)}"])
    try:
        return _check(tree, text, filename)
    except RecursionError:
        raise ConfigError([f"{filename}:?: nested too deeply to be a dnspair config"]) from None


MAX_PROBLEMS = 50


def _explicit_tag(text: str) -> tuple[int, str] | None:
    """(line, tag) of the first tag written in the file (`!!python/str`, `!!timestamp`, `!x`).
    A config has plain strings, numbers, lists and mappings only: a tag could only change how
    a value is built later (the digest's safe_load), never what the checker saw."""
    for ev in yaml.parse(text, Loader=yaml.SafeLoader):
        tag = getattr(ev, "tag", None)
        if tag is not None:
            return (ev.start_mark.line + 1 if ev.start_mark is not None else 0), tag
    return None


def _yaml_line(e: yaml.YAMLError, text: str) -> int | str:
    mark: yaml.error.Mark | None = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    if mark is not None:
        return mark.line + 1
    position = getattr(e, "position", None)  # ReaderError: a character YAML does not allow
    return text.count("\n", 0, position) + 1 if position is not None else "?"


def _yaml_problem(e: yaml.YAMLError) -> str:
    if isinstance(e, yaml.reader.ReaderError):
        return f"character {e.character!r} is not allowed"
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return _short(problem)


def _short(v: object, limit: int = 80) -> str:
    """For messages: one line, bounded, whatever a hostile file holds."""
    text = v if isinstance(v, str) else repr(v)
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "..."


def _check(tree: yaml.Node, text: str, filename: str) -> Config:
    c = _Checker(filename)
    root = c.mapping(tree, "", {
        "cluster": True, "key_file": False, "nodes": True, "vips": True, "dns_check": False,
        "heartbeat": False, "failure_threshold": False, "failback": False, "hold_down": False,
        "witness": False, "arp": False, "control": False, "status_http": False, "leds": False,
        "state_dir": False, "runtime_dir": False, "notify": False, "notify_timeout": False,
        "notify_queue": False, "dns": False, "bind": False, "firewall": False,
    })

    def top(name: str, kind: type[_T], check: _Check[_T] | None = None,
            default: _T | None = None) -> _T | None:
        if name not in root:
            return default
        return c.scalar(root[name][1], name, kind, check)

    cluster = top("cluster", str, _name)
    key_file = top("key_file", str, lambda v: None if v.startswith("/") else "must be an absolute path",
                   "/etc/dnspair/authkey")
    state_dir = top("state_dir", str, lambda v: None if v.startswith("/") else "must be an absolute path",
                    "/var/lib/dnspair")
    runtime_dir = top("runtime_dir", str, lambda v: None if v.startswith("/") else "must be an absolute path",
                      "/run/dnspair")
    notify: list[str] = []
    if "notify" in root:
        for item in c.sequence(root["notify"][1], "notify"):
            cmd = c.scalar(item, "notify", str, lambda v: None if v.strip() and "\0" not in v
                           else "must be a command, not empty")
            if cmd is not None:
                notify.append(cmd)
        if len(notify) > 16:
            c.err(root["notify"][1], "notify", f"at most 16 commands, got {len(notify)}")
    notify_timeout = top("notify_timeout", float, _range(0.1, 600, " s"), 10.0)
    notify_queue = top("notify_queue", int, _range(1, 10000), 100)

    nodes: dict[str, Node] = {}
    seen_addr: dict[str, str] = {}
    if "nodes" in root:
        nmap = c.mapping(root["nodes"][1], "nodes", {})
        if len(nmap) != 2 and isinstance(root["nodes"][1], yaml.MappingNode):
            c.err(root["nodes"][1], "nodes", f"a pair has exactly 2 nodes, got {len(nmap)}")
        for name, (knode, vnode) in nmap.items():
            bad_name = _name(name)
            if bad_name:
                c.err(knode, f"nodes.{name}", bad_name)
                continue
            fields = c.mapping(vnode, f"nodes.{name}", {"addresses": True})
            addrs: list[str] = []
            if "addresses" in fields:
                items = c.sequence(fields["addresses"][1], f"nodes.{name}.addresses")
                if not 1 <= len(items) <= 2 and isinstance(fields["addresses"][1], yaml.SequenceNode):
                    c.err(fields["addresses"][1], f"nodes.{name}.addresses",
                          f"one or two heartbeat addresses, got {len(items)}")
                for item in items:
                    a = c.scalar(item, f"nodes.{name}.addresses", str, _node_address)
                    if a is None:
                        continue
                    a = _canonical(a)
                    if a in seen_addr:
                        c.err(item, f"nodes.{name}.addresses", f"{a} is already used by {seen_addr[a]}")
                    seen_addr[a] = name
                    addrs.append(a)
            nodes[name] = Node(name, tuple(addrs))
        counts = {len(n.addresses) for n in nodes.values()}
        if len(nodes) == 2 and len(counts) == 2 and 0 not in counts:
            c.err(root["nodes"][1], "nodes",
                  "both nodes need the same number of heartbeat addresses (one per link)")
        elif len(nodes) == 2 and len(counts) == 1:
            a_, b_ = (nodes[n].addresses for n in sorted(nodes))
            for k, (x, y) in enumerate(zip(a_, b_, strict=True)):
                if (":" in x) != (":" in y):
                    c.err(root["nodes"][1], "nodes",
                          f"heartbeat link {k}: {x} and {y} are not the same IP version")

    vips: list[Vip] = []
    if "vips" in root:
        items = c.sequence(root["vips"][1], "vips")
        if not items and isinstance(root["vips"][1], yaml.SequenceNode):
            c.err(root["vips"][1], "vips", "at least one VIP is needed")
        if len(items) > 16:
            c.err(root["vips"][1], "vips", f"at most 16 VIPs, got {len(items)}")
        seen_vip: set[str] = set()
        for i, item in enumerate(items):
            key = f"vips[{i}]"
            fields = c.mapping(item, key, {"address": True, "interface": False, "prefers": True})
            addr = iface = None
            prefers: dict[str, int] = {}
            if "address" in fields:
                addr = c.scalar(fields["address"][1], f"{key}.address", str, _vip_address)
                if addr is not None:
                    addr = _canonical(addr)
                    ip = addr.split("/")[0]
                    if ip in seen_vip:
                        c.err(fields["address"][1], f"{key}.address", f"{ip} is listed twice")
                    elif ip in seen_addr:
                        c.err(fields["address"][1], f"{key}.address",
                              f"{ip} is a heartbeat address of {seen_addr[ip]}")
                    seen_vip.add(ip)
            iface = "eth0"
            if "interface" in fields:
                iface = c.scalar(fields["interface"][1], f"{key}.interface", str,
                                 lambda v: None if IFNAME_RE.match(v) else f"not an interface name: {v!r}")
            if "prefers" in fields:
                pmap = c.mapping(fields["prefers"][1], f"{key}.prefers", {})
                for n, (kn, vn) in pmap.items():
                    if nodes and n not in nodes:
                        c.err(kn, f"{key}.prefers.{n}", f"unknown node (nodes: {', '.join(sorted(nodes))})")
                        continue
                    s = c.scalar(vn, f"{key}.prefers.{n}", int, _range(0, 1000000))
                    if s is not None:
                        prefers[n] = s
                missing = [n for n in sorted(nodes) if n not in pmap]
                if missing and isinstance(fields["prefers"][1], yaml.MappingNode):
                    c.err(fields["prefers"][1], f"{key}.prefers", f"no score for {', '.join(missing)}")
            if addr and iface:
                vips.append(Vip(addr, iface, prefers))

    dns_check = _sub(c, root, "dns_check", DnsCheck, {
        "server": (str, _any_ip, False),
        "port": (int, _range(1, 65535), False),
        "query": (str, lambda v: None if 0 < len(v) < 254 and " " not in v
                  else f"not a domain name: {v!r}", False),
        "type": (str, lambda v: None if v in RDTYPES
                 else f"must be one of {', '.join(RDTYPES)}, got {v!r}", False),
        "expect": (str, None, False),
        "interval": (float, _range(0.01, 3600, " s"), False),
        "timeout": (float, _range(0.01, 60, " s"), False),
    }) or DnsCheck()
    dns_check = replace(dns_check, server=_canonical(dns_check.server))
    heartbeat = _sub(c, root, "heartbeat", Heartbeat, {
        "port": (int, _range(1, 65535), False),
        "interval": (float, _range(0.005, 10, " s"), False),
        "dead_time": (float, _range(0.02, 60, " s"), False),
        "suspect_after": (float, _range(0.005, 60, " s"), False),
        "probe_interval": (float, _range(0.001, 1, " s"), False),
    }) or Heartbeat()
    if "heartbeat" in root:
        hb = root["heartbeat"][1]
        if heartbeat.dead_time < 2 * heartbeat.interval:
            c.err(hb, "heartbeat.dead_time",
                  f"must be at least twice the interval ({2 * heartbeat.interval} s)")
        if not heartbeat.interval <= heartbeat.suspect_after < heartbeat.dead_time:
            c.err(hb, "heartbeat.suspect_after", "must lie between interval and dead_time")
    if "dns_check" in root and dns_check.timeout > max(dns_check.interval, 0.01) * 10:
        c.err(root["dns_check"][1], "dns_check.timeout", "must not exceed ten intervals")
    arp = _sub(c, root, "arp", Arp, {
        "count": (int, _range(0, 20), False),
        "spacing": (float, _range(0.001, 10, " s"), False),
    }) or Arp()
    control = _sub(c, root, "control", Control, {
        "socket": (str, lambda v: None if v.startswith("/") else "must be an absolute path", False),
        "admin_group": (str, _group, False),
        "monitor_group": (str, _group, False),
    }) or Control()
    if runtime_dir is not None and "socket" not in _keys(root, "control"):
        control = replace(control, socket=f"{runtime_dir.rstrip('/')}/control.sock")
    leds = _sub(c, root, "leds", Leds, {
        "enabled": (bool, None, False),
        "green": (int, _range(0, 27), False),
        "amber": (int, _range(0, 27), False),
        "red": (int, _range(0, 27), False),
        "button": (int, _range(0, 27), False),
    }) or Leds()
    if "leds" in root and len({leds.green, leds.amber, leds.red, leds.button}) != 4:
        c.err(root["leds"][1], "leds", "each LED and the button need their own pin")
    status_http = _sub(c, root, "status_http", StatusHttp, {"listen": (str, _listen, True)})
    firewall = _firewall(c, root)

    witness: Witness | None = None
    if "witness" in root:
        wnode = root["witness"][1]
        if isinstance(wnode, yaml.ScalarNode):
            a = c.scalar(wnode, "witness", str, _ipv4)
            witness = Witness(a) if a else None
        else:
            witness = _sub(c, root, "witness", Witness, {
                "address": (str, _ipv4, True),
                "interval": (float, _range(0.05, 60, " s"), False),
                "timeout": (float, _range(0.01, 10, " s"), False),
            })

    failure_threshold = top("failure_threshold", int, _range(1, 100), 1)
    failback = top("failback", str,
                   lambda v: None if v in ("manual", "auto") else f"must be manual or auto, got {v!r}",
                   "manual")
    hold_down = top("hold_down", float, _range(0, 86400, " s"), 30.0)

    dns_section = _dns(c, root["dns"][1], list(nodes)) if "dns" in root else None
    bind = _sub(c, root, "bind", Bind, {
        "etc_dir": (str, _abs, False), "zone_dir": (str, _abs, False), "cache_dir": (str, _abs, False),
        "run_dir": (str, _abs, False), "rndc_key": (str, _abs, False),
        "rndc_port": (int, _range(1, 65535), False),
    }) or Bind()

    if c.problems:
        more = len(c.problems) - MAX_PROBLEMS
        raise ConfigError(c.problems[:MAX_PROBLEMS]
                          + ([f"{filename}: ... and {more} more problems"] if more > 0 else []))
    # Without problems every value was read: top() and scalar() return None only after one.
    assert (cluster is not None and key_file is not None and state_dir is not None
            and failure_threshold is not None and failback is not None and hold_down is not None
            and runtime_dir is not None and notify_timeout is not None and notify_queue is not None)
    # Node-local settings may differ between the two nodes; everything else must match.
    local = ("control", "state_dir", "status_http", "leds", "runtime_dir", "notify", "notify_timeout",
             "notify_queue", "bind")
    shared = {k: v for k, v in yaml.safe_load(text).items() if k not in local}
    digest = hashlib.sha256(yaml.safe_dump(shared, sort_keys=True).encode()).hexdigest()[:16]
    return Config(
        cluster=cluster, key_file=key_file, nodes=nodes, vips=tuple(vips), dns_check=dns_check,
        heartbeat=heartbeat, failure_threshold=failure_threshold, failback=failback,
        hold_down=hold_down, witness=witness, arp=arp, control=control, status_http=status_http,
        leds=leds, state_dir=state_dir, runtime_dir=runtime_dir, notify=tuple(notify),
        notify_timeout=notify_timeout, notify_queue=notify_queue, dns=dns_section, bind=bind,
        firewall=firewall, digest=digest,
    )


def _keys(root: dict[str, tuple[yaml.Node, yaml.Node]], key: str) -> set[str]:
    """The keys given under mapping `key` (empty if it is absent or not a mapping)."""
    node = root.get(key, (None, None))[1]
    if not isinstance(node, yaml.MappingNode):
        return set()
    return {k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def _abs(v: str) -> str | None:
    return None if v.startswith("/") else "must be an absolute path"


# The catalog zone (RFC 9432) is the pair's own; a local zone may not take its name.
CATALOG_ZONE = "catalog.dnspair.invalid"
ALLOW_WORDS = ("any", "none", "localhost", "localnets")


def _dns(c: _Checker, node: yaml.Node, node_names: list[str]) -> Dns | None:
    """The `dns:` section. Records are checked with dnspython's own parser (imported only
    when a config has a `dns:` section: the plugin and the simulator never pay for it)."""
    f = c.mapping(node, "dns", {"zones": False, "primary": False, "forwarders": False, "forward": False,
                                "allow_query": False, "ttl": False, "drift_after": False,
                                "drift_severity": False, "check_interval": False})
    values: dict[str, Any] = {}
    if "primary" in f:
        p = c.scalar(f["primary"][1], "dns.primary", str)
        if p is not None and node_names and p not in node_names:
            c.err(f["primary"][1], "dns.primary",
                  f"unknown node {p!r} (nodes: {', '.join(sorted(node_names))})")
        elif p is not None:
            values["primary"] = p
    elif node_names:
        values["primary"] = node_names[0]   # the first node listed
    for key in ("forwarders", "allow_query"):
        if key not in f:
            continue
        out = []
        for item in c.sequence(f[key][1], f"dns.{key}"):
            v = c.scalar(item, f"dns.{key}", str, _forwarder if key == "forwarders" else _acl_item)
            if v is not None:
                out.append(v)
        values[key] = tuple(out)
    if "forward" in f:
        values["forward"] = c.scalar(
            f["forward"][1], "dns.forward", str,
            lambda v: None if v in ("only", "first") else f"must be only or first, got {v!r}")
    for key, kind, check in (("ttl", int, _range(0, 604800, " s")),
                             ("drift_after", float, _range(1, 86400, " s")),
                             ("check_interval", float, _range(0.5, 3600, " s"))):
        if key in f:
            values[key] = c.scalar(f[key][1], f"dns.{key}", kind, check)
    if "drift_severity" in f:
        values["drift_severity"] = c.scalar(
            f["drift_severity"][1], "dns.drift_severity", str,
            lambda v: None if v in ("warning", "critical") else f"must be warning or critical, got {v!r}")
    zones: list[Zone] = []
    if "zones" in f:
        zmap = c.mapping(f["zones"][1], "dns.zones", {})
        for zname, (knode, vnode) in zmap.items():
            z = _zone(c, zname, knode, vnode, [x.name for x in zones])
            if z is not None:
                zones.append(z)
        if len(zmap) > 100 and isinstance(f["zones"][1], yaml.MappingNode):
            c.err(f["zones"][1], "dns.zones", f"at most 100 zones, got {len(zmap)}")
    values["zones"] = tuple(zones)
    if any(v is None for v in values.values()) or "primary" not in values:
        return None   # already reported
    return Dns(**values)


def _forwarder(v: str) -> str | None:
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return f"must be an IP address, got {v!r}"
    return None


def _acl_item(v: str) -> str | None:
    if v in ALLOW_WORDS:
        return None
    try:
        ipaddress.ip_network(v, strict=False)
    except ValueError:
        return f"must be a network (192.0.2.0/24), an address or one of {', '.join(ALLOW_WORDS)}, got {v!r}"
    return None


def _zone(c: _Checker, zname: str, knode: yaml.Node, vnode: yaml.Node, seen: list[str]) -> Zone | None:
    import dns.exception
    import dns.name
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
    key = f"dns.zones.{zname}"
    name = zname.lower().rstrip(".")
    try:
        origin = dns.name.from_text(name)
        if len(origin.labels) < 2 or not all(origin.labels[:-1]):
            raise ValueError
    except (dns.exception.DNSException, ValueError):
        c.err(knode, key, f"not a zone name: {zname!r}")
        return None
    if name == CATALOG_ZONE or name.endswith("." + CATALOG_ZONE):
        c.err(knode, key, f"{CATALOG_ZONE} is the pair's catalog zone")
        return None
    if name in seen:
        c.err(knode, key, "zone listed twice")
        return None
    records: list[Record] = []
    items = [] if isinstance(vnode, yaml.ScalarNode) and vnode.value in ("", "~", "null") else \
        c.sequence(vnode, key)
    for item in items:
        text = c.scalar(item, key, str)
        if text is None:
            continue
        problem, rec = parse_record(text, origin)
        if problem:
            c.err(item, key, f"{text!r}: {problem}")
        elif rec is not None:
            records.append(rec)
    return Zone(name, tuple(records))


def parse_record(text: str, origin: Any) -> tuple[str | None, Record | None]:
    """(problem, None) or (None, record) for 'NAME [TTL] TYPE DATA' in zone `origin` (a
    dns.name.Name). Shared by the config check and `dnspair records`."""
    parts = text.split(None, 2)
    if len(parts) < 3:
        return "must be NAME [TTL] TYPE DATA, e.g. 'nas A 192.0.2.20'", None
    name, rest = parts[0], parts[1:]
    ttl = None
    if rest[0].isdigit():
        ttl = int(rest[0])
        rest = rest[1].split(None, 1)
        if len(rest) < 2:
            return "must be NAME [TTL] TYPE DATA", None
        if ttl > 604800:
            return f"TTL {ttl} is over a week (604800 s)", None
    rtype, data = rest[0].upper(), rest[1].strip()
    problem = check_record(name, rtype, data, origin)
    return (problem, None) if problem else (None, Record(name, rtype, data, ttl))


# SOA is the pair's own; the rest are what a home's zone holds.
RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "TXT", "PTR", "SRV", "NS", "CAA")


def check_record(name: str, rtype: str, data: str, origin: Any) -> str | None:
    """The problem with one record (NAME relative to `origin` or absolute with a dot), or None."""
    import dns.exception
    import dns.name
    import dns.rdata
    if rtype not in RECORD_TYPES:
        return f"type must be one of {', '.join(RECORD_TYPES)}, got {rtype!r}"
    try:
        owner = origin if name == "@" else dns.name.from_text(name, origin)
    except dns.exception.DNSException as e:
        return f"bad name {name!r} ({_short(e)})"
    if not owner.is_subdomain(origin):
        return f"{owner.to_text()} is not in zone {origin.to_text()}"
    try:
        dns.rdata.from_text("IN", rtype, data, origin=origin)
    except (dns.exception.DNSException, ValueError) as e:
        return f"not valid {rtype} data {data!r} ({_short(str(e) or type(e).__name__)})"
    return None


MIN_KEY, MAX_KEY = 32, 64
# A random 32-byte key has about 30 distinct byte values; fewer than 8 happens by chance with
# odds far below 1e-30, so it means a hand-made key (all zero, "00ff" repeated...).
MIN_DISTINCT_BYTES = 8


def _network(v: str) -> str | None:
    try:
        ipaddress.ip_network(v, strict=False)
    except ValueError:
        return f"must be an address or ADDRESS/PREFIX, e.g. 192.0.2.50 or 192.0.2.0/24, got {v!r}"
    return None


def _firewall(c: _Checker, root: dict[str, tuple[yaml.Node, yaml.Node]]) -> Firewall:
    if "firewall" not in root:
        return Firewall()
    fields = c.mapping(root["firewall"][1], "firewall",
                       {"enabled": False, "ssh_from": False, "dns_from": False, "monitoring": False,
                        "notify_to": False})
    values: dict[str, Any] = {}
    if "enabled" in fields:
        values["enabled"] = c.scalar(fields["enabled"][1], "firewall.enabled", bool)
    for name in ("ssh_from", "dns_from", "monitoring", "notify_to"):
        if name in fields:
            items = c.sequence(fields[name][1], f"firewall.{name}")
            if len(items) > 64:
                c.err(fields[name][1], f"firewall.{name}", f"at most 64 entries, got {len(items)}")
            got = [c.scalar(i, f"firewall.{name}", str, _network) for i in items]
            values[name] = tuple(g for g in got if g is not None)
    return Firewall(**{k: v for k, v in values.items() if v is not None})


def parse_key(text: str, filename: str = "<key>") -> bytes:
    """A key file holds 32..64 random bytes as hex on one line, and nothing else."""
    s = text.strip()
    if "\n" in s or " " in s or "\t" in s:
        raise ConfigError([f"{filename}: not a dnspair key: one line of hex and nothing else "
                           "(make one with `dnspair keygen`)"])
    try:
        key = bytes.fromhex(s)
    except ValueError:
        raise ConfigError([f"{filename}: not a dnspair key (expected hex; "
                           "make one with `dnspair keygen`)"]) from None
    if len(key) < MIN_KEY:
        raise ConfigError([f"{filename}: key too short ({len(key)} bytes, need at least {MIN_KEY})"])
    if len(key) > MAX_KEY:
        raise ConfigError([f"{filename}: key too long ({len(key)} bytes, at most {MAX_KEY}): "
                           "not cut, refused (make one with `dnspair keygen`)"])
    if len(set(key)) < MIN_DISTINCT_BYTES:
        raise ConfigError([f"{filename}: key is not random ({len(set(key))} distinct byte values; "
                           "an all-zero or repeated key is refused): make one with `dnspair keygen`"])
    return key
