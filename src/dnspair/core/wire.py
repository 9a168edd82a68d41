"""Heartbeat wire format (docs/protocol.md describes it byte by byte).

Pure: `encode` and `decode` work on bytes and a key; `SeqMemory` decides what is fresh.
Anything that does not decode cleanly raises `Dropped` with a short reason that the shell
counts; it never changes state.
"""
from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import NamedTuple

MAGIC = b"DP"
VERSION = 2
MAC_LEN = 32
MAX_DATAGRAM = 512
MAX_VIPS = 16

HEARTBEAT, PROBE, BYE = 1, 2, 3
TYPES = {HEARTBEAT: "heartbeat", PROBE: "probe", BYE: "bye"}

# flags
F_DNS_OK, F_STANDBY, F_WITNESS_OK, F_READY = 1, 2, 4, 8
# Added within version 2: a decoder that predates it ignores the bit (flags are read by mask).
F_MAINTENANCE = 16

_HEAD = struct.Struct("!2sBBQQQQI")  # magic, version, type, incarnation, echo, seq, ack_seq, ack_delay_us
_VIEW = struct.Struct("!BHIIBHHHHB8sIBHHB")  # flags, cfail, tfail, latency_us, nvips, held, yielding,
#                                           sticky, available, links_mask, digest, admin_counter,
#                                           admin_node, admin_cleanup_mask, released, release_epoch
#                                           admin_node, admin_cleanup_mask


U32 = 0xFFFFFFFF
U64 = 0xFFFFFFFFFFFFFFFF


def incarnation(counter: int, nonce: int) -> int:
    """A start's identity: the persisted start counter (high 32 bits) and 32 random bits.

    Never the wall clock: a Pi without a real-time clock boots "in the past". The counter
    orders restarts of one node; the nonce makes a start unique even if the counter was lost.
    """
    return (counter & U32) << 32 | (nonce & U32)


def counter_of(inc: int) -> int:
    return inc >> 32 & U32


def serial_newer(a: int, b: int) -> bool:
    """a is newer than b in 32-bit serial number arithmetic (RFC 1982): counters wrap."""
    d = (a - b) & U32
    return 0 < d < 0x80000000


