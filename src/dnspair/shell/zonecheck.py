"""What both binds serve, asked over DNS: for the engine's `CheckZones`.

Per local zone (and the catalog zone) the SOA serial from this node's bind (127.0.0.1) and from
the peer's (its node address), and the config digest each bind carries in its `version`
(core/bindconf.py). A zone file that changed since it was last looked at is run through
bind's own `named-checkzone` (with its journal), so a file that will not load is reported
with bind's own error line. Only queries: nothing here changes bind.
"""
from __future__ import annotations

import asyncio
import logging
import os

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rdataclass

from ..core import bindconf
from ..core import events as E
from ..core.config import CATALOG_ZONE, Config
from . import bindfiles
from .dnsprobe import serial_of  # not from .zones: that is the records CLI's (dns.update, tsig)

log = logging.getLogger("dnspair")
TIMEOUT = 1.0


async def _soa(server: str, zone: str) -> int | str | None:
    q = dns.message.make_query(zone, "SOA")
    q.flags &= ~dns.flags.RD
    try:
        return serial_of(await dns.asyncquery.udp(q, server, timeout=TIMEOUT), zone)
    except (OSError, EOFError, dns.exception.DNSException):
        return None


async def _version(server: str) -> str | None:
    q = dns.message.make_query("version.bind", "TXT", rdclass=dns.rdataclass.CH)
    try:
        r = await dns.asyncquery.udp(q, server, timeout=TIMEOUT)
    except (OSError, EOFError, dns.exception.DNSException):
        return None
    for rrset in r.answer:
        for rd in rrset:
            text = b"".join(rd.strings).decode(errors="replace")
            return text.split()[-1] if text.startswith("dnspair ") else f"not dnspair's ({text[:40]})"
    return "no version"


def zone_file(cfg: Config, role: str, zone: str) -> str:
    b = cfg.bind
    if zone == CATALOG_ZONE:
        return bindconf.catalog_path(b)
    if role == "primary":
        return bindconf.zone_path(b, zone)
    return f"{b.zone_dir}/__catz___default_{CATALOG_ZONE}_{zone}.db"   # bind 9.18's own name


class Checker:
    """`path`: the config file, read again when it changes: `dnspair reload` applies a new
    `dns:` section to bind without a daemon restart, and the comparison follows it."""

    def __init__(self, cfg: Config, me: str, path: str | None = None):
        self.cfg = cfg
        self.me = me
        self.path = path
        self._path_mtime = _mtime(path) if path else 0.0
        self.peer_addr = cfg.nodes[cfg.peer_of(me)].addresses[0]
        self._seen: dict[str, tuple[float, float]] = {}   # file -> (mtime, journal mtime)
        self._errors: dict[str, str] = {}                  # zone -> bind's line

    async def _checkzone(self, zone: str, path: str) -> None:
        try:
            stamp = (os.stat(path).st_mtime, _mtime(path + ".jnl"))
        except OSError:
            self._seen.pop(path, None)
            self._errors.pop(zone, None)   # not there (yet): the serials tell
            return
        if self._seen.get(path) == stamp:
            return
        self._seen[path] = stamp
        try:
            p = await asyncio.create_subprocess_exec(
                "named-checkzone", "-j", zone, path, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=dict(os.environ, PATH=os.environ.get("PATH", "") + ":/usr/bin:/usr/sbin"))
            out, _ = await asyncio.wait_for(p.communicate(), 30)
        except (OSError, TimeoutError) as e:
            log.warning("named-checkzone %s: %s", zone, e)
            return
        if p.returncode == 0:
            self._errors.pop(zone, None)
        else:
            lines = out.decode(errors="replace").strip().splitlines()
            self._errors[zone] = lines[0] if lines else f"named-checkzone exit {p.returncode}"

    def _reread(self) -> None:
        if not self.path or _mtime(self.path) == self._path_mtime:
            return
        self._path_mtime = _mtime(self.path)
        from ..core.config import ConfigError
        from .files import load_config
        try:
            cfg = load_config(self.path)
        except ConfigError as e:
            log.warning("zone check: %s unreadable, comparing the zones it had: %s", self.path,
                        e.problems[0])
            return
        if cfg.dns is not None and self.me in cfg.nodes:
            self.cfg = cfg

    async def check(self) -> E.ZoneSerials:
        self._reread()
        dns_ = self.cfg.dns
        assert dns_ is not None
        primary = bindfiles.primary(self.cfg) or dns_.primary
        role = "primary" if primary == self.me else "secondary"
        names = [z.name for z in dns_.zones] + [CATALOG_ZONE]
        asks = [_soa(s, z) for z in names for s in ("127.0.0.1", self.peer_addr)]
        answers = await asyncio.gather(*asks, _version("127.0.0.1"), _version(self.peer_addr))
        serials = answers[:-2]
        for z in names:
            await self._checkzone(z, zone_file(self.cfg, role, z))
        for z in [z for z in self._errors if z not in names]:
            del self._errors[z]
        zones = tuple((z, serials[2 * i], serials[2 * i + 1]) for i, z in enumerate(names))
        errors = dict(self._errors)
        if role == "primary":
            for z, mine, _peer in zones:
                if isinstance(mine, str) and z not in errors:
                    errors[z] = f"bind answers {mine} for its own zone (not loaded)"
        from dataclasses import replace
        rendered = bindconf.shared_digest(replace(dns_, primary=primary))
        return E.ZoneSerials(zones=zones, digests=(answers[-2], answers[-1]), rendered=rendered,
                             primary=primary, errors=tuple(sorted(errors.items())))


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0
