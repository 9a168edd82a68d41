"""The rolling upgrade of one node (`dnspair upgrade`), as a pure state machine.

No I/O and no clock: `step(job, seen, bounds)` reads what the shell observed (the daemon's
status document, the reboot flag, a local DNS query, the config check) and returns the next
`Job` and the actions to perform; `done(job, action, error, info)` folds an action's outcome
back in. The shell (shell/upgrade.py) persists the job after every change, so a reboot or a
lost SSH session resumes where it stopped (`dnspair upgrade --resume`, run at boot).

The order, and why:
1. refuse unless this node is ready and the peer is online, ready, DNS-healthy, not in
   standby and not in maintenance: the peer must be able to serve both VIPs alone;
2. raise the maintenance flag (heartbeat bit 4), wait a few heartbeats, and look again: if
   the peer raised its own at the same moment, the node later in name order backs off, the
   other waits for the peer's flag to drop. So the two nodes never upgrade at once;
3. standby, and wait until the peer owns every VIP (the engine's yield: no query lost);
4. the dnspair bundle (new release, switched atomically, daemon restarted), then
   `apt-get upgrade`, then a reboot if `/var/run/reboot-required` asks for one;
5. wait until healthy: the daemon is up (on the bundle's version), ready, its DNS check
   passes, bind answers locally, and the config is valid for the dnspair now installed;
6. not healthy within `bounds.healthy`: if a bundle was installed, switch back to the
   previous release and verify again; otherwise (OS packages) stay in standby and in
   maintenance, with a failed `upgrade` action saying why;
7. unstandby (which lowers the flag) and wait until this node's preferred VIPs are home.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from .config import Config
from .verdict import read as read_findings

JOB_VERSION = 1
PHASES = ("claim", "confirm", "drain", "apply", "verify", "release", "settle", "done", "failed")


@dataclass(frozen=True)
class Bounds:
    claim_wait: float = 1.0     # s with the flag up before looking for the peer's own
    drain: float = 30.0         # s for the peer to take (and later give back) the VIPs
    healthy: float = 300.0      # s for the node to be healthy after the updates (or a rollback)
    poll: float = 0.5

    @classmethod
    def of(cls, cfg: Config, healthy: float = 300.0) -> Bounds:
        hb = cfg.heartbeat
        # Long enough for our flag to reach the peer and its to reach us, with losses.
        return cls(claim_wait=max(1.0, 4 * (hb.dead_time + hb.interval)), healthy=healthy)


@dataclass(frozen=True)
class Job:
    node: str
    peer: str
    phase: str
    since: float                      # when this phase began (the shell's monotonic clock)
    apt: bool
    bundle: str | None = None         # the bundle file
    version: str | None = None        # the bundle's dnspair version
    done: tuple[str, ...] = ()        # bundle, apt, reboot, rollback: what has been applied
    previous: str | None = None       # the release the bundle replaced (for the rollback)
    release: str | None = None        # the release the bundle installed
    result: str | None = None         # the final message (done or failed)


@dataclass(frozen=True)
class Seen:
    now: float
    status: Mapping[str, Any] | None  # the daemon's status document; None: no answer
    reboot_required: bool = False
    local_dns: str | None = None      # None: bind answered on the local address; else why not
    config: str | None = None         # None: the installed dnspair accepts the config; else why not


# --- actions (the shell performs them) --------------------------------------------------------

@dataclass(frozen=True)
class Maintenance:
    text: str                         # on | off | failed: WHY


@dataclass(frozen=True)
class Standby:
    on: bool


@dataclass(frozen=True)
class InstallBundle:
    """Install the bundle as a new release, switch to it, restart the daemon. info: previous, release."""


@dataclass(frozen=True)
class AptUpgrade:
    pass


@dataclass(frozen=True)
class Reboot:
    pass


@dataclass(frozen=True)
class RollBack:
    release: str                      # switch back to this one and restart the daemon


@dataclass(frozen=True)
class Wait:
    seconds: float


@dataclass(frozen=True)
class Finish:
    ok: bool
    message: str


Action = Maintenance | Standby | InstallBundle | AptUpgrade | Reboot | RollBack | Wait | Finish


# --- reading the status document --------------------------------------------------------------

def _nodes(st: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
    nodes = st.get("nodes") or []
    me = next((n for n in nodes if n.get("self")), None)
    peer = next((n for n in nodes if not n.get("self")), None)
    return me, peer


def refusal(st: Mapping[str, Any]) -> str | None:
    """Why this node may not start an upgrade now (None: it may)."""
    me, peer = _nodes(st)
    if me is None or peer is None:
        return "the daemon's status has no nodes"
    if not me.get("ready"):
        return "this node is still starting"
    if me.get("maintenance"):
        return "this node is already in maintenance (an upgrade under way: `dnspair upgrade --resume`)"
    name = peer["name"]
    if not peer.get("online"):
        return f"peer {name} is not reachable: it could not serve both VIPs"
    if not peer.get("ready"):
        return f"peer {name} is still starting"
    if peer.get("maintenance"):
        return f"peer {name} is in maintenance (upgrading): one node at a time"
    if peer.get("standby"):
        return f"peer {name} is in standby: it could not take this node's VIPs"
    if peer.get("dns", {}).get("ok") is not True:
        return f"peer {name}'s DNS check fails: it could not serve both VIPs"
    if st.get("config_match") is False:
        return "the two nodes run different configs"
    critical = [f.text for f in read_findings(st) if f.severity == "critical"]
    if critical:
        return "the pair is not healthy: " + "; ".join(critical)
    return None


def drained(st: Mapping[str, Any]) -> bool:
    """The peer owns every VIP and this node holds none."""
    _, peer = _nodes(st)
    return peer is not None and all(v["owner"] == peer["name"] and not v["held_here"] for v in st["vips"])


def home(st: Mapping[str, Any]) -> list[str]:
    """This node's preferred VIPs that are not on it yet."""
    me, _ = _nodes(st)
    name = me["name"] if me else None
    return [str(v["address"]) for v in st["vips"] if v["preferred"] == name and v["owner"] != name]


