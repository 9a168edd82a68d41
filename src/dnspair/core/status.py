"""The one status model every surface renders (CLI, JSON, plugin, HTTP, LEDs).

Pure: built from the engine and the two clocks the shell passes in. The layout is the
documented `dnspair status --json` (docs/status.md); add keys, never rename them.
Secrets never enter it: the key is not part of the engine state read here.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from .. import __version__
from .engine import Engine, _bit
from .saved import Cause
from .verdict import add_findings

SCHEMA = 1


def _iso(wall: float | None) -> str | None:
    if wall is None:
        return None
    return dt.datetime.fromtimestamp(wall, dt.UTC).isoformat(timespec="milliseconds")


def _clock(wall: float | None, wall_now: float) -> str:
    """A time of day for a phrase (UTC); with the date if it is not today's."""
    if wall is None:
        return "?"
    t = dt.datetime.fromtimestamp(wall, dt.UTC)
    today = dt.datetime.fromtimestamp(wall_now, dt.UTC).date()
    return t.strftime("%H:%M:%S" if t.date() == today else "%Y-%m-%d %H:%M:%S")


CAUSES = {"dns_failed": "{node} DNS failed {at}", "peer_lost": "{node} lost {at}",
          "stopped": "{node} stopped {at}", "no_carrier": "{node} lost carrier {at}",
          "standby": "{node} in standby since {at}", "unheard": "{node} not heard at start {at}",
          "claim_failed": "{node} could not add it {at}"}


def why(e: Engine, i: int, owner: str | None, c: Cause, at: float | None, wall_now: float,
        sticky: bool) -> str:
    """The one phrase that says why VIP i is where it is (from the engine's `explain`)."""
    if c.code == "unowned":
        return "nowhere: " + (c.detail or "no node can hold it")
    prefers = e.cfg.vips[i].prefers
    if c.code == "preferred":
        other = e.peer_name if owner == e.me else e.me
        return f"on {owner}: preferred ({prefers.get(owner or '', 0)} vs {prefers.get(other, 0)})"
    if c.code == "moved":
        return f"on {owner}: moved by operator (until `dnspair cleanup {e.cfg.vips[i].ip}`)"
    home = e.homes[i]
    text = CAUSES.get(c.code, "taken over from {node} (the cause was not seen here)").format(
        node=c.node, at=_clock(at, wall_now))
    if c.detail:
        text += f" ({c.detail})"
    if sticky and e.cfg.failback == "manual":
        text += "; stays until `dnspair cleanup` (failback manual)"
    elif sticky:
        text += f"; returns once {home} is healthy for {e.cfg.hold_down:g} s (failback auto)"
    else:
        text += f"; returns when {home} can hold it"
    return f"on {owner}: {text}"