class Dropped(Exception):
    """A datagram that is not a valid, fresh heartbeat. `reason` is a counter name."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Admin:
    """Operator state shared by both nodes; the higher (counter, node) wins everywhere.

    pins: per VIP, 0 = none, 1 + index of the node in name order it is pinned to (dnspair move).
    cleanup_mask: VIPs whose failover stickiness this change cleared (dnspair cleanup).
    cleanup_all: the change also cleared failure counts (a plain `dnspair cleanup`).
    """
    counter: int = 0
    node: int = 0
    pins: tuple[int, ...] = ()
    cleanup_mask: int = 0
    cleanup_all: bool = False

    def newer_than(self, other: Admin) -> bool:
        """Counters wrap (serial arithmetic), so no value a peer sends can stop new commands."""
        if self.counter == other.counter:
            return self.node > other.node
        return serial_newer(self.counter, other.counter)

    def next(self, node: int, pins: tuple[int, ...], cleanup_mask: int = 0,
             cleanup_all: bool = False) -> Admin:
        # 0 is every node's starting version: a wrapped counter skips it, or the change
        # would look no newer than "nothing yet" to a node that never saw the ones before.
        return Admin((self.counter + 1) & U32 or 1, node, pins, cleanup_mask, cleanup_all)


class Message(NamedTuple):
    """One datagram's content. A named tuple, not a dataclass: a node builds twenty a second
    (ten sent, ten read), and a frozen dataclass costs four times as much to build."""
    cluster: str
    sender: str
    incarnation: int
    seq: int
    type: int = HEARTBEAT
    echo: int = 0          # the peer incarnation the sender last heard (0: none yet)
    ack_seq: int = 0
    ack_delay_us: int = 0
    dns_ok: bool = False
    standby: bool = False
    witness_ok: bool = True
    ready: bool = False
    maintenance: bool = False   # an upgrade (or other maintenance) is under way on the sender
    consecutive_failures: int = 0
    total_failures: int = 0
    dns_latency_us: int = 0
    nvips: int = 0
    held: int = 0          # bit i: VIP i is on this node's interface
    yielding: int = 0      # bit i: held, but this node agrees the peer should own it
    sticky: int = 0        # bit i: held and not to be taken back by preference alone
    available: int = 0     # bit i: this node can hold VIP i (carrier up, not in standby)
    links_mask: int = 0    # bit k: link k has heard the peer recently
    released: int = 0      # bit i: this node let go of VIP i lately (the owner re-announces)
    release_epoch: int = 0  # +1 (mod 256) at each such release: a new one to act on
    digest: bytes = b"\0" * 8
    admin: Admin = Admin()   # frozen: one default shared by all is safe


def encode(msg: Message, key: bytes) -> bytes:
    return Codec(key, msg.cluster).encode(msg)


def decode(data: bytes, key: bytes, cluster: str) -> Message:
    """Authenticate first, then parse: nothing unauthenticated is ever looked at further."""
    return Codec(key, cluster).decode(data)


class Codec:
    """`encode` and `decode` for one key and cluster. An engine keeps one: the key's HMAC
    state is set up once and copied per datagram, and the layout of a datagram (names and
    VIP count fixed) is compiled once, instead of ten times a second each way."""

    def __init__(self, key: bytes, cluster: str):
        self.cluster = cluster
        self._mac = hmac.new(key, digestmod=hashlib.sha256)
        self._layouts: dict[tuple[int, int, int], struct.Struct] = {}
        self._admin = Admin()   # the last one decoded: the peer's rarely changes

    def sign(self, body: bytes) -> bytes:
        mac = self._mac.copy()
        mac.update(body)
        return mac.digest()

    def _layout(self, clen: int, slen: int, nvips: int) -> struct.Struct:
        """The whole body as one struct: head, cluster, sender, view, pins (docs/protocol.md)."""
        k = (clen, slen, nvips)
        lay = self._layouts.get(k)
        if lay is None:
            lay = struct.Struct(f"{_HEAD.format}B{clen}sB{slen}s{_VIEW.format[1:]}{nvips}s")
            if len(self._layouts) < 8:   # the peer's and ours; anything else is not kept
                self._layouts[k] = lay
        return lay

    def encode(self, msg: Message) -> bytes:
        cluster = msg.cluster.encode()
        sender = msg.sender.encode()
        admin = msg.admin
        nvips = msg.nvips
        flags = ((F_DNS_OK if msg.dns_ok else 0) | (F_STANDBY if msg.standby else 0)
                 | (F_WITNESS_OK if msg.witness_ok else 0) | (F_READY if msg.ready else 0)
                 | (F_MAINTENANCE if msg.maintenance else 0)
                 | (0x80 if admin.cleanup_all else 0))
        # Short fields ("8s", the pins) are padded with zeros by struct, long ones cut.
        body = self._layout(len(cluster), len(sender), nvips).pack(
            MAGIC, VERSION, msg.type, msg.incarnation & U64, msg.echo & U64, msg.seq & U64,
            msg.ack_seq & U64, max(0, min(msg.ack_delay_us, U32)),
            len(cluster), cluster, len(sender), sender,
            flags, min(msg.consecutive_failures, 0xFFFF), min(msg.total_failures, U32),
            max(0, min(msg.dns_latency_us, U32)), nvips, msg.held, msg.yielding, msg.sticky,
            msg.available, msg.links_mask, msg.digest, admin.counter & U32, admin.node,
            admin.cleanup_mask, msg.released, msg.release_epoch & 0xFF,
            bytes(admin.pins[:nvips]),
        )
        return body + self.sign(body)

    def decode(self, data: bytes) -> Message:
        """Authenticate first, then parse: nothing unauthenticated is ever looked at further."""
        if len(data) > MAX_DATAGRAM:
            raise Dropped("oversized", f"{len(data)} bytes")
        if len(data) < _HEAD.size + 2 + _VIEW.size + MAC_LEN:
            raise Dropped("truncated", f"{len(data)} bytes")
        body, mac = data[:-MAC_LEN], data[-MAC_LEN:]
        if body[:2] != MAGIC:
            raise Dropped("malformed", "bad magic")
        if body[2] != VERSION:
            raise Dropped("bad_version", f"version {body[2]}")
        if not hmac.compare_digest(mac, self.sign(body)):
            raise Dropped("bad_mac")
        try:
            magic, version, mtype, inc, echo, seq, ack_seq, ack_delay = _HEAD.unpack_from(body, 0)
            off = _HEAD.size
            clen = body[off]
            mcluster = body[off + 1: off + 1 + clen].decode()
            off += 1 + clen
            slen = body[off]
            sender = body[off + 1: off + 1 + slen].decode()
            off += 1 + slen
            (flags, cfail, tfail, lat, nvips, held, yielding, sticky, available, links, digest,
             acounter, anode, amask, released, repoch) = _VIEW.unpack_from(body, off)
            off += _VIEW.size
            pins = tuple(body[off: off + nvips])
            off += nvips
        except (struct.error, IndexError, UnicodeDecodeError) as e:
            raise Dropped("malformed", str(e)) from e
        if off != len(body) or len(pins) != nvips:
            raise Dropped("malformed", "length mismatch")
        if mtype not in TYPES:
            raise Dropped("malformed", f"type {mtype}")
        if nvips > MAX_VIPS or (pins and max(pins) > 2):
            raise Dropped("malformed", "VIP fields out of range")
        if mcluster != self.cluster:
            raise Dropped("wrong_cluster", mcluster)
        low = (1 << nvips) - 1   # bits past the VIP count mean nothing
        admin = self._admin
        if (admin.counter, admin.node, admin.pins, admin.cleanup_mask, admin.cleanup_all) != (
                acounter, anode, pins, amask & low, bool(flags & 0x80)):
            admin = self._admin = Admin(acounter, anode, pins, amask & low, bool(flags & 0x80))
        return Message(
            cluster=mcluster, sender=sender, incarnation=inc, seq=seq, type=mtype, echo=echo,
            ack_seq=ack_seq, ack_delay_us=ack_delay, dns_ok=bool(flags & F_DNS_OK),
            standby=bool(flags & F_STANDBY), witness_ok=bool(flags & F_WITNESS_OK),
            ready=bool(flags & F_READY), maintenance=bool(flags & F_MAINTENANCE),
            consecutive_failures=cfail, total_failures=tfail,
            dns_latency_us=lat, nvips=nvips, held=held & low, yielding=yielding & low,
            sticky=sticky & low, available=available & low, links_mask=links, digest=digest,
            released=released & low, release_epoch=repoch,
            admin=admin,
        )


class SeqMemory:
    """The newest seq seen from each of the last `size` incarnations of one peer.

    A datagram is fresh when its seq is higher than any seen before from its incarnation.
    Incarnations are not ordered (a new one may be "smaller"), so any incarnation not seen
    before is fresh: it cannot pose as a live peer, because liveness needs the echo of our
    own incarnation (see `core/liveness.py`).
    """

    def __init__(self, size: int = 64):
        self.size = size
        self.newest: dict[int, int] = {}

    def fresh(self, incarnation: int, seq: int) -> bool:
        last = self.newest.get(incarnation)
        return last is None or seq > last

    def accept(self, incarnation: int, seq: int) -> None:
        known = incarnation in self.newest
        self.newest[incarnation] = seq
        if not known and len(self.newest) > self.size:
            del self.newest[next(iter(self.newest))]   # dicts keep insertion order: the oldest
