"""The node's nftables ruleset and the daemon's IP allow list, derived from the config.

Pure: `ruleset(cfg, me)` is the text `nft -f` loads; `daemon_peers(cfg, me)` the addresses the
daemon itself talks to (the unit's IPAddressAllow=). What may reach the node (docs/security.md):
heartbeats from the peer's address on each link, to this node's address on that link and
through the interface that leads back to the peer; DNS from `firewall.dns_from` (default: the
VIPs' networks, the LAN bind serves); SSH from `firewall.ssh_from` (default: the same LAN);
NRPE and the status endpoint from `firewall.monitoring` only; a ping from any of those.
Everything else is dropped and counted in the named counter `dropped`.
"""
from __future__ import annotations

import ipaddress

from .config import Config

TABLE = "dnspair"
NRPE_PORT = 5666
SSH_PORT = 22
DNS_PORT = 53
INCLUDE_DIR = "/etc/dnspair/firewall.d"
Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def lan(cfg: Config) -> list[Net]:
    """The networks the VIPs live on, in config order, each once."""
    out: list[Net] = []
    for v in cfg.vips:
        n = ipaddress.ip_network(v.address, strict=False)
        if n not in out:
            out.append(n)
    return out


def _nets(texts: tuple[str, ...]) -> list[Net]:
    return _merge([ipaddress.ip_network(t, strict=False) for t in texts])


def _merge(nets: list[Net]) -> list[Net]:
    """Each network once, none inside another (nft refuses overlapping set elements)."""
    out: list[Net] = []
    for n in sorted(set(nets), key=lambda n: (n.version, n.prefixlen)):
        if not any(o.version == n.version and n.subnet_of(o) for o in out):  # type: ignore[arg-type]
            out.append(n)
    return out


def _from(nets: list[Net], match: str) -> list[str]:
    """One rule per address family: `ip saddr { ... } MATCH` / `ip6 saddr { ... } MATCH`."""
    rules = []
    for fam, version in (("ip", 4), ("ip6", 6)):
        mine = [str(n) for n in nets if n.version == version]
        if mine:
            rules.append(f"{fam} saddr {{ {', '.join(mine)} }} {match}")
    return rules


def _fam(address: str) -> str:
    return "ip" if ipaddress.ip_address(address).version == 4 else "ip6"


def ruleset(cfg: Config, me: str, include_dir: str | None = INCLUDE_DIR, source: str = "") -> str:
    """The whole table, replaced atomically by one `nft -f` (the first two lines make sure the
    table exists, then delete it, in the same transaction as its new content)."""
    fw = cfg.firewall
    peer = cfg.peer_of(me)
    dns_from = _nets(fw.dns_from) if fw.dns_from is not None else lan(cfg)
    ssh_from = _nets(fw.ssh_from) if fw.ssh_from is not None else lan(cfg)
    monitoring = _nets(fw.monitoring)
    port = cfg.heartbeat.port
    rules = [
        'iifname "lo" accept',
        "ct state established,related accept",
        "ct state invalid counter name dropped drop",
        "# heartbeats: the peer's address on each link only, arriving where the route to it leads",
    ]
    for mine, theirs in zip(cfg.nodes[me].addresses, cfg.nodes[peer].addresses, strict=True):
        f = _fam(theirs)
        rules.append(f"{f} saddr {theirs} {f} daddr {mine} udp dport {port} "
                     f"fib saddr . iif oif exists accept")
    rules.append("# IPv6 neighbour discovery (IPv6's ARP), and the router's MLD queries: without an")
    rules.append("# answer to those a snooping switch stops forwarding the solicited-node groups ND uses")
    rules.append("icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } "
                 "ip6 hoplimit 255 accept")
    rules.append("icmpv6 type mld-listener-query ip6 saddr fe80::/10 ip6 hoplimit 1 accept")
    rules.append("# DNS from the networks bind serves")
    for proto in ("udp", "tcp"):
        rules += _from(dns_from, f"{proto} dport {DNS_PORT} accept")
    rules.append("# SSH")
    rules += _from(ssh_from, f"tcp dport {SSH_PORT} accept")
    if monitoring:
        rules.append("# monitoring: NRPE" + (" and the status endpoint" if cfg.status_http else ""))
        ports = [str(NRPE_PORT)] + ([str(cfg.status_http.port)] if cfg.status_http else [])
        dport = ports[0] if len(ports) == 1 else f"{{ {', '.join(ports)} }}"
        rules += _from(monitoring, f"tcp dport {dport} accept")
    pingers = _merge(dns_from + ssh_from + monitoring)
    rules.append("# ping, from hosts that may reach a service anyway")
    rules += [r for r in _from(pingers, "icmp type echo-request limit rate 20/second accept")
              if r.startswith("ip ")]
    rules += [r for r in _from(pingers, "icmpv6 type echo-request limit rate 20/second accept")
              if r.startswith("ip6 ")]
    rules.append(f"# your own rules: chain `own`, filled from {include_dir or '(none)'}/*.nft")
    rules.append("jump own")
    rules.append("counter name dropped drop")
    head = [f"# dnspair firewall for node {me} of cluster {cfg.cluster}, generated from "
            f"{source or 'the config'}", "# (config digest " + cfg.digest + "). Do not edit: "
            "regenerated on every config change; add rules in " + (include_dir or "(none)"),
            f"table inet {TABLE}", f"delete table inet {TABLE}", f"table inet {TABLE} {{",
            "\tcounter dropped {", "\t\tcomment \"everything the rules below did not admit\"",
            "\t}", "\tchain input {", "\t\ttype filter hook input priority filter; policy drop;"]
    body = [f"\t\t{r}" for r in rules]
    tail = ["\t}", "\tchain own {", "\t}", "}"]
    if include_dir:
        tail.append(f'include "{include_dir.rstrip("/")}/*.nft"')
    return "\n".join(head + body + tail) + "\n"


def daemon_peers(cfg: Config, me: str) -> list[str]:
    """What dnspair itself sends to or hears from, for the unit's IPAddressAllow=: the loopback
    (its DNS check), the peer's and its own heartbeat addresses, the VIPs (a local client
    asking the endpoint through one), with an IPv6 VIP all nodes (ff02::1, where its Neighbour
    Advertisements go: IPAddressDeny= filters the raw ICMPv6 socket too), the witness, the
    monitoring hosts (the endpoint) and `firewall.notify_to` (the notify commands run in the
    daemon's cgroup, so a webhook or a mail relay is reachable only if listed there)."""
    out = ["127.0.0.0/8", "::1/128"]  # "localhost" is a unit-file word; set-property wants prefixes
    addrs = [cfg.dns_check.server, *cfg.nodes[me].addresses, *cfg.nodes[cfg.peer_of(me)].addresses,
             *(v.ip for v in cfg.vips)]
    if any(":" in v.ip for v in cfg.vips):
        addrs.append("ff02::1/128")
    if cfg.witness:
        addrs.append(cfg.witness.address)
    if cfg.status_http:
        addrs += [str(n) for n in _nets(cfg.firewall.monitoring)]
    addrs += [str(n) for n in _nets(cfg.firewall.notify_to)]
    for a in addrs:
        if a not in out:
            out.append(a)
    return out