def unhealthy(job: Job, seen: Seen) -> str | None:
    """Why the node is not healthy yet (None: it is)."""
    st = seen.status
    if st is None:
        return "the daemon does not answer"
    me, _ = _nodes(st)
    if me is None:
        return "the daemon's status has no nodes"
    want = job.version if "bundle" in job.done and "rollback" not in job.done else None
    running = st.get("daemon", {}).get("version")
    if want is not None and running != want:
        return f"the daemon runs dnspair {running}, not {want}"
    if not me.get("ready"):
        return "the daemon is not ready"
    if me.get("dns", {}).get("ok") is not True:
        return "the daemon's DNS check fails" + (f" ({me['dns']['last_error']})"
                                                   if me.get("dns", {}).get("last_error") else "")
    if seen.local_dns is not None:
        return f"bind does not answer locally: {seen.local_dns}"
    if seen.config is not None:
        return f"the config is not valid: {seen.config}"
    return None


# --- the machine ------------------------------------------------------------------------------

def start(st: Mapping[str, Any] | None, apt: bool, bundle: str | None, version: str | None,
          now: float) -> Job | str:
    """A new job, or the one-line reason it is refused."""
    if st is None:
        return "the daemon does not answer: nothing to hand the VIPs to safely"
    if not apt and bundle is None:
        return "nothing to apply (no bundle given and --no-apt)"
    why = refusal(st)
    if why:
        return why
    me, peer = _nodes(st)
    assert me is not None and peer is not None
    return Job(node=me["name"], peer=peer["name"], phase="claim", since=now, apt=apt, bundle=bundle,
               version=version)


def _to(job: Job, phase: str, now: float, **kw: Any) -> Job:
    return replace(job, phase=phase, since=now, **kw)


def _undo(job: Job, now: float, why: str) -> tuple[Job, list[Action]]:
    """Give up before anything was applied: back in service, flag down."""
    return (_to(job, "failed", now, result=why),
            [Standby(False), Maintenance("off"), Finish(False, why)])


def _fail_in_standby(job: Job, now: float, why: str) -> tuple[Job, list[Action]]:
    """Something was applied and the node is not right: stay drained, say why."""
    why = why + "; the node stays in standby (fix it, then `dnspair unstandby` and `dnspair cleanup`)"
    return (_to(job, "failed", now, result=why), [Maintenance(f"failed: {why}"), Finish(False, why)])


