"""`dnspair status` as text, laid out like `pcs status` (from the one status model)."""
from __future__ import annotations

from ..core import verdict


def _age(s):
    if s is None:
        return "never"
    if s < 1:
        return f"{s * 1000:.0f} ms ago"
    if s < 120:
        return f"{s:.1f} s ago"
    return f"{s / 60:.0f} min ago"


def _uptime(s):
    s = int(s)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d " if d else "") + f"{h}h{m:02d}m{s:02d}s"


def _for(s):
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min"


def warnings(st: dict) -> list[str]:
    """What an operator should look at: the findings' texts (core/verdict.py)."""
    return [f.text for f in verdict.read(st)]


def transition(h: dict) -> str:
    """One history entry on one line."""
    what = h.get("kind", "?")
    if h.get("vip"):
        what += f" {h['vip']}"
        if h.get("old_owner") or h.get("new_owner"):
            what += f" {h.get('old_owner') or '-'} -> {h.get('new_owner') or '-'}"
    took = f", {h['duration_s'] * 1000:.0f} ms" if isinstance(h.get("duration_s"), int | float) else ""
    when = str(h.get("time", "?")).replace("T", " ")[:23]
    return f"#{h.get('number', '?')} {when} {h.get('node', '')}: {what} ({h.get('reason', '')}{took})"


def history(items: list) -> str:
    return "\n".join(transition(h) for h in items)


def text(st: dict) -> str:
    me = next(n for n in st["nodes"] if n["self"])
    peer = next(n for n in st["nodes"] if not n["self"])
    d, hb = st["daemon"], st["heartbeat"]
    rtt = f", heartbeat rtt {hb['rtt_ms']:.2f} ms" if hb["rtt_ms"] is not None else ""
    lines = [
        f"Cluster name: {st['cluster']}",
        "Cluster Summary:",
        f"  * This node: {me['name']} (dnspair {d['version']}, pid {d['pid']}, up {_uptime(d['uptime_s'])})",
        f"  * Peer: {peer['name']} {'online' if peer['online'] else 'OFFLINE'}, last heard "
        f"{_age(peer['last_heard_s'])}{rtt}, links {hb['links_up']}/{hb['links_total']}",
        f"  * Failback: {st['failback']}; failovers taken here: {st['failovers']['count']}",
        "",
        "Node List:",
    ]
    online = [n["name"] for n in st["nodes"] if n["online"] and not n["standby"]]
    standby = [n["name"] for n in st["nodes"] if n["online"] and n["standby"]]
    offline = [n["name"] for n in st["nodes"] if not n["online"]]
    lines.append(f"  * Online: [ {' '.join(online)} ]")
    if standby:
        lines.append(f"  * Standby: [ {' '.join(standby)} ]")
    if offline:
        lines.append(f"  * OFFLINE: [ {' '.join(offline)} ]")
    lines += ["", "DNS Health:"]
    for n in st["nodes"]:
        dns = n["dns"]
        state = {True: "ok", False: "FAILED", None: "unknown"}[dns["ok"]]
        extra = f" ({dns['latency_ms']:.1f} ms)" if dns["ok"] and dns["latency_ms"] is not None else ""
        if dns["last_error"]:
            extra += f" ({dns['last_error']})"
        lines.append(f"  * {n['name']}: {state}{extra}, failures {dns['failures']}")
    lines += ["", "Virtual IPs:"]
    for v in st["vips"]:
        where = f"Started {v['owner']}" if v["owner"] else "Stopped"
        notes = [f"prefers {v['preferred']}"]
        if v["pinned_to"]:
            notes.append(f"moved by operator to {v['pinned_to']}")
        elif v["moved"] and v["sticky"]:
            notes.append("stays until `dnspair cleanup`" if st["failback"] == "manual"
                         else "fails back after hold-down")
        if len(v["holders"]) > 1:
            notes.append(f"handing over ({' and '.join(v['holders'])} hold it)")
        lines.append(f"  * {v['address']} ({v['interface']}): {where}  ({'; '.join(notes)})")
        if v.get("why"):
            lines.append(f"      why: {v['why']}")
    dns = st.get("dns")
    if dns:
        lines += ["", f"Local Zones (primary {dns['primary']}):"]
        for z in dns["zones"]:
            serials = ", ".join(f"{n} {'-' if v is None else v}" for n, v in sorted(z["serials"].items()))
            note = ""
            if z["differing_s"] is not None:
                note = f", differing for {_for(z['differing_s'])}" + (" (DRIFT)" if z["drifted"] else "")
            if z.get("peer_silent_s") is not None:
                note += f", no answer from the peer for {_for(z['peer_silent_s'])}"
            if z.get("load_error"):
                note += f", does not load here: {z['load_error']}"
            lines.append(f"  * zone {z['zone']}: {serials}{note}")
        c = dns["config"]
        digests = ", ".join(f"{n} {'-' if v is None else v}" for n, v in sorted(c["digests"].items()))
        lines.append(f"  * bind config: {digests}" + (" (differs)" if c["drifted"] else "")
                     + (" (`dnspair reload` needed)" if c["reload_needed"] else ""))
    if st["failed_actions"]:
        lines += ["", "Failed Actions:"]
        for f in st["failed_actions"]:
            when = f", last={f['last']}" if f["last"] else ""
            lines.append(f"  * {f['what']} on {f['node']} '{f['why']}': count={f['count']}{when}")
    dropped = hb["dropped"]
    if dropped or st.get("control_rejected"):
        parts = [f"{k}={v}" for k, v in dropped.items()]
        if st.get("control_rejected"):
            parts.append(f"control_rejected={st['control_rejected']}")
        lines += ["", "Rejected input:", "  * " + ", ".join(parts)]
    if st.get("history"):
        lines += ["", "Recent transitions (`dnspair history` for more):"]
        lines += [f"  * {transition(h)}" for h in st["history"]]
    n = st.get("notify") or {}
    if n.get("failed") or n.get("timed_out") or n.get("dropped"):
        lines += ["", f"Notify: {n.get('failed', 0)} failed, {n.get('timed_out', 0)} timed out, "
                      f"{n.get('dropped', 0)} dropped (see the log)"]
    found = verdict.read(st)
    if found:
        lines += ["", "Warnings:"] + [f"  * {'CRITICAL: ' if f.severity == 'critical' else ''}{f.text}"
                                      for f in found]
    return "\n".join(lines)
