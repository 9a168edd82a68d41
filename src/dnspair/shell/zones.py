"""The local zones over DNS itself: RFC 2136 updates signed with the pair's TSIG key, sent to
the primary; listings and SOA serials from bind. One update message per command: bind applies
it whole or not at all, so a refused change leaves nothing half-done.
"""
from __future__ import annotations

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import dns.zone

from ..core import bindconf
from ..core.config import Config, check_record
from . import bindfiles
from .dnsprobe import serial_of

TIMEOUT = 2.0


class ZoneError(RuntimeError):
    """One line for the operator: what was refused and why; nothing was changed."""


def keyring(pair_key: bytes) -> dict:
    return {dns.name.from_text(bindconf.KEY_NAME): dns.tsig.Key(
        bindconf.KEY_NAME, bindconf.tsig_secret(pair_key), dns.tsig.HMAC_SHA256)}


def _dns(cfg: Config):
    if cfg.dns is None:
        raise ZoneError("no `dns:` section in the config: the pair serves no local zones")
    return cfg.dns


def _locate(cfg: Config, name: str) -> tuple[str, dns.name.Name, dns.name.Name]:
    """(zone, zone origin, absolute owner name) for a record name given in full."""
    d = _dns(cfg)
    try:
        owner = dns.name.from_text(name)
    except dns.exception.DNSException as e:
        raise ZoneError(f"bad name {name!r} ({e})") from None
    zone = d.zone_of(owner.to_text())
    if zone is None:
        raise ZoneError(f"{owner.to_text()} is in no local zone (zones: "
                        f"{', '.join(z.name for z in d.zones) or 'none'})")
    return zone.name, dns.name.from_text(zone.name), owner


def primary_address(cfg: Config) -> tuple[str, str]:
    p = bindfiles.primary(cfg)
    assert p is not None
    return p, cfg.nodes[p].addresses[0]


def _send(cfg: Config, pair_key: bytes, upd: dns.update.UpdateMessage, what: str,
          why: dict | None = None) -> None:
    pname, addr = primary_address(cfg)
    upd.use_tsig(keyring(pair_key), keyname=bindconf.KEY_NAME, algorithm=dns.tsig.HMAC_SHA256)
    try:
        reply = dns.query.tcp(upd, addr, timeout=TIMEOUT)
    except (OSError, dns.exception.Timeout, EOFError):
        raise ZoneError(f"changes wait for the primary {pname} ({addr} does not answer); "
                        f"{what} was not made") from None
    except dns.exception.DNSException as e:
        raise ZoneError(f"{pname} ({addr}): {e}; {what} was not made") from None
    rc = reply.rcode()
    if rc != dns.rcode.NOERROR:
        why = {dns.rcode.NXRRSET: "no such record", dns.rcode.YXDOMAIN: "the name already has a CNAME "
               "or other records (a CNAME stands alone)", dns.rcode.YXRRSET: "a conflicting record exists",
               dns.rcode.NOTAUTH: f"{pname} is not primary for the zone",
               dns.rcode.REFUSED: f"{pname} refused the signed update (keys differ?)", **(why or {})}
        raise ZoneError(f"{what} refused by {pname}: {dns.rcode.to_text(rc)}"
                        + (f" ({why[rc]})" if rc in why else ""))


def add(cfg: Config, pair_key: bytes, name: str, rtype: str, data: str, ttl: int | None) -> str:
    zone, origin, owner = _locate(cfg, name)
    rtype = rtype.upper()
    problem = check_record(owner.to_text(), rtype, data, origin)
    if problem:
        raise ZoneError(problem)
    if ttl is not None and not 0 <= ttl <= 604800:
        raise ZoneError(f"TTL must be between 0 and 604800 s, got {ttl}")
    upd = dns.update.UpdateMessage(zone)
    # bind drops an add that clashes with a CNAME without a word: make the clash an error.
    if rtype == "CNAME":
        upd.absent(owner)
    else:
        upd.absent(owner, "CNAME")
    upd.add(owner, _dns(cfg).ttl if ttl is None else ttl, rtype, data)
    what = f"{owner.to_text()} {rtype} {data}"
    _send(cfg, pair_key, upd, what, {
        dns.rcode.YXRRSET: "the name has a CNAME, which stands alone",
        dns.rcode.YXDOMAIN: "the name has records already, and a CNAME stands alone"})
    return f"added {what} to {zone} on {primary_address(cfg)[0]}"


