"""What a node keeps across restarts and reboots: its `Saved` state, and its JSON form.

Pure. The engine takes a `Saved` at `Start` and emits `Save` whenever it changes; the shell
writes it to `{state_dir}/{node}.state.json` (shell/state.py). Times are the engine's
monotonic seconds here; the JSON form holds wall-clock seconds, converted with the offset the
shell passes in (wall = monotonic + offset), so a restarted engine reads them on its own clock.
VIPs and nodes are stored by address and name, not index: a VIP list reordered or shortened
between two starts keeps what still applies and drops the rest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import wire
from .config import Config

VERSION = 1


@dataclass(frozen=True)
class Failure:
    what: str
    node: str
    first: float
    last: float
    count: int
    why: str


@dataclass(frozen=True)
class Cause:
    """Why a VIP is away from its preferred node, as this node saw it happen.
    code: dns_failed | peer_lost | stopped | no_carrier | standby | unheard | claim_failed."""
    code: str
    node: str              # the node the cause is about (the one that failed, stopped...)
    at: float
    detail: str | None = None


@dataclass(frozen=True)
class Saved:
    sticky: frozenset[int] = frozenset()     # held here after the peer failed: keep until cleanup
    away: frozenset[int] = frozenset()       # left here by a failure: no home claim until cleanup
    admin: wire.Admin | None = None          # pins (dnspair move) and the cleanup version
    failures: tuple[Failure, ...] = ()
    total_failures: int = 0
    events: int = 0                          # the last transition's number
    causes: tuple[tuple[int, Cause], ...] = ()
    changed: tuple[tuple[int, float], ...] = ()   # VIP -> when it last changed hands (seen here)
    maintenance: bool = False                # an upgrade is under way (`dnspair upgrade`)
    standby: bool = False                    # standby, kept only during maintenance


def to_json(s: Saved, cfg: Config, offset: float) -> dict[str, Any]:
    ip = [v.ip for v in cfg.vips]
    adm = s.admin
    return {
        "version": VERSION,
        "sticky": sorted(ip[i] for i in s.sticky),
        "away": sorted(ip[i] for i in s.away),
        "admin": None if adm is None else {
            "counter": adm.counter, "node": adm.node, "cleanup_mask": adm.cleanup_mask,
            "cleanup_all": adm.cleanup_all,
            "pins": {ip[i]: cfg.node_names[p - 1] for i, p in enumerate(adm.pins) if p}},
        "failures": [{"what": f.what, "node": f.node, "first": f.first + offset,
                      "last": f.last + offset, "count": f.count, "why": f.why} for f in s.failures],
        "total_failures": s.total_failures,
        "events": s.events,
        "causes": {ip[i]: {"code": c.code, "node": c.node, "at": c.at + offset, "detail": c.detail}
                   for i, c in s.causes},
        "changed": {ip[i]: t + offset for i, t in s.changed},
        "maintenance": {"standby": s.standby} if s.maintenance else None,
    }


def from_json(d: object, cfg: Config, offset: float) -> Saved:
    """The saved state for this config; ValueError (one line) if `d` is not one."""
    if not isinstance(d, dict) or d.get("version") != VERSION:
        raise ValueError("not a dnspair state file of version 1")
    index = {v.ip: i for i, v in enumerate(cfg.vips)}
    names = cfg.node_names

    def vips(key: str) -> frozenset[int]:
        items = d.get(key, [])
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise ValueError(f"{key}: not a list of addresses")
        return frozenset(index[x] for x in items if x in index)

    def num(v: object, what: str) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"{what}: not a number")
        return float(v)

    def count(v: object, what: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{what}: not a count")
        return v

    admin = None
    a = d.get("admin")
    if a is not None:
        if not isinstance(a, dict) or not isinstance(a.get("pins", {}), dict):
            raise ValueError("admin: not an object")
        pins = [0] * len(cfg.vips)
        for vip, node in a.get("pins", {}).items():
            if vip in index and node in names:
                pins[index[vip]] = names.index(node) + 1
        mask = count(a.get("cleanup_mask", 0), "admin.cleanup_mask") & ((1 << len(cfg.vips)) - 1)
        admin = wire.Admin(count(a.get("counter", 0), "admin.counter") & wire.U32,
                           count(a.get("node", 0), "admin.node") & 0xFF, tuple(pins), mask,
                           bool(a.get("cleanup_all", False)))
    failures = []
    items = d.get("failures", [])
    if not isinstance(items, list):
        raise ValueError("failures: not a list")
    for f in items:
        if not isinstance(f, dict) or not all(isinstance(f.get(k), str) for k in ("what", "node", "why")):
            raise ValueError("failures: an entry is not a failure")
        failures.append(Failure(f["what"], f["node"], num(f.get("first"), "failures.first") - offset,
                                num(f.get("last"), "failures.last") - offset,
                                count(f.get("count"), "failures.count"), f["why"]))
    causes = []
    cs = d.get("causes", {})
    if not isinstance(cs, dict):
        raise ValueError("causes: not an object")
    for vip, c in cs.items():
        if not isinstance(c, dict) or not all(isinstance(c.get(k), str) for k in ("code", "node")):
            raise ValueError("causes: an entry is not a cause")
        detail = c.get("detail")
        if vip in index:
            causes.append((index[vip], Cause(c["code"], c["node"], num(c.get("at"), "causes.at") - offset,
                                             detail if isinstance(detail, str) else None)))
    ch = d.get("changed", {})
    if not isinstance(ch, dict):
        raise ValueError("changed: not an object")
    changed = tuple(sorted((index[vip], num(t, "changed") - offset) for vip, t in ch.items() if vip in index))
    mt = d.get("maintenance")
    if mt is not None and not (isinstance(mt, dict) and isinstance(mt.get("standby", False), bool)):
        raise ValueError("maintenance: not an object")
    return Saved(maintenance=mt is not None, standby=bool(mt and mt.get("standby", False)),
                 sticky=vips("sticky"), away=vips("away"), admin=admin, failures=tuple(failures),
                 total_failures=count(d.get("total_failures", 0), "total_failures"),
                 events=count(d.get("events", 0), "events"), causes=tuple(sorted(causes)),
                 changed=changed)
