"""The upgrade planner (core/upgrade.py) driven against two real engines (pairsim): what it
refuses, the order of its steps, that no VIP is ever unowned while it runs, the rollback
decision and its time bounds. The adapters are the world below; the namespace test
(tests/net/test_upgrade.py) runs the real ones."""
import pytest

from dnspair.core import events as E
from dnspair.core import status, wire
from dnspair.core import upgrade as plan
from pairsim import Pair

B = plan.Bounds(claim_wait=1.0, drain=10.0, healthy=20.0, poll=0.5)


class World:
    """Node a upgrades; its daemon, bundle, apt and reboot are simulated around the engines."""

    def __init__(self):
        self.p = Pair()
        self.p.run(2.0)
        self.a, self.b = self.p.names
        self.version, self.release = "0.1.0", "/r/old"
        self.broken = set()            # versions whose daemon's DNS check fails
        self.apt_error = None
        self.apt_breaks = False        # the OS update leaves bind broken
        self.reboot_required = False
        self.down = False              # daemon of a not answering
        self.done = []                 # adapter actions, in order
        self.unowned = 0               # status samples with a VIP nobody serves
        self.restarts = 0

    def status(self, node=None):
        node = node or self.a
        if node == self.a and self.down:
            return None
        st = status.build(self.p.e[node], self.p.now, 1000.0 + self.p.now)
        if node == self.a:
            st["daemon"]["version"] = self.version
        return st

    def seen(self):
        st = self.status()
        dns = None if self.p.dns[self.a] is True else "refused"
        return plan.Seen(self.p.now, st, self.reboot_required, dns, None)

    def restart(self, version=None, release=None):
        """An orderly restart of a's daemon, keeping its state file (as systemd would)."""
        self.restarts += 1
        e = self.p.e[self.a]
        snap = e.snapshot()
        self.p.up[self.a] = False
        self.p.addresses[self.a].clear()
        self.p.run(0.5)
        if version:
            self.version, self.release = version, release
        self.p.dns[self.a] = self.version not in self.broken and not self.apt_breaks
        self.p.up[self.a] = True
        self.p.e[self.a] = e.__class__(self.p.cfg, self.a, e.key, wire.incarnation(self.restarts + 5, 7),
                                       self.p.now)
        self.p.deliver(self.a, E.Start(frozenset(), snap))

    def perform(self, job, act):
        self.done.append(type(act).__name__)
        match act:
            case plan.Maintenance(text) | plan.Standby(text):
                cmd = ("maintenance", text) if isinstance(act, plan.Maintenance) else (
                    ("standby" if act.on else "unstandby"), None)
                self.p.deliver(self.a, E.Command(cmd[0], text=cmd[1]))
                r = self.p.replies[-1]
                return (None if r.ok else r.text), {}
            case plan.InstallBundle():
                old = self.release
                self.restart(job.version, "/r/new")
                return None, {"previous": old, "release": "/r/new"}
            case plan.AptUpgrade():
                if self.apt_error:
                    return self.apt_error, {}
                self.done.append("apt ran")
                self.restart()
                return None, {}
            case plan.Reboot():
                self.reboot_required = False
                self.restart()
                return None, {}
            case plan.RollBack(release):
                self.restart("0.1.0", release)
                return None, {}
        raise AssertionError(act)

    def drive(self, job, limit=400):
        pending = []
        for _ in range(limit):
            st = self.status(self.b)
            self.unowned += any(v["owner"] is None for v in st["vips"])
            if not pending:
                job, pending = plan.step(job, self.seen(), B)
                job = plan.from_json(plan.to_json(job), job.since)  # as the shell persists it
                if not pending:
                    continue
            act = pending.pop(0)
            if isinstance(act, plan.Finish):
                return job, act
            if isinstance(act, plan.Wait):
                self.p.run(max(act.seconds, 0.01))
                continue
            err, info = self.perform(job, act)
            job, more = plan.done(job, act, err, info, self.p.now)
            if more:
                pending = more
        raise AssertionError(f"no finish; at {job.phase}")

    def start(self, apt=True, bundle="/b.tar.gz", version="0.2.0"):
        return plan.start(self.status(), apt, bundle, version, self.p.now)


def test_a_healthy_upgrade_drains_applies_verifies_and_returns_with_no_vip_unowned():
    w = World()
    w.reboot_required = True
    job = w.start()
    job, fin = w.drive(job)
    assert fin.ok, fin.message
    assert w.done[:3] == ["Maintenance", "Standby", "InstallBundle"]
    assert w.done[3:] == ["AptUpgrade", "apt ran", "Reboot", "Standby"]
    assert w.version == "0.2.0" and "bundle, apt, reboot" in fin.message
    assert w.unowned == 0
    st = w.status()
    me = next(n for n in st["nodes"] if n["self"])
    assert not me["standby"] and not me["maintenance"]
    assert {v["owner"] for v in st["vips"]} == {w.a, w.b}  # each VIP home again


@pytest.mark.parametrize("spoil,why", [
    (lambda w: w.p.kill(w.b), "is not reachable"),
    (lambda w: w.p.cmd(w.b, "standby"), "is in standby"),
    (lambda w: w.p.dns.update({w.b: False}), "DNS check fails"),
    (lambda w: w.p.deliver(w.b, E.Command("maintenance", text="on")), "in maintenance (upgrading)"),
])
def test_refused_unless_the_peer_can_serve_both(spoil, why):
    w = World()
    spoil(w)
    w.p.run(1.0)
    got = w.start()
    assert isinstance(got, str) and why in got, got
    assert w.done == []


def test_refused_without_a_daemon_or_without_anything_to_do():
    w = World()
    assert "nothing to apply" in w.start(apt=False, bundle=None)
    w.down = True
    assert "does not answer" in w.start()


