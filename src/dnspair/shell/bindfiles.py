"""Writing bind's files for this node and asking rndc to take them (reload/reconfig only).

The text comes from core/bindconf.py. A file is rewritten only when its text changed, a
primary's zone file only where none exists (bind owns it and its journal from then on), the
catalog zone whenever its member list changed, with the serial after the one bind has.
"""
from __future__ import annotations

import grp
import os
import subprocess
from dataclasses import dataclass, field

from ..core import bindconf
from ..core.config import CATALOG_ZONE, Config

# rndc is used for these and nothing else: bind's lifecycle is systemd's.
RNDC_ALLOWED = ("reload", "reconfig")
OVERRIDE = "dns-primary"   # in state_dir: the node `dnspair dns promote` made primary


@dataclass
class Applied:
    written: list[str] = field(default_factory=list)
    seeded: list[str] = field(default_factory=list)
    catalog_serial: int | None = None   # set when the catalog zone was rewritten
    digest: str = ""


def primary_override(cfg: Config) -> str | None:
    try:
        with open(os.path.join(cfg.state_dir, OVERRIDE)) as f:
            name = f.read().strip()
    except OSError:
        return None
    return name if name in cfg.nodes else None


def primary(cfg: Config) -> str | None:
    """The node that is primary for the local zones here (the override, else the config's)."""
    if cfg.dns is None:
        return None
    return primary_override(cfg) or cfg.dns.primary


def _bind_gid() -> int | None:
    try:
        return grp.getgrnam("bind").gr_gid
    except KeyError:
        return None


def _write(path: str, text: str, mode: int, gid: int | None) -> bool:
    try:
        with open(path) as f:
            if f.read() == text:
                return False
    except OSError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.dnspair-tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        if gid is not None and os.geteuid() == 0:
            os.fchown(fd, 0, gid)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return True


def catalog_state(path: str) -> tuple[int, set[str]] | None:
    """(SOA serial, member zone names) of a catalog zone file, None if there is none."""
    import dns.exception
    import dns.rdatatype
    import dns.zone
    try:
        z = dns.zone.from_file(path, origin=CATALOG_ZONE, relativize=False, check_origin=False)
    except (OSError, dns.exception.DNSException):
        return None
    soa = z.get_rdataset("@", "SOA")
    serial = soa[0].serial if soa else 0
    members = {str(rd.target).rstrip(".") for _, rds in z.iterate_rdatasets(dns.rdatatype.PTR)
               for rd in rds}
    return serial, members


def apply(cfg: Config, me: str, pair_key: bytes, root: str = "") -> Applied:
    """Write this node's bind files (under `root`, for an image tree). Returns what changed."""
    r = bindconf.render(cfg, me, pair_key, primary(cfg) if not root else None)
    gid = _bind_gid() if not root else None
    out = Applied(digest=r.digest)
    for path, text in r.files.items():
        secret = path.endswith("/dnspair.key")
        if _write(root + path, text, 0o640 if secret else 0o644, gid):
            out.written.append(path)
    zdir = root + cfg.bind.zone_dir
    os.makedirs(zdir, mode=0o775, exist_ok=True)
    if gid is not None and os.geteuid() == 0:
        os.chown(zdir, 0, gid)
        os.chmod(zdir, 0o775)   # bind writes journals and transferred zones here
    for path, text in r.seed.items():
        if not os.path.exists(root + path):
            _write(root + path, text, 0o664, gid)
            out.seeded.append(path)
    if r.catalog is not None and cfg.dns is not None:
        path = root + bindconf.catalog_path(cfg.bind)
        now = catalog_state(path)
        want = {z.name for z in cfg.dns.zones}
        if now is None or now[1] != want:
            serial = (now[0] + 1) % (1 << 32) if now else 1
            _write(path, bindconf.catalog_file(cfg, serial), 0o664, gid)
            out.catalog_serial = serial
    return out


class RndcError(RuntimeError):
    pass


def rndc(cfg: Config, command: str, *args: str, timeout: float = 30.0) -> str:
    """`rndc reload|reconfig [ARGS]`; RndcError with rndc's own line when it fails."""
    if command not in RNDC_ALLOWED:
        raise ValueError(f"rndc {command}: dnspair asks rndc only to {' or '.join(RNDC_ALLOWED)}")
    b = cfg.bind
    cmd = ["rndc", "-s", "127.0.0.1", "-p", str(b.rndc_port)]
    if b.rndc_key:
        cmd += ["-k", b.rndc_key]
    env = dict(os.environ, PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    try:
        p = subprocess.run([*cmd, command, *args], capture_output=True, text=True, timeout=timeout, env=env)
    except FileNotFoundError:
        raise RndcError("rndc not found (apt-get install bind9-utils)") from None
    except subprocess.TimeoutExpired:
        raise RndcError(f"rndc {command}: no answer from bind within {timeout:g} s") from None
    text = (p.stdout + p.stderr).strip()
    if p.returncode != 0:
        raise RndcError(f"rndc {command}: {text.splitlines()[-1] if text else f'exit {p.returncode}'}")
    return text