def build(e: Engine, now: float, wall_now: float, pid: int | None = None,
          history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """`now` is monotonic (the engine's clock), `wall_now` the matching wall time; `history`
    the last transitions (the shell keeps them, with their wall times)."""
    def wall(t: float | None) -> float | None:
        return None if t is None else wall_now - (now - t)

    alive = e.peer_alive(now)
    m = e.peer.msg
    hb = e.cfg.heartbeat
    me: dict[str, Any] = {
        "name": e.me, "self": True, "online": True, "last_heard_s": 0.0, "standby": e.standby,
        "ready": e.ready, "maintenance": e.maintenance,
        "dns": {"ok": e.dns_ok if e.dns_seen else None,
                "latency_ms": None if e.dns_latency is None else round(e.dns_latency * 1000, 3),
                "consecutive_failures": e.consecutive, "failures": e.total_failures,
                "failures_since_start": e.failures_counted[e.me], "last_error": e.dns_error},
        "config_digest": e.cfg.digest,
        "addresses": list(e.cfg.nodes[e.me].addresses),
    }
    peer_links: list[dict[str, Any]] = []
    for k, addr in enumerate(e.cfg.nodes[e.peer_name].addresses):
        t = e.peer.links_heard.get(k)
        peer_links.append({"address": addr, "up": t is not None and now - t <= hb.dead_time,
                           "last_heard_s": None if t is None else round(now - t, 3)})
    peer: dict[str, Any] = {
        "name": e.peer_name, "self": False, "online": alive,
        "last_heard_s": None if e.peer.last_heard is None else round(now - e.peer.last_heard, 3),
        "standby": bool(m and m.standby), "ready": bool(m and m.ready),
        "maintenance": bool(alive and m and m.maintenance),
        "dns": {"ok": (m.dns_ok if m else None),
                "latency_ms": round(m.dns_latency_us / 1000, 3) if m else None,
                "consecutive_failures": m.consecutive_failures if m else 0,
                "failures": m.total_failures if m else 0,
                "failures_since_start": e.failures_counted[e.peer_name], "last_error": None},
        "config_digest": m.digest.hex().ljust(16, "0")[:16] if m else None,
        "addresses": list(e.cfg.nodes[e.peer_name].addresses),
        "links": peer_links,
    }
    if not alive:
        peer["dns"]["ok"] = None
    vips: list[dict[str, Any]] = []
    for i, v in enumerate(e.cfg.vips):
        holders = ([e.me] if i in e.held else []) + ([e.peer_name] if alive and m and _bit(m.held, i) else [])
        owner = None
        if e.me in holders and i not in e.yielding:
            owner = e.me
        elif e.peer_name in holders and not (m and _bit(m.yielding, i)):
            owner = e.peer_name
        elif holders:
            owner = holders[0]
        pin = e.admin.pins[i] if i < len(e.admin.pins) else 0
        sticky = (i in e.sticky and i in e.held
                  or bool(alive and m and _bit(m.sticky, i) and e.homes[i] != e.peer_name)
                  or (i in e.away and owner == e.peer_name))
        cause = e.explain(now, i, owner)
        at = wall(cause.at)
        vips.append({
            "address": v.address, "interface": v.interface, "owner": owner, "holders": holders,
            "preferred": e.homes[i], "held_here": i in e.held,
            "moved": owner is not None and owner != e.homes[i],
            "sticky": sticky,
            "pinned_to": e.names[pin - 1] if pin else None,
            "why": why(e, i, owner, cause, at, wall_now, sticky),
            "reason": {"code": cause.code, "node": cause.node, "detail": cause.detail,
                       "since": _iso(at) if cause.code not in ("preferred", "moved", "unowned") else None},
            "last_change": _iso(wall(e.changed_at.get(i))),
        })
    failed = [{"what": f.what, "node": f.node, "count": f.count, "why": f.why,
               "first": _iso(wall(f.first)), "last": _iso(wall(f.last))}
              for f in sorted(e.failures.values(), key=lambda f: f.last)]
    if m and m.total_failures:
        failed.append({"what": "dns_check", "node": e.peer_name, "count": m.total_failures,
                       "why": "reported by the peer", "first": None, "last": None})
    links_up = sum(1 for link in peer_links if link["up"])
    dns = _dns(e, now)
    return add_findings({
        "schema": SCHEMA,
        "cluster": e.cfg.cluster,
        "node": e.me,
        "daemon": {"version": __version__, "pid": pid, "started": _iso(wall(e.started)),
                   "uptime_s": round(now - e.started, 3), "incarnation": f"{e.incarnation:016x}",
                   "stalls": e.stalls},
        "failback": e.cfg.failback,
        "nodes": [me, peer] if e.me < e.peer_name else [peer, me],
        "vips": vips,
        "failed_actions": failed,
        "heartbeat": {"rtt_ms": None if e.rtt is None else round(e.rtt * 1000, 3),
                      "last_heard_s": peer["last_heard_s"], "links_up": links_up,
                      "links_total": len(peer_links), "dropped": dict(sorted(e.drops.items())),
                      "interval_s": hb.interval, "dead_time_s": hb.dead_time},
        "failovers": {"count": e.failovers, "last": _iso(wall(e.last_failover)),
                      "last_age_s": None if e.last_failover is None else round(now - e.last_failover, 3)},
        "config_match": None if m is None else e.peer_digest_ok,
        "witness": None if e.cfg.witness is None else {"address": e.cfg.witness.address,
                                                        "ok": e.witness_ok},
        "transitions": {"last": e.events,
                        "counts": [{"vip": vip or None, "reason": code, "count": n}
                                   for (vip, code), n in sorted(e.transition_counts.items())]},
        "history": list(history or []),
        "dns": dns,
    })


def _dns(e: Engine, now: float) -> dict[str, Any] | None:
    """The local zones as both binds serve them (core/drift.py); None without `dns:`."""
    d, cfg = e.drift, e.cfg.dns
    if d is None or cfg is None:
        return None
    seen = e.zones_seen
    drifted, silent = set(d.drifted(now)), set(d.silent(now))

    def item(what: str) -> tuple[Any, Any, float | None, bool]:
        it = d.items.get(what)
        if it is None:
            return None, None, None, False
        age = it.differing_for(now)
        return it.mine, it.peer, None if age is None else round(age, 3), what in drifted

    def quiet(what: str) -> float | None:
        it = d.items.get(what)
        age = None if it is None else it.silent_for(now)
        return None if age is None else round(age, 3)

    zones = []
    for zone, _, _ in (seen.zones if seen else [(z.name, None, None) for z in cfg.zones]):
        mine, theirs, age, bad = item(zone)
        zones.append({"zone": zone, "serials": {e.me: mine, e.peer_name: theirs},
                      "differing_s": age, "drifted": bad, "peer_silent_s": quiet(zone),
                      "peer_silent": zone in silent, "load_error": e.zone_errors.get(zone)})
    mine, theirs, age, bad = item("config")
    rendered, running, rage, rbad = item("reload")
    return {
        "primary": (seen.primary if seen else None) or cfg.primary,
        "drift_after_s": cfg.drift_after, "drift_severity": cfg.drift_severity,
        "checked_s": None if e.zones_seen_at is None else round(now - e.zones_seen_at, 3),
        "zones": zones,
        "config": {"digests": {e.me: mine, e.peer_name: theirs}, "differing_s": age, "drifted": bad,
                   "rendered": rendered, "reload_needed": rbad, "reload_differing_s": rage},
    }
