"""The transition kinds test_history.py does not reach: peer found, DNS healthy again, standby,
unstandby, config mismatch and match; each with its details, and as a notify command sees it."""
import pytest

from dnspair.core import config, engine, wire
from dnspair.core import events as E
from dnspair.shell import notify, state
from pairsim import EXAMPLE, KEY
from test_history import PM1, PM2, KeptPair

WALL = 1_767_225_600.0   # 2026-01-01T00:00:00Z


def restart_with(p, node, cfg, incarnation):
    """`node` comes back with `cfg` (another config: another digest), without state."""
    p.up[node] = True
    p.addresses[node] = set()
    p.e[node] = engine.Engine(cfg, node, KEY, incarnation, p.now)
    p.deliver(node, E.Start(frozenset()))


@pytest.fixture(scope="module")
def story():
    """DNS fails and recovers on dns-pm01; dns-pm02 goes to standby and back; dns-pm02 dies and
    comes back with another config, dies again and comes back with the shared one."""
    p = KeptPair()
    p.run(0.5)
    p.dns[PM1] = False
    p.run(0.3)
    p.dns[PM1] = True
    p.run(0.5)
    p.cmd(PM2, "standby")
    p.run(0.5)
    p.cmd(PM2, "unstandby")
    p.run(0.5)
    p.kill(PM2)
    p.run(0.5)
    other = config.parse(EXAMPLE.replace("failure_threshold: 1", "failure_threshold: 2"))
    assert other.digest != p.cfg.digest
    restart_with(p, PM2, other, wire.incarnation(2, 5))
    p.run(0.5)
    p.kill(PM2)
    p.run(0.5)
    restart_with(p, PM2, p.cfg, wire.incarnation(3, 5))
    p.run(0.5)
    return p.transitions


def of(transitions, node, kind):
    return [t for n, t in transitions if n == node and t.kind == kind]


def test_peer_found_at_start_and_after_a_restart(story):
    first = of(story, PM1, "peer_found")[0]
    assert first.number == 1 and first.reason == f"heard {PM2}" and first.role == "backup"
    later = of(story, PM1, "peer_found")[1:]
    assert len(later) == 2 and all(t.reason == f"heard {PM2} again (restarted)" for t in later)
    assert all(t.code == "peer_found" and t.vip is None and t.old_owner is None and t.new_owner is None
               and t.duration is None for t in later)
    peer = [t.kind for n, t in story if n == PM1 and t.kind.startswith("peer_")]
    assert peer == ["peer_found", "peer_lost", "peer_found", "peer_lost", "peer_found"]


def test_dns_healthy_follows_dns_failed_once(story):
    failed, healthy = of(story, PM1, "dns_failed"), of(story, PM1, "dns_healthy")
    assert len(failed) == 1 and len(healthy) == 1 and healthy[0].number > failed[0].number
    h = healthy[0]
    assert (h.code, h.reason, h.vip) == ("dns_healthy", "DNS check passes again", None)
    # failback: manual: the VIP stayed with dns-pm02, so dns-pm01 holds nothing
    assert h.role == "backup"
    assert not of(story, PM2, "dns_healthy"), "the first passing check is no transition"


def test_standby_and_unstandby_say_so_and_drain(story):
    (sb,), (usb,) = of(story, PM2, "standby"), of(story, PM2, "unstandby")
    assert (sb.code, sb.role, sb.reason) == ("standby", "standby", "operator: standby, draining VIPs")
    assert (usb.code, usb.role, usb.reason) == ("unstandby", "backup", "operator: unstandby, active again")
    drained = [t for n, t in story
               if n == PM2 and t.kind == "vip_released" and sb.number < t.number < usb.number]
    assert {t.vip for t in drained} == {"192.0.2.11", "192.0.2.12"}
    assert all(t.role == "standby" and t.new_owner == PM1 for t in drained)
    took = [t for n, t in story if n == PM1 and t.code == "peer_standby"]
    assert {t.vip for t in took} == {"192.0.2.11", "192.0.2.12"}
    assert all(t.kind == "vip_claimed" for t in took)


def test_config_mismatch_then_match_on_both_sides(story):
    (mm,), (ok,) = of(story, PM1, "config_mismatch"), of(story, PM1, "config_match")
    assert mm.reason == f"{PM2} runs a different config" and mm.code == "config_mismatch"
    assert ok.reason == f"{PM2} runs the same config" and ok.code == "config_match"
    assert mm.number < ok.number and mm.vip is None and ok.vip is None
    assert [t.reason for t in of(story, PM2, "config_mismatch")] == [f"{PM1} runs a different config"]
    assert not of(story, PM2, "config_match"), "a fresh start with the same config is no news"


@pytest.mark.parametrize("kind", ["peer_found", "dns_healthy", "standby", "unstandby",
                                  "config_mismatch", "config_match"])
def test_notify_environment_carries_each_kind(story, kind):
    node, t = next((n, t) for n, t in story if t.kind == kind)
    peer = PM2 if node == PM1 else PM1
    env = notify.environment(state.entry(t, node, WALL), "clst-01", peer)
    assert env["DNSPAIR_EVENT"] == kind and env["DNSPAIR_EVENT_ID"] == str(t.number)
    assert env["DNSPAIR_REASON_CODE"] == t.code and env["DNSPAIR_REASON"] == t.reason
    assert env["DNSPAIR_ROLE"] == t.role and env["DNSPAIR_NODE"] == node and env["DNSPAIR_PEER"] == peer
    assert env["DNSPAIR_CLUSTER"] == "clst-01" and env["DNSPAIR_TIME"] == "2026-01-01T00:00:00.000+00:00"
    # node-wide events: no VIP, no owners, no duration; empty, not "None"
    for k in ("DNSPAIR_VIP", "DNSPAIR_OLD_OWNER", "DNSPAIR_NEW_OWNER", "DNSPAIR_DURATION"):
        assert env[k] == "", (k, env[k])
    assert all(isinstance(v, str) for v in env.values())
