"""State kept across restarts, transitions, the per-VIP why, the notify runner, the state file."""
import asyncio
import json
import os

import pytest

from dnspair.core import actions as A
from dnspair.core import config, saved, status, wire
from dnspair.core import events as E
from dnspair.shell import notify, state
from pairsim import EXAMPLE, KEY, Pair

PM1, PM2 = "dns-pm01", "dns-pm02"
V1, V2 = 0, 1


class KeptPair(Pair):
    """Pair whose nodes keep their last `Save` like a state directory, and restart with it."""

    def __init__(self, text=EXAMPLE):
        self.kept = {}
        self.transitions = []
        super().__init__(text)

    def _do(self, node, a):
        if isinstance(a, A.Save):
            self.kept[node] = a.state
        elif isinstance(a, A.Transition):
            self.transitions.append((node, a))
        else:
            super()._do(node, a)

    def restart_kept(self, node, incarnation, keep=True):
        from dnspair.core import engine
        self.up[node] = True
        self.e[node] = engine.Engine(self.cfg, node, KEY, incarnation, self.now)
        self.deliver(node, E.Start(frozenset(self.addresses[node]), self.kept.get(node) if keep else None))


def failed_over():
    """dns-pm01's bind fails: VIP1 moves to dns-pm02; bind comes back, VIP1 stays (manual)."""
    p = KeptPair()
    p.run(0.5)
    p.dns[PM1] = False
    p.run(0.3)
    p.dns[PM1] = True
    p.run(1.0)
    assert p.holders() == {V1: [PM2], V2: [PM2]}
    return p


@pytest.mark.parametrize("keep", [True, False])
def test_restart_of_the_holder_keeps_a_manual_failover_only_with_the_state(keep):
    p = failed_over()
    p.stop(PM2)
    p.run(0.5)
    assert p.holders() == {V1: [PM1], V2: [PM1]}   # while it is gone, dns-pm01 serves both
    p.addresses[PM2] = set()
    p.restart_kept(PM2, wire.incarnation(2, 9), keep=keep)
    p.run(2.0)
    want = PM2 if keep else PM1
    assert p.holders() == {V1: [want], V2: [PM2]}, "failback: manual survives a restart with the state"
    assert not p.double


def test_restart_of_the_failed_node_keeps_what_left_it_and_cleanup_brings_it_home():
    p = failed_over()
    assert V1 in p.e[PM1].away and V1 in p.kept[PM1].away
    p.stop(PM1)
    p.run(0.3)
    p.addresses[PM1] = set()
    p.restart_kept(PM1, wire.incarnation(2, 7))
    p.run(2.0)
    assert p.holders() == {V1: [PM2], V2: [PM2]}
    assert p.e[PM1].failures[("dns_check", PM1)].count >= 1, "failure records survive the restart"
    p.cmd(PM1, "cleanup")
    p.run(1.0)
    assert p.holders() == {V1: [PM1], V2: [PM2]}
    assert not p.e[PM1].away and not p.kept[PM1].away and not p.kept[PM2].sticky


def test_pins_and_transition_numbers_survive_a_restart():
    p = KeptPair()
    p.run(0.5)
    p.cmd(PM1, "move", "192.0.2.11", PM2)
    p.run(0.5)
    assert p.holders()[V1] == [PM2]
    before = p.e[PM1].events
    assert before >= 2
    p.stop(PM1)
    p.stop(PM2)
    seen = len(p.transitions)
    p.addresses = {PM1: set(), PM2: set()}
    p.restart_kept(PM1, wire.incarnation(2, 1))
    p.restart_kept(PM2, wire.incarnation(2, 2))
    p.run(2.0)
    assert p.holders() == {V1: [PM2], V2: [PM2]}, "the pin from `dnspair move` is kept"
    mine = [t.number for n, t in p.transitions if n == PM1]
    after = [t.number for n, t in p.transitions[seen:] if n == PM1]
    assert mine == list(range(1, len(mine) + 1)) and after and after[0] > before, "numbers go on rising"


def test_transitions_say_what_happened_in_order():
    p = KeptPair()
    p.run(0.5)
    p.dns[PM1] = False
    p.run(0.3)
    got = [(n, t.kind, t.vip, t.old_owner, t.new_owner, t.code) for n, t in p.transitions]
    assert (PM1, "vip_claimed", "192.0.2.11", None, PM1, "preferred") in got
    assert (PM1, "dns_failed", None, None, None, "dns_failed") in got
    assert (PM1, "vip_released", "192.0.2.11", PM1, PM2, "dns_failed") in got
    assert (PM2, "failover", "192.0.2.11", PM1, PM2, "peer_dns_failed") in got
    fo = next(t for n, t in p.transitions if t.kind == "failover")
    assert fo.role == "active" and fo.duration is not None and 0 <= fo.duration < 0.3
    rel = next(t for n, t in p.transitions if t.kind == "vip_released")
    assert rel.role == "failed"
    p.kill(PM2)
    p.run(0.5)
    assert (PM1, "peer_lost", None, None, None, "peer_lost") in [
        (n, t.kind, t.vip, t.old_owner, t.new_owner, t.code) for n, t in p.transitions]


