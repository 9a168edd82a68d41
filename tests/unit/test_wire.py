import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnspair.core import wire

KEY = b"k" * 32


def msg(**kw):
    base = dict(cluster="clst-01", sender="dns-pm01", incarnation=5, seq=7, nvips=2, held=1,
                dns_ok=True, admin=wire.Admin(3, 1, (0, 2), 1, True))
    base.update(kw)
    return wire.Message(**base)


def test_roundtrip_keeps_every_field():
    m = msg(standby=True, yielding=1, sticky=2, available=3, links_mask=1, ack_seq=4, ack_delay_us=99,
            consecutive_failures=2, total_failures=9, dns_latency_us=1234, digest=b"12345678", ready=True)
    assert wire.decode(wire.encode(m, KEY), KEY, "clst-01") == m


@pytest.mark.parametrize("mutate,reason", [
    (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "bad_mac"),
    (lambda d: d[:40], "truncated"),
    (lambda d: d + b"x" * 600, "oversized"),
    (lambda d: b"XX" + d[2:], "malformed"),
    (lambda d: d[:2] + b"\x09" + d[3:], "bad_version"),
    (lambda d: d[:30] + bytes([d[30] ^ 0x40]) + d[31:], "bad_mac"),
])
def test_tampering_is_dropped_with_a_reason(mutate, reason):
    data = wire.encode(msg(), KEY)
    with pytest.raises(wire.Dropped) as e:
        wire.decode(mutate(data), KEY, "clst-01")
    assert e.value.reason == reason


def test_wrong_key_and_wrong_cluster():
    data = wire.encode(msg(), KEY)
    with pytest.raises(wire.Dropped, match="bad_mac"):
        wire.decode(data, b"x" * 32, "clst-01")
    with pytest.raises(wire.Dropped, match="wrong_cluster"):
        wire.decode(data, KEY, "other")


@settings(max_examples=500)
@given(st.binary(max_size=700))
def test_garbage_never_decodes(data):
    with pytest.raises(wire.Dropped):
        wire.decode(data, KEY, "clst-01")


@settings(max_examples=300)
@given(st.integers(0, 200), st.integers(0, 255))
def test_any_single_byte_change_is_caught(pos, xor):
    data = bytearray(wire.encode(msg(), KEY))
    pos %= len(data)
    if xor == 0:
        return
    data[pos] ^= xor
    with pytest.raises(wire.Dropped):
        wire.decode(bytes(data), KEY, "clst-01")


def test_seq_memory_takes_each_seq_once_per_incarnation_in_any_incarnation_order():
    g = wire.SeqMemory(size=2)
    assert g.fresh(10, 1)
    g.accept(10, 1)
    assert not g.fresh(10, 1) and g.fresh(10, 2)
    assert g.fresh(9, 100), "a smaller incarnation is not a replay: clocks and counters go back"
    assert g.fresh(2**64 - 1, 1)
    g.accept(2**64 - 1, 1)
    g.accept(9, 100)
    assert g.fresh(10, 1), "only the last `size` incarnations are remembered"


def test_incarnation_is_counter_and_nonce_and_admin_counters_wrap():
    inc = wire.incarnation(7, 0xDEADBEEF)
    assert wire.counter_of(inc) == 7 and inc & 0xFFFFFFFF == 0xDEADBEEF
    top = wire.Admin(0xFFFFFFFF, 1, (0, 0))
    nxt = top.next(0, (0, 0))
    assert nxt.counter == 1 and nxt.newer_than(top) and not top.newer_than(nxt)
    assert nxt.newer_than(wire.Admin(0, 1)), "newer than a node's starting version too"
    assert wire.Admin(5, 1).newer_than(wire.Admin(5, 0))
    data = wire.encode(wire.Message(cluster="c", sender="s", incarnation=2**64 - 1, seq=2**64 - 1,
                                    echo=2**64 - 1, nvips=0, admin=top), KEY)
    m = wire.decode(data, KEY, "c")
    assert (m.incarnation, m.seq, m.echo, m.admin.counter) == (2**64 - 1, 2**64 - 1, 2**64 - 1, 0xFFFFFFFF)


def test_documented_size_of_the_seed_heartbeat():
    # docs/protocol.md: 40 fixed + 1+7 cluster + 1+8 sender + 39 view + 2 pins + 32 MAC
    m = wire.Message(cluster="clst-01", sender="dns-pm01", incarnation=1, seq=1, nvips=2)
    data = wire.encode(m, KEY)
    assert len(data) == 130
    assert data[:2] == b"DP" and data[2] == 2 and data[3] == wire.HEARTBEAT
    assert data[40] == 7 and data[41:48] == b"clst-01" and data[48] == 8