def test_a_broken_bundle_is_rolled_back_after_the_bound_and_the_node_serves_again():
    w = World()
    w.broken.add("0.2.0")
    job = w.start(apt=False)
    t0 = w.p.now
    job, fin = w.drive(job)
    assert not fin.ok and "rolled back to /r/old" in fin.message
    assert "DNS check fails" in fin.message
    assert w.version == "0.1.0" and w.done.count("RollBack") == 1
    assert w.p.now - t0 >= B.healthy          # the bound was waited out, not cut short
    assert w.unowned == 0
    me = next(n for n in w.status()["nodes"] if n["self"])
    assert not me["standby"]                  # healthy on the old version: back in service
    assert "upgrade" in [f["what"] for f in w.status()["failed_actions"]]


def test_broken_os_packages_leave_the_node_in_standby_with_a_failed_action_that_says_why():
    w = World()
    w.apt_breaks = True
    job, fin = w.drive(w.start(bundle=None, version=None))
    assert not fin.ok and "after the OS updates" in fin.message and "stays in standby" in fin.message
    assert "RollBack" not in w.done
    st = w.status()
    me = next(n for n in st["nodes"] if n["self"])
    assert me["standby"] and me["maintenance"]
    up = [f for f in st["failed_actions"] if f["what"] == "upgrade"]
    assert len(up) == 1 and "OS updates" in up[0]["why"]
    # and the peer now refuses to start its own
    peer_view = w.status(w.b)
    assert "in maintenance" in plan.refusal(peer_view)


def test_apt_failing_stays_in_standby_and_a_bundle_that_does_not_install_changes_nothing():
    w = World()
    w.apt_error = "apt-get -q -y exited with 100: E: Unable to fetch"
    job, fin = w.drive(w.start(bundle=None, version=None))
    assert not fin.ok and "Unable to fetch" in fin.message
    assert next(n for n in w.status()["nodes"] if n["self"])["standby"]

    w = World()
    job = w.start(apt=False)
    w.perform = (lambda orig: lambda j, a: (("SHA-256 does not match", {})
                                            if isinstance(a, plan.InstallBundle) else orig(j, a)))(w.perform)
    job, fin = w.drive(job)
    assert not fin.ok and "was not installed: SHA-256" in fin.message
    me = next(n for n in w.status()["nodes"] if n["self"])
    assert not me["standby"] and not me["maintenance"] and w.version == "0.1.0"


def test_both_at_the_same_moment_the_later_name_backs_off():
    w = World()
    ja = w.start(apt=False)
    job_b = plan.Job(node=w.b, peer=w.a, phase="claim", since=w.p.now, apt=False, bundle="/b",
                     version="0.2.0")
    job_b, _ = plan.step(job_b, plan.Seen(w.p.now, w.status(w.b)), B)
    # Both raise the flag in the same instant: neither heard the other's yet.
    w.p.link[w.a] = False
    w.p.deliver(w.a, E.Command("maintenance", text="on"))
    w.p.deliver(w.b, E.Command("maintenance", text="on"))
    assert all(r.ok for r in w.p.replies[-2:])
    w.p.link[w.a] = True
    w.p.run(1.5)
    job_b, acts = plan.step(job_b, plan.Seen(w.p.now, w.status(w.b)), B)
    assert isinstance(acts[-1], plan.Finish) and not acts[-1].ok and "goes first" in acts[-1].message
    assert plan.Maintenance("off") in acts
    ja = plan.replace(ja, phase="confirm", since=w.p.now - 2)
    ja2, acts = plan.step(ja, plan.Seen(w.p.now, w.status()), B)
    assert acts == [plan.Wait(B.poll)]        # a waits for b's flag to drop, then goes on
    w.p.deliver(w.b, E.Command("maintenance", text="off"))
    w.p.run(1.0)
    ja2, acts = plan.step(ja2, plan.Seen(w.p.now, w.status()), B)
    assert acts[0] == plan.Standby(True)


def test_the_job_survives_a_reboot_as_json_and_resume_restarts_the_bound():
    job = plan.Job(node="a", peer="b", phase="verify", since=5.0, apt=True, bundle="/x", version="0.2",
                   done=("bundle", "apt", "reboot"), previous="/r/old", release="/r/new")
    back = plan.resume(plan.from_json(plan.to_json(job), 0.0), 1234.0)
    assert back == plan.replace(job, since=1234.0)
    for bad in ({}, {"version": 1, "phase": "flying", "node": "a", "peer": "b"},
                {"version": 1, "phase": "verify", "node": "a", "peer": "b", "done": ["nuke"]}):
        with pytest.raises(ValueError):
            plan.from_json(bad, 0.0)


def test_verify_waits_for_the_new_version_bind_and_a_valid_config():
    job = plan.Job(node="dns-pm01", peer="dns-pm02", phase="verify", since=0.0, apt=False, bundle="/x",
                   version="0.2.0", done=("bundle",), previous="/r/old")
    w = World()
    st = w.status()
    assert "runs dnspair 0.1.0, not 0.2.0" in plan.unhealthy(job, plan.Seen(1.0, st))
    st["daemon"]["version"] = "0.2.0"
    assert plan.unhealthy(job, plan.Seen(1.0, st)) is None
    assert "bind does not answer" in plan.unhealthy(job, plan.Seen(1.0, st, local_dns="timeout"))
    assert "config is not valid" in plan.unhealthy(job, plan.Seen(1.0, st, config="line 3: bad"))
    _, acts = plan.step(job, plan.Seen(B.healthy - 1, None), B)
    assert acts == [plan.Wait(B.poll)]
    _, acts = plan.step(job, plan.Seen(B.healthy + 1, None), B)
    assert acts[0] == plan.RollBack("/r/old")
