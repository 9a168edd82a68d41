"""What is wrong with the pair, decided once from the status document.

Pure: a function of the dict `status.build` makes (docs/status.md). Every surface (the CLI's
warnings, `check_dnspair`, `/health`, the LEDs) maps these findings; none re-derives them.
Severities are the Nagios meaning: critical when clients lose a nameserver, warning when the
pair still serves but has lost redundancy or needs an operator.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

Severity = Literal["critical", "warning"]
SEVERITIES: tuple[str, ...] = get_args(Severity)

# The stable kinds, in the order findings are listed (worst first; a cause before its effect:
# with both binds failed the VIPs are unowned too, and the failed binds are the news).
KINDS: tuple[str, ...] = (
    "dns_failed_both", "vip_unowned", "vip_away", "peer_unheard", "links_degraded",
    "dns_failed", "config_mismatch", "zone_drift", "zone_unanswered", "dns_config_drift",
    "failures_recorded", "maintenance", "standby", "starting",
)

SEVERITY: dict[str, Severity] = {
    "vip_unowned": "critical",      # a nameserver address nobody answers on
    "dns_failed_both": "critical",  # no bind behind either VIP
    "vip_away": "warning",
    # check_dnspair has always warned here while the LED goes red: the survivor serves both
    # VIPs, so for Nagios this is lost redundancy (WARNING), not lost service (CRITICAL).
    "peer_unheard": "warning",
    "links_degraded": "warning",
    "dns_failed": "warning",        # one node: its VIP has moved (or will) to the other
    "config_mismatch": "warning",
    # Both binds should serve the same zones and settings; the severity is dns.drift_severity.
    "zone_drift": "warning",
    "zone_unanswered": "warning",   # drift that cannot be seen: the peer's bind does not answer us
    "dns_config_drift": "warning",
    "failures_recorded": "warning",
    "maintenance": "warning",       # an upgrade under way: the other node serves both VIPs
    "standby": "warning",
    "starting": "warning",
}


@dataclass(frozen=True)
class Finding:
    kind: str
    severity: Severity
    subject: str        # a VIP address (no prefix length), a node name, or the cluster name
    text: str           # one line, for people
    node: str | None = None  # the node it is on (a VIP's holder), None for the pair as a whole

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


def _ip(vip: Mapping[str, Any]) -> str:
    return str(vip["address"]).split("/")[0]


def _ago(s: float | None) -> str:
    if s is None:
        return "since start"
    return f"for {s:.1f} s" if s < 10 else f"for {s:.0f} s"


def findings(st: Mapping[str, Any]) -> list[Finding]:
    """Every finding for a status document, worst first (critical, then KINDS order)."""
    out: list[Finding] = []

    def add(kind: str, subject: str, text: str, node: str | None = None,
            severity: Severity | None = None) -> None:
        out.append(Finding(kind, severity or SEVERITY[kind], subject, text, node))

    cluster = str(st["cluster"])
    nodes: Sequence[Mapping[str, Any]] = st["nodes"]
    peer = next((n for n in nodes if not n["self"]), None)
    hb = st["heartbeat"]
    for v in st["vips"]:
        if v["owner"] is None:
            add("vip_unowned", _ip(v), f"{_ip(v)} has no owner")
        elif v["moved"]:
            add("vip_away", _ip(v), f"{_ip(v)} on {v['owner']}, not {v['preferred']}", v["owner"])
    both_failed = bool(nodes) and all(n["dns"]["ok"] is False for n in nodes)
    if both_failed:
        add("dns_failed_both", cluster, "DNS failed on both nodes")
    if peer is not None and not peer["online"]:
        add("peer_unheard", peer["name"], f"peer {peer['name']} unheard {_ago(peer['last_heard_s'])}",
            peer["name"])
    elif peer is not None and hb["links_total"] > 1 and hb["links_up"] < hb["links_total"]:
        add("links_degraded", peer["name"],
            f"only {hb['links_up']} of {hb['links_total']} heartbeat links up", peer["name"])
    for n in nodes:
        if n["dns"]["ok"] is False and not both_failed:
            why = n["dns"].get("last_error")
            add("dns_failed", n["name"], f"DNS failed on {n['name']}" + (f" ({why})" if why else ""),
                n["name"])
    if st.get("config_match") is False:
        add("config_mismatch", cluster, "configs differ")
    # The peer's bind silent to us while the peer is heard; unheard or its DNS failed, those
    # findings already say it.
    silent_peer = (peer["name"] if peer is not None and peer["online"] and peer["dns"]["ok"] is not False
                   else None)
    _dns_findings(st.get("dns"), str(st.get("node", "")), silent_peer, add)
    if st["failed_actions"]:
        add("failures_recorded", cluster, f"{len(st['failed_actions'])} failure(s) need cleanup")
    for n in nodes:
        if n.get("maintenance"):
            add("maintenance", n["name"], f"{n['name']} in maintenance (upgrading)", n["name"])
    for n in nodes:
        if n["standby"]:
            add("standby", n["name"], f"{n['name']} standby", n["name"])
    for n in nodes:
        if n["online"] and not n["ready"]:
            add("starting", n["name"], f"{n['name']} starting", n["name"])
    rank = {k: i for i, k in enumerate(KINDS)}
    return sorted(out, key=lambda f: (SEVERITIES.index(f.severity), rank[f.kind]))


def _minutes(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min"


def _dns_findings(dns: Mapping[str, Any] | None, me: str, silent_peer: str | None, add: Any) -> None:
    """Both binds serving different things, or the peer's not answering, for longer than
    dns.drift_after."""
    if not dns:
        return
    sev = _severity(dns.get("drift_severity", "warning"))
    for z in dns["zones"]:
        if z["drifted"]:
            serials = ", ".join(f"{n} {'serial ' if i == 0 else ''}{v}"
                                for i, (n, v) in enumerate(sorted(z["serials"].items())))
            add("zone_drift", z["zone"], f"zone {z['zone']}: {serials}, differing for "
                f"{_minutes(z['differing_s'] or 0)}", severity=sev)
        if silent_peer is not None and z.get("peer_silent"):
            add("zone_unanswered", z["zone"], f"zone {z['zone']}: {silent_peer}'s bind has not "
                f"answered for {_minutes(z['peer_silent_s'] or 0)} (serials cannot be compared)",
                silent_peer, severity=sev)
    c = dns["config"]
    if c["drifted"]:
        digests = ", ".join(f"{n} {v}" for n, v in sorted(c["digests"].items()))
        add("dns_config_drift", "bind config", f"bind config differs: {digests}, for "
            f"{_minutes(c['differing_s'] or 0)}", severity=sev)
    if c["reload_needed"]:
        add("dns_config_drift", me, f"bind on {me} runs another config than dnspair.yaml "
            f"(run `dnspair reload`) for {_minutes(c['reload_differing_s'] or 0)}", me, severity=sev)


def add_findings(st: dict[str, Any]) -> dict[str, Any]:
    """`st` with its findings under "findings" (JSON-safe dicts); for status.build."""
    st["findings"] = [f.as_dict() for f in findings(st)]
    return st


def _severity(value: object) -> Severity:
    if value == "critical":
        return "critical"
    if value == "warning":
        return "warning"
    raise ValueError(f"finding severity {value!r} is neither critical nor warning")


def read(st: Mapping[str, Any]) -> list[Finding]:
    """The document's own findings (a remote node's verdict); computed here for a document
    without the key (a daemon older than it). ValueError on a malformed entry."""
    raw = st.get("findings")
    if raw is None:
        return findings(st)
    if not isinstance(raw, list):
        raise ValueError("findings is not a list")
    out = []
    for d in raw:
        if not isinstance(d, dict) or not all(isinstance(d.get(k), str) for k in ("kind", "subject", "text")):
            raise ValueError(f"malformed finding {d!r}"[:120])
        node = d.get("node")
        out.append(Finding(d["kind"], _severity(d.get("severity")), d["subject"], d["text"],
                           node if isinstance(node, str) else None))
    return out
