"""`dnspair dns promote`: this node becomes primary for the local zones, by an operator's word.

Safe by refusal: while the old primary's bind answers at all, promoting would make two
primaries (each taking changes the other never sees), so nothing is done unless `force`. While
it answers with a newer serial for any zone, this node's copy is behind and promoting would lose
changes: refused even with `force` (the transfer catches it up by itself). Otherwise this node
writes what its bind serves (transferred from itself) as the primary's zone files, notes
the new primary in its state directory and reconfigures bind (no restart).
"""
from __future__ import annotations

import os

from ..core import bindconf
from ..core.config import CATALOG_ZONE, Config
from ..core.drift import serial_newer
from . import bindfiles, state, zones


def promote(cfg: Config, me: str, pair_key: bytes, force: bool = False) -> str:
    if cfg.dns is None:
        raise zones.ZoneError("no `dns:` section in the config: there is nothing to promote")
    old = bindfiles.primary(cfg)
    if old == me:
        return f"{me} is already primary for the local zones"
    assert old is not None
    addr = cfg.nodes[old].addresses[0]
    names = [z.name for z in cfg.dns.zones]
    mine = {z: zones.soa_serial("127.0.0.1", z) for z in names}
    theirs = {z: zones.soa_serial(addr, z) for z in names}
    newer = []
    for z in names:
        t, m = theirs[z], mine[z]
        if isinstance(t, int) and (not isinstance(m, int) or serial_newer(t, m)):
            newer.append(f"{z} {t} > {m}")
    if newer:
        raise zones.ZoneError(f"refused: the primary {old} ({addr}) answers and holds newer serials "
                              f"({', '.join(newer)}); it stays primary")
    answering = [z for z in names if theirs[z] is not None]
    if answering and not force:
        raise zones.ZoneError(f"refused: the primary {old} ({addr}) still answers ({', '.join(answering)}): "
                              f"promoting now would make two primaries; stop its bind or cut it off "
                              f"first, or use --force")
    missing = [z for z in names if not isinstance(mine[z], int)]
    if missing:
        raise zones.ZoneError(f"refused: this node's bind does not serve {', '.join(missing)} "
                              f"({', '.join(str(mine[z]) for z in missing)}); nothing to promote from")
    # What this bind serves becomes the primary's files: written whole, journals dropped.
    b = cfg.bind
    for z in [*names, CATALOG_ZONE]:
        path = bindconf.catalog_path(b) if z == CATALOG_ZONE else bindconf.zone_path(b, z)
        text = zones.transfer(cfg, pair_key, z).to_text(relativize=False)
        state.write_atomic(path, text)
        os.chmod(path, 0o664)
        try:
            os.unlink(path + ".jnl")
        except FileNotFoundError:
            pass
    os.makedirs(cfg.state_dir, mode=0o750, exist_ok=True)
    state.write_atomic(os.path.join(cfg.state_dir, bindfiles.OVERRIDE), me + "\n")
    bindfiles.apply(cfg, me, pair_key)
    bindfiles.rndc(cfg, "reconfig")
    reach = "still answers: forced, stop its bind" if answering else "does not answer"
    return (f"{me} is now primary for {', '.join(names)} ({old} {reach}); set dns.primary: {me} in "
            f"dnspair.yaml on both nodes and run `dnspair reload` on each once {old} is back")
