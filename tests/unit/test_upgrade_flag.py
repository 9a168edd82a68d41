"""The maintenance flag: on the wire (bit 4 of the flags byte, compatible within version 2), in
the engine (kept across a restart with standby), in the status model and the verdict."""
import hmac

import pytest

from dnspair.core import config, saved, status, wire
from dnspair.core import events as E
from pairsim import Pair

KEY = b"k" * 32


def test_the_flag_roundtrips_in_bit_4_and_the_size_does_not_change():
    base = wire.Message(cluster="clst-01", sender="dns-pm01", incarnation=5, seq=7, nvips=2)
    plain = wire.encode(base, KEY)
    flagged = wire.encode(base._replace(maintenance=True), KEY)
    assert len(plain) == len(flagged)
    off = 40 + 1 + len("clst-01") + 1 + len("dns-pm01")
    assert flagged[off] ^ plain[off] == wire.F_MAINTENANCE == 16
    assert wire.decode(flagged, KEY, "clst-01").maintenance
    assert not wire.decode(plain, KEY, "clst-01").maintenance


def test_setting_bit_4_changes_nothing_else_a_decoder_reads():
    # Decoders read the flags by mask, so one from before the bit decodes such a datagram alike.
    m = wire.Message(cluster="clst-01", sender="dns-pm01", incarnation=5, seq=7, nvips=2, dns_ok=True,
                     ready=True, standby=True)
    data = bytearray(wire.encode(m, KEY))
    off = 40 + 1 + len("clst-01") + 1 + len("dns-pm01")
    data[off] |= wire.F_MAINTENANCE
    body = bytes(data[:-32])
    got = wire.decode(body + hmac.new(KEY, body, "sha256").digest(), KEY, "clst-01")
    plain = wire.decode(wire.encode(m, KEY), KEY, "clst-01")
    assert got.maintenance and not plain.maintenance
    assert got._replace(maintenance=False) == plain


def ready_pair():
    p = Pair()
    p.run(2.0)
    return p


def test_peer_sees_the_flag_and_refuses_its_own_while_it_is_up():
    p = ready_pair()
    a, b = p.names
    p.deliver(a, E.Command("maintenance", text="on"))
    assert p.replies[-1].ok, p.replies[-1].text
    p.run(0.5)
    st_b = status.build(p.e[b], p.now, 1000.0)
    peer = next(n for n in st_b["nodes"] if n["name"] == a)
    assert peer["maintenance"] is True
    assert [f["kind"] for f in st_b["findings"]] == ["maintenance"]
    p.deliver(b, E.Command("maintenance", text="on"))
    assert not p.replies[-1].ok and "one node at a time" in p.replies[-1].text
    p.deliver(a, E.Command("maintenance", text="off"))
    p.run(0.5)
    nodes = status.build(p.e[b], p.now, 1000.0)["nodes"]
    assert not next(n for n in nodes if n["name"] == a)["maintenance"]
    p.deliver(b, E.Command("maintenance", text="on"))
    assert p.replies[-1].ok


def test_maintenance_and_its_standby_survive_a_restart_and_unstandby_ends_both():
    p = ready_pair()
    a, _ = p.names
    p.deliver(a, E.Command("maintenance", text="on"))
    p.cmd(a, "standby")
    p.run(1.0)
    snap = p.e[a].snapshot()
    assert snap.maintenance and snap.standby
    cfg = config.parse(open(__file__.rsplit("/tests/", 1)[0] + "/example/dnspair.yaml").read())
    back = saved.from_json(saved.to_json(snap, cfg, 100.0), cfg, 100.0)
    assert back.maintenance and back.standby
    # plain standby is not kept (as before): only during maintenance
    assert not saved.from_json(saved.to_json(saved.Saved(standby=True), cfg, 0.0), cfg, 0.0).standby
    e = p.e[a].__class__(p.cfg, a, p.e[a].key, wire.incarnation(2, 9), p.now)
    e.handle(p.now, E.Start(frozenset(), back))
    assert e.maintenance and e.standby
    e.handle(p.now, E.Command("unstandby"))
    assert not e.maintenance and not e.standby


def test_a_failed_upgrade_is_a_failed_action_until_cleanup():
    p = ready_pair()
    a, _ = p.names
    p.deliver(a, E.Command("maintenance", text="failed: apt-get upgrade failed: E: broken"))
    assert p.replies[-1].ok
    st = status.build(p.e[a], p.now, 1000.0)
    assert [(f["what"], f["why"]) for f in st["failed_actions"]] == [
        ("upgrade", "apt-get upgrade failed: E: broken")]
    p.cmd(a, "cleanup")
    p.run(0.3)
    assert status.build(p.e[a], p.now, 1000.0)["failed_actions"] == []


@pytest.mark.parametrize("text", ["", "maybe", None])
def test_bad_maintenance_arguments_are_refused(text):
    p = ready_pair()
    p.deliver(p.names[0], E.Command("maintenance", text=text))
    assert not p.replies[-1].ok and "on, off or failed" in p.replies[-1].text