def ensure(cfg: Config, pair_key: bytes, zone: str) -> None:
    """The config's records of `zone`, added in one update (an add of a record bind already has
    changes nothing, and no serial): `dnspair reload` on the primary, for zones bind owns."""
    d = _dns(cfg)
    z = next(x for x in d.zones if x.name == zone)
    if not z.records:
        return
    origin = dns.name.from_text(zone)
    upd = dns.update.UpdateMessage(zone)
    for r in z.records:
        owner = origin if r.name == "@" else dns.name.from_text(r.name, origin)
        upd.add(owner, d.ttl if r.ttl is None else r.ttl, r.type, r.data)
    _send(cfg, pair_key, upd, f"the records of {zone} in the config")


def delete(cfg: Config, pair_key: bytes, name: str, rtype: str | None, data: str | None) -> str:
    zone, origin, owner = _locate(cfg, name)
    if owner == origin and rtype in (None, "SOA", "NS"):
        raise ZoneError(f"the apex of {zone} keeps its SOA and NS records; name a type and data")
    upd = dns.update.UpdateMessage(zone)
    if rtype is None:
        upd.present(owner)
        upd.delete(owner)
        what = f"delete of {owner.to_text()}"
    else:
        rtype = rtype.upper()
        if data is not None:
            problem = check_record(owner.to_text(), rtype, data, origin)
            if problem:
                raise ZoneError(problem)
            upd.present(owner, dns.rdataset.from_text("IN", rtype, 0, data))
            upd.delete(owner, rtype, data)
        else:
            upd.present(owner, rtype)
            upd.delete(owner, rtype)
        what = f"delete of {owner.to_text()} {rtype}" + (f" {data}" if data else "")
    _send(cfg, pair_key, upd, what)
    return f"deleted {what[len('delete of '):]} from {zone} on {primary_address(cfg)[0]}"


def transfer(cfg: Config, pair_key: bytes, zone: str, server: str = "127.0.0.1") -> dns.zone.Zone:
    """The zone as `server`'s bind has it (AXFR, signed)."""
    try:
        return dns.zone.from_xfr(dns.query.xfr(server, zone, keyring=keyring(pair_key),
                                               keyname=bindconf.KEY_NAME, timeout=TIMEOUT,
                                               lifetime=10 * TIMEOUT, relativize=False),
                                 relativize=False)
    except (OSError, EOFError, dns.exception.DNSException) as e:
        raise ZoneError(f"{zone}: no transfer from {server} ({str(e) or type(e).__name__})") from None


def listing(cfg: Config, pair_key: bytes, zone: str | None) -> list[str]:
    d = _dns(cfg)
    names = [z.name for z in d.zones]
    if zone is not None:
        zone = zone.lower().rstrip(".")
        if zone not in names:
            raise ZoneError(f"{zone} is not a local zone (zones: {', '.join(names) or 'none'})")
        names = [zone]
    out = []
    for name in names:
        z = transfer(cfg, pair_key, name)
        soa = z.get_rdataset("@", "SOA")
        out.append(f"; zone {name}, serial {soa[0].serial if soa else '?'}")
        for owner, ttl, rd in z.iterate_rdatas():
            if rd.rdtype != dns.rdatatype.SOA:
                out.append(f"{owner.to_text()} {ttl} {dns.rdatatype.to_text(rd.rdtype)} {rd.to_text()}")
    return out


def soa_serial(server: str, zone: str, timeout: float = 1.0) -> int | str | None:
    """`zone`'s SOA serial from `server`; a string (the rcode, or 'not authoritative') when bind
    answers without the zone; None when nothing answers."""
    q = dns.message.make_query(zone, "SOA")
    q.flags &= ~dns.flags.RD
    try:
        r = dns.query.udp(q, server, timeout=timeout)
    except (OSError, dns.exception.DNSException, EOFError):
        return None
    return serial_of(r, zone)