def test_why_each_vip_is_where_it_is():
    p = failed_over()
    fail_at = p.e[PM1].failures[("dns_check", PM1)].first
    wall_now = 1_700_000_000.0
    for node in (PM1, PM2):
        st = status.build(p.e[node], p.now, wall_now)
        v1, v2 = st["vips"]
        assert v2["why"] == "on dns-pm02: preferred (200 vs 100)"
        assert v1["why"].startswith("on dns-pm02: dns-pm01 DNS failed "), v1["why"]
        # dns-pm01 saw its own error; dns-pm02 only that the peer's check failed
        detail = " (refused)" if node == PM1 else ""
        assert v1["why"].endswith(f"{detail}; stays until `dnspair cleanup` (failback manual)"), v1["why"]
        assert v1["reason"]["code"] == "dns_failed" and v1["reason"]["node"] == PM1
    st = status.build(p.e[PM1], p.now, wall_now)
    clock = status._clock(wall_now - (p.now - fail_at), wall_now)
    assert f"DNS failed {clock} (refused)" in st["vips"][0]["why"]
    p.cmd(PM1, "cleanup")
    p.run(1.0)
    p.cmd(PM1, "move", "192.0.2.12", PM1)
    p.run(1.0)
    st = status.build(p.e[PM2], p.now, wall_now)
    assert st["vips"][0]["why"] == "on dns-pm01: preferred (200 vs 100)"
    assert st["vips"][1]["why"] == "on dns-pm01: moved by operator (until `dnspair cleanup 192.0.2.12`)"
    p.kill(PM2)
    p.dns[PM1] = False
    p.run(1.0)
    st = status.build(p.e[PM1], p.now, wall_now)
    assert st["vips"][0]["why"] == "nowhere: DNS failed on dns-pm01; dns-pm02 offline"


def test_saved_state_round_trips_by_address_and_refuses_garbage():
    cfg = config.parse(EXAMPLE)
    s = saved.Saved(sticky=frozenset({1}), away=frozenset({0}), admin=wire.Admin(7, 1, (0, 1), 2, True),
                    failures=(saved.Failure("dns_check", PM1, 5.0, 6.0, 3, "refused"),),
                    total_failures=3, events=41,
                    causes=((0, saved.Cause("dns_failed", PM1, 5.0, "refused")),),
                    changed=((0, 6.0),))
    d = json.loads(json.dumps(saved.to_json(s, cfg, 1000.0)))
    assert d["sticky"] == ["192.0.2.12"] and d["admin"]["pins"] == {"192.0.2.12": PM1}
    assert saved.from_json(d, cfg, 1000.0) == s
    # Read with another clock offset: the same wall times on the new clock.
    assert saved.from_json(d, cfg, 900.0).failures[0].first == 105.0
    # The VIP list reordered: by address, not index.
    swapped = config.parse(EXAMPLE.replace("192.0.2.11/24", "X").replace("192.0.2.12/24", "192.0.2.11/24")
                           .replace("X", "192.0.2.12/24"))
    assert saved.from_json(d, swapped, 1000.0).sticky == frozenset({0})
    for bad in ([], {"version": 2}, {"version": 1, "sticky": "x"}, {"version": 1, "events": -1},
                {"version": 1, "failures": [{"what": 1}]}, {"version": 1, "admin": {"counter": "x"}}):
        with pytest.raises(ValueError):
            saved.from_json(bad, cfg, 0.0)


def test_state_file_missing_or_corrupt_gives_defaults_with_one_warning(tmp_path, caplog):
    cfg = config.parse(EXAMPLE)
    assert state.load(str(tmp_path), PM1, cfg) == (None, [])
    (tmp_path / f"{PM1}.state.json").write_text('{"engine": {"version": 1, "sticky": [')
    assert state.load(str(tmp_path), PM1, cfg) == (None, [])
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and "no state file" in warnings[0] and "unreadable" in warnings[1]