def step(job: Job, seen: Seen, b: Bounds) -> tuple[Job, list[Action]]:
    now, st = seen.now, seen.status
    age = now - job.since
    if job.phase in ("done", "failed"):
        return job, [Finish(job.phase == "done", job.result or job.phase)]
    if job.phase == "claim":
        return _to(job, "confirm", now), [Maintenance("on"), Wait(b.claim_wait)]
    if job.phase == "confirm":
        if st is None:
            return _undo(job, now, "the daemon stopped answering before the upgrade began")
        me, peer = _nodes(st)
        if peer is not None and peer.get("maintenance") and peer.get("online"):
            if job.node > job.peer:
                return _undo(job, now, f"{job.peer} began an upgrade at the same moment; it goes first")
            if age < b.drain:
                return job, [Wait(b.poll)]   # the peer backs off: wait for its flag to drop
        if age < b.claim_wait:
            return job, [Wait(max(b.claim_wait - age, 0.05))]
        why = refusal({**st, "nodes": [dict(n, maintenance=False) if n.get("self") else n
                                       for n in st["nodes"]]})
        if why:
            return _undo(job, now, why)
        return _to(job, "drain", now), [Standby(True), Wait(b.poll)]
    if job.phase == "drain":
        if st is not None and drained(st):
            return _to(job, "apply", now), []
        if age > b.drain:
            return _undo(job, now, f"{job.peer} did not take the VIPs within {b.drain:g} s")
        return job, [Wait(b.poll)]
    if job.phase == "apply":
        if job.bundle is not None and "bundle" not in job.done:
            return job, [InstallBundle()]
        if job.apt and "apt" not in job.done:
            return job, [AptUpgrade()]
        if seen.reboot_required and "reboot" not in job.done:
            # Marked before the reboot: the job file says so when the node comes back.
            return replace(job, done=job.done + ("reboot",)), [Reboot()]
        return _to(job, "verify", now), [Wait(b.poll)]
    if job.phase == "verify":
        why = unhealthy(job, seen)
        if why is None:
            if "rollback" in job.done:
                msg = (f"rolled back to {job.previous}: dnspair {job.version} was not healthy "
                       f"within {b.healthy:g} s ({job.result})")
                return (_to(job, "release", now, result=msg), [Maintenance(f"failed: {msg}")])
            return _to(job, "release", now), []
        if age <= b.healthy:
            return job, [Wait(b.poll)]
        if "bundle" in job.done and "rollback" not in job.done and job.previous:
            return (_to(job, "verify", now, done=job.done + ("rollback",), result=why),
                    [RollBack(job.previous), Wait(b.poll)])
        if "rollback" in job.done:
            return _fail_in_standby(job, now, f"not healthy within {b.healthy:g} s after the rollback "
                                               f"to {job.previous}: {why}")
        return _fail_in_standby(job, now, f"not healthy within {b.healthy:g} s after the OS updates: {why}")
    if job.phase == "release":
        return _to(job, "settle", now), [Standby(False), Wait(b.poll)]
    if job.phase == "settle":
        away = home(st) if st is not None else ["?"]
        if away and age <= b.drain:
            return job, [Wait(b.poll)]
        applied = [what for what in ("bundle", "apt", "reboot") if what in job.done]
        msg = job.result or ("upgraded: " + (", ".join(applied) or "nothing")
                             + (f" (dnspair {job.version})" if "bundle" in job.done else ""))
        if away:
            msg += f"; {', '.join(away)} not back home within {b.drain:g} s"
        ok = "rollback" not in job.done
        return _to(job, "done" if ok else "failed", now, result=msg), [Finish(ok, msg)]
    raise ValueError(f"unknown upgrade phase {job.phase!r}")


def done(job: Job, action: Action, error: str | None, info: Mapping[str, str] | None = None,
         now: float = 0.0) -> tuple[Job, list[Action]]:
    """An action's outcome. Returns the job and any actions to perform at once."""
    info = info or {}
    if isinstance(action, Maintenance) and action.text == "on" and error:
        return _to(job, "failed", now, result=error), [Finish(False, error)]
    if isinstance(action, Standby) and action.on and error:
        return _undo(job, now, f"standby refused: {error}")
    if isinstance(action, InstallBundle):
        if error:
            # The adapter switches last: a failure before that changed nothing.
            if "release" not in info:
                return _undo(job, now, f"the bundle was not installed: {error}")
            return replace(job, done=job.done + ("bundle",), previous=info.get("previous"),
                           release=info["release"]), []
        return replace(job, done=job.done + ("bundle",), previous=info.get("previous"),
                       release=info.get("release")), []
    if isinstance(action, AptUpgrade):
        if error:
            return _fail_in_standby(job, now, f"apt-get upgrade failed: {error}")
        return replace(job, done=job.done + ("apt",)), []
    if isinstance(action, Reboot) and error:
        return _fail_in_standby(job, now, f"the reboot failed: {error}")
    if isinstance(action, RollBack) and error:
        return _fail_in_standby(job, now, f"the rollback to {action.release} failed: {error}")
    return job, []


def resume(job: Job, now: float) -> Job:
    """After a reboot or a lost session: the phase's bound starts again (the clock did not run)."""
    return replace(job, since=now)


def to_json(job: Job) -> dict[str, Any]:
    return {"version": JOB_VERSION, "node": job.node, "peer": job.peer, "phase": job.phase,
            "apt": job.apt, "bundle": job.bundle, "dnspair_version": job.version,
            "done": list(job.done), "previous": job.previous, "release": job.release,
            "result": job.result}


def from_json(d: object, now: float) -> Job:
    """ValueError (one line) if `d` is not an upgrade job."""
    if not isinstance(d, dict) or d.get("version") != JOB_VERSION:
        raise ValueError("not a dnspair upgrade job of version 1")
    if (d.get("phase") not in PHASES or not isinstance(d.get("node"), str)
            or not isinstance(d.get("peer"), str)):
        raise ValueError("upgrade job: bad phase or node")
    done = d.get("done", [])
    if not isinstance(done, list) or not all(x in ("bundle", "apt", "reboot", "rollback") for x in done):
        raise ValueError("upgrade job: bad done list")

    def opt(key: str) -> str | None:
        v = d.get(key)
        if v is not None and not isinstance(v, str):
            raise ValueError(f"upgrade job: {key} is not a string")
        return v

    return Job(node=d["node"], peer=d["peer"], phase=d["phase"], since=now, apt=bool(d.get("apt")),
               bundle=opt("bundle"), version=opt("dnspair_version"), done=tuple(done),
               previous=opt("previous"), release=opt("release"), result=opt("result"))
