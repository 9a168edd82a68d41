"""bind's configuration for one node of the pair, from the pair's config (docs/dns.md).

Pure: text in, text out; writing the files and asking rndc is the shell's job. One node is
primary for the local zones (dynamic: updates signed with the pair's TSIG key), the other a
secondary fed by NOTIFY and IXFR; the zone list itself travels in a catalog zone (RFC 9432),
so a zone added on the primary appears on the secondary by itself. What is per node (the
node's own name, where files live) is in the rendered config only, never in zone data.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from .config import CATALOG_ZONE, Bind, Config, Dns, Zone

KEY_NAME = "dnspair-tsig"
TSIG_ALGORITHM = "hmac-sha256"
# The TSIG key is derived from the pair's heartbeat key: no second secret to distribute. A
# fixed label keeps it apart from anything else derived from that key.
TSIG_LABEL = b"dnspair dns tsig v1"

# SOA timers. NOTIFY carries changes at once; refresh and retry only matter when a NOTIFY was
# lost (a partition): once it heals the secondary asks within REFRESH (a SOA query per zone
# every 15 s costs a Pi nothing), within RETRY if its own asks failed meanwhile. EXPIRE is
# how long a secondary keeps answering with no word from the primary: 8 weeks, for a Pi that
# is away for weeks (bind's ceiling is 24 weeks).
REFRESH, RETRY, EXPIRE, NEGATIVE = 15, 10, 8 * 7 * 86400, 60


def hkdf_sha256(key: bytes, info: bytes, length: int = 32, salt: bytes = b"") -> bytes:
    """RFC 5869 HKDF with SHA-256 (extract, then expand), in the standard library."""
    prk = hmac.new(salt or bytes(32), key, hashlib.sha256).digest()
    out, block = b"", b""
    for i in range((length + 31) // 32):
        block = hmac.new(prk, block + info + bytes([i + 1]), hashlib.sha256).digest()
        out += block
    return out[:length]


def tsig_secret(pair_key: bytes) -> bytes:
    return hkdf_sha256(pair_key, TSIG_LABEL)


def key_file(pair_key: bytes) -> str:
    secret = base64.b64encode(tsig_secret(pair_key)).decode()
    return (f'// The pair\'s TSIG key, derived from the heartbeat key (dnspair). Root and bind only.\n'
            f'key "{KEY_NAME}" {{\n\talgorithm {TSIG_ALGORITHM};\n\tsecret "{secret}";\n}};\n')


def shared_digest(dns: Dns | None) -> str:
    """What must be the same on both nodes' bind: upstream, who may ask, the zone list and
    which node is primary. Records are not in it: the serials compare those."""
    if dns is None:
        return "none"
    text = "\n".join([
        "forwarders " + " ".join(dns.forwarders), "forward " + dns.forward,
        "allow-query " + " ".join(dns.allow_query), "primary " + dns.primary,
        "zones " + " ".join(z.name for z in dns.zones),
    ])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def member_label(zone: str) -> str:
    """RFC 9432's unique member label: here the SHA-1 of the zone name, as bind's own docs do."""
    return hashlib.sha1(zone.encode()).hexdigest()


def zone_path(b: Bind, zone: str) -> str:
    return f"{b.zone_dir}/{zone}.db"


def catalog_path(b: Bind) -> str:
    return f"{b.zone_dir}/{CATALOG_ZONE}.db"


@dataclass(frozen=True)
class Rendered:
    """Files for one node: {path: text}. `seed` files are written only where none exists
    (a primary's zone: bind owns it, and its journal, from then on)."""
    files: dict[str, str]
    seed: dict[str, str]
    catalog: str | None      # the primary's catalog zone body, without its SOA serial
    digest: str


def _acl(items: tuple[str, ...]) -> str:
    return " ".join(f"{i};" for i in items)


def _pair_acl(cfg: Config) -> str:
    addrs = sorted({a for n in cfg.nodes.values() for a in n.addresses})
    return _acl(("127.0.0.1", *addrs))


def options(cfg: Config, me: str, role: str | None) -> str:
    b, dns = cfg.bind, cfg.dns
    allow = dns.allow_query if dns else ("localhost", "localnets")
    lines = [
        "// Written by dnspair from /etc/dnspair/dnspair.yaml (`dnspair reload` applies a change).",
        "// bind's lifecycle is systemd's; dnspair checks it, moves the VIPs and keeps the zones alike.",
        "acl dnspair-pair { " + _pair_acl(cfg) + " };",
        "options {",
        f'\tdirectory "{b.cache_dir}";',
        f'\tpid-file "{b.run_dir}/named.pid";',
        f'\tsession-keyfile "{b.run_dir}/session.key";',
        "\t// Every address of the node, IPv4 and IPv6: its own and the VIPs. bind 9.18 notices an",
        "\t// address added later (a VIP landing here) by itself and starts answering on it.",
        "\tlisten-on { any; };",
        "\tlisten-on-v6 { any; };",
        "\t// Per node, never replicated: its own name, and the digest of what it was given.",
        f'\tserver-id "{me}";',
        f'\tversion "dnspair {shared_digest(dns)}";',
        f"\tallow-query {{ {_acl(allow)} dnspair-pair; }};",
        f"\tallow-recursion {{ {_acl(allow)} }};",
        f"\tallow-query-cache {{ {_acl(allow)} }};",
        "\t// Zones go to the pair's own key only (the secondary, `dnspair records list`).",
        f'\tallow-transfer {{ key "{KEY_NAME}"; }};',
        "\trecursion yes;",
    ]
    if dns and dns.forwarders:
        lines += [f"\tforwarders {{ {_acl(dns.forwarders)} }};", f"\tforward {dns.forward};"]
    lines += [
        "\tdnssec-validation auto;",
        "\t// A Pi has no real-time clock: a freshly flashed card boots with the build's date, and DNSSEC",
        "\t// signatures made since then look \"not yet valid\", so every answer would be SERVFAIL, the NTP",
        "\t// server's name (Debian's pool) could never be resolved and the clock never set. The NTP",
        "\t// pool's names are therefore not validated; once the clock is set, dnspair-dns-clock.path",
        "\t// flushes what was cached under the wrong time.",
        '\tvalidate-except { "ntp.org"; };',
        "\t// Small board, small cache.",
        "\tmax-cache-size 64m;",
        "\t// Zone files people (and `dnspair dns promote`) can read, on the secondary too.",
        "\tmasterfile-format text;",
        "\t// Only the primary's zones notify, and only the peer (they say so themselves).",
        "\tnotify no;",
    ]
    if dns and dns.zones:
        # bind 9.18 answers home.arpa and the TEST-NET/private reverse zones from built-in empty
        # zones when it recurses without forwarders; on the secondary that empty zone stops the
        # catalog from adding the real one, so the VIP there answers NXDOMAIN for every name.
        lines += [f'\tdisable-empty-zone "{z.name}";' for z in dns.zones]
    if dns and role == "secondary":
        primary = cfg.nodes[dns.primary].addresses[0]
        lines += [
            "\t// The zone list comes from the primary's catalog zone (RFC 9432): a zone added there",
            "\t// appears here by itself.",
            f'\tcatalog-zones {{ zone "{CATALOG_ZONE}" default-primaries {{ {primary} key "{KEY_NAME}"; }}',
            f'\t\tzone-directory "{b.zone_dir}" in-memory no min-update-interval 1; }};',
            "\t// A lost NOTIFY (a partition) costs at most this long once the primary is back.",
            f"\tmin-refresh-time {REFRESH}; min-retry-time {RETRY}; max-retry-time {RETRY};",
        ]
    lines.append("};")
    return "\n".join(lines) + "\n"


def local(cfg: Config, role: str | None) -> str:
    dns, b = cfg.dns, cfg.bind
    lines = ["// Written by dnspair: the pair's local zones (docs/dns.md).",
             f'include "{b.etc_dir}/dnspair.key";']
    if dns is None or role is None:
        return "\n".join(lines) + "\n"
    me_primary = role == "primary"
    peer = cfg.peer_of(dns.primary) if me_primary else dns.primary
    peer_addr = cfg.nodes[peer].addresses[0]
    if me_primary:
        common = (f'allow-transfer {{ key "{KEY_NAME}"; }}; notify explicit; notify-delay 0; '
                  f'also-notify {{ {peer_addr} key "{KEY_NAME}"; }};')
        lines.append(f'zone "{CATALOG_ZONE}" {{ type primary; file "{catalog_path(b)}"; {common} '
                     "allow-query { dnspair-pair; }; };")
        for z in dns.zones:
            lines.append(f'zone "{z.name}" {{ type primary; file "{zone_path(b, z.name)}"; {common} '
                         f'allow-update {{ key "{KEY_NAME}"; }}; serial-update-method date; }};')
    else:
        lines.append(f'zone "{CATALOG_ZONE}" {{ type secondary; file "{catalog_path(b)}"; '
                     f'primaries {{ {peer_addr} key "{KEY_NAME}"; }}; allow-query {{ dnspair-pair; }}; '
                     f'allow-transfer {{ key "{KEY_NAME}"; }}; }};')
    return "\n".join(lines) + "\n"


def _soa(cfg: Config, origin: str, serial: int) -> str:
    dns = cfg.dns
    assert dns is not None
    mname = f"{dns.primary}.dnspair.invalid."
    return (f"$ORIGIN {origin}.\n$TTL {dns.ttl if origin != CATALOG_ZONE else 0}\n"
            f"@ SOA {mname} hostmaster.{origin}. {serial} {REFRESH} {RETRY} {EXPIRE} {NEGATIVE}\n")


def zone_file(cfg: Config, zone: Zone) -> str:
    """A primary zone's first contents: SOA, NS (ns.ZONE on every VIP unless the zone names
    its own), the records of the config."""
    body = _soa(cfg, zone.name, 1)
    if not any(r.type == "NS" and r.name == "@" for r in zone.records):
        body += "@ NS ns\n" + "".join(f"ns A {v.ip}\n" for v in cfg.vips)
    body += "".join(r.text() + "\n" for r in zone.records)
    return body


def catalog_body(cfg: Config) -> str:
    dns = cfg.dns
    assert dns is not None
    return ("@ NS invalid.\n" 'version TXT "2"\n'
            + "".join(f"{member_label(z.name)}.zones PTR {z.name}.\n" for z in dns.zones))


def catalog_file(cfg: Config, serial: int) -> str:
    return _soa(cfg, CATALOG_ZONE, serial) + catalog_body(cfg)


def role_of(cfg: Config, me: str, primary: str | None = None) -> str | None:
    """'primary' or 'secondary' for the local zones; None without a `dns:` section.
    `primary` overrides the config's (after `dnspair dns promote`)."""
    if cfg.dns is None:
        return None
    return "primary" if (primary or cfg.dns.primary) == me else "secondary"


def render(cfg: Config, me: str, pair_key: bytes, primary: str | None = None) -> Rendered:
    """Everything node `me` needs. `primary` overrides the config's choice (a promotion)."""
    if me not in cfg.nodes:
        raise ValueError(f"node {me!r} is not in the config (nodes: {', '.join(cfg.node_names)})")
    if cfg.dns is not None and primary is not None:
        from dataclasses import replace
        cfg = replace(cfg, dns=replace(cfg.dns, primary=primary))
    role = role_of(cfg, me)
    b = cfg.bind
    files = {
        f"{b.etc_dir}/named.conf.options": options(cfg, me, role),
        f"{b.etc_dir}/named.conf.local": local(cfg, role),
        f"{b.etc_dir}/dnspair.key": key_file(pair_key),
    }
    seed: dict[str, str] = {}
    catalog = None
    if cfg.dns is not None and role == "primary":
        seed = {zone_path(b, z.name): zone_file(cfg, z) for z in cfg.dns.zones}
        catalog = catalog_body(cfg)
    return Rendered(files, seed, catalog, shared_digest(cfg.dns))