def test_keeper_writes_atomically_and_reads_back(tmp_path):
    cfg = config.parse(EXAMPLE)
    s = saved.Saved(sticky=frozenset({0}), events=3)
    t = A.Transition(3, "failover", 1.0, "active", "peer_lost", "peer dns-pm02 is dead", "192.0.2.12",
                     PM2, PM1, 0.2)

    async def go():
        k = state.Keeper(str(tmp_path / "st"), PM1, cfg, None, [])
        k.save(s)
        for _ in range(250):
            k.add(state.entry(t, PM1, 1e9))
        await k.flush()
        return k
    k = asyncio.run(go())
    assert k.writes >= 1 and k.failed == 0
    assert sorted(os.listdir(tmp_path / "st")) == [f"{PM1}.state.json"]   # no temp file left
    got, history = state.load(str(tmp_path / "st"), PM1, cfg)
    assert got.sticky == frozenset({0}) and got.events == 3
    assert len(history) == state.HISTORY_MAX and history[-1]["kind"] == "failover"
    assert state.read_history(str(tmp_path / "st"), PM1) == history


def _env(n, kind="vip_claimed"):
    item = {"number": n, "kind": kind, "vip": "192.0.2.11", "old_owner": None, "new_owner": PM1,
            "role": "active", "reason": "preferred here", "code": "preferred", "node": PM1,
            "time": "2026-01-01T00:00:00.000+00:00", "duration_s": 0.01}
    return notify.environment(item, "clst-01", PM2)


def test_notify_runs_in_order_with_the_details_and_survives_a_hung_command(tmp_path):
    out = tmp_path / "out"
    cmds = (f'echo "$DNSPAIR_EVENT_ID $DNSPAIR_EVENT $DNSPAIR_VIP $DNSPAIR_NEW_OWNER $DNSPAIR_ROLE '
            f'$DNSPAIR_REASON_CODE" >> {out}',
            'if [ "$DNSPAIR_EVENT_ID" = 2 ]; then sleep 30; fi',
            'if [ "$DNSPAIR_EVENT_ID" = 3 ]; then echo boom >&2; exit 3; fi')

    async def go():
        n = notify.Notifier(cmds, timeout=0.5, limit=100)
        n.start()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i in range(1, 6):
            n.put(_env(i))
        queued_in = loop.time() - t0
        await n.drain(10.0)
        return n, queued_in
    n, queued_in = asyncio.run(go())
    assert queued_in < 0.05, "putting never waits for a command"
    lines = out.read_text().splitlines()
    assert lines == [f"{i} vip_claimed 192.0.2.11 dns-pm01 active preferred" for i in range(1, 6)]
    assert n.stats["timed_out"] == 1 and n.stats["failed"] == 1 and n.stats["run"] == 15


def test_notify_full_queue_drops_the_oldest_and_says_so(tmp_path, caplog):
    out = tmp_path / "out"

    async def go():
        n = notify.Notifier((f'echo "$DNSPAIR_EVENT_ID $DNSPAIR_DROPPED" >> {out}',), timeout=5, limit=3)
        n.start()
        for i in range(1, 11):
            n.put(_env(i))
        await n.drain(10.0)
        return n
    n = asyncio.run(go())
    assert out.read_text().splitlines() == ["8 7", "9 7", "10 7"]
    assert n.stats["dropped"] == 7
    assert sum("queue full" in r.getMessage() for r in caplog.records) == 1


def test_config_notify_and_runtime_dir_are_node_local():
    base = config.parse(EXAMPLE)
    cfg = config.parse(EXAMPLE + "\nruntime_dir: /run/x\nnotify:\n  - /usr/local/bin/tell\n"
                       "  - logger dnspair\nnotify_timeout: 2.5\nnotify_queue: 7\n")
    assert cfg.notify == ("/usr/local/bin/tell", "logger dnspair")
    assert (cfg.notify_timeout, cfg.notify_queue) == (2.5, 7)
    assert cfg.control.socket == "/run/x/control.sock" and base.control.socket == "/run/dnspair/control.sock"
    assert cfg.digest == base.digest, "node-local settings are not compared between the nodes"
    explicit = config.parse(EXAMPLE + "\nruntime_dir: /run/x\ncontrol: {socket: /run/y.sock}\n")
    assert explicit.control.socket == "/run/y.sock"
    for bad, key in (("notify: /bin/true", "notify"), ("notify: ['']", "notify"),
                     ("notify_timeout: 0", "notify_timeout"), ("runtime_dir: run", "runtime_dir")):
        with pytest.raises(config.ConfigError) as e:
            config.parse(EXAMPLE + "\n" + bad + "\n")
        assert f": {key}:" in str(e.value), str(e.value)
