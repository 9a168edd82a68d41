"""Who counts as a live peer: the incarnation handshake.

Every heartbeat carries the sender's incarnation and *echoes* the incarnation of ours it last
heard. A peer is live only while its heartbeats echo our current incarnation: a datagram
recorded before we started cannot, so a replay from the past never poses as a live peer,
and no value of the peer's own incarnation can lock it out (incarnations are not ordered).

Which peer incarnation we echo (`target`) and which one is live (`established`):
* a message that echoes us establishes its incarnation, unless another established one is
  still heard; then only a higher start counter (the peer restarted) takes over at once,
  and anything else waits until the established one has been silent for the dead time;
* a message that does not echo us (the peer started, or we did) makes us echo it under the
  same rule, so the peer hears its own incarnation from us within one round trip.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import wire

LIVE, LEARN, STALE = "live", "learn", "stale"


@dataclass
class Liveness:
    dead_time: float
    established: int | None = None
    established_heard: float | None = None
    target: int = 0

    def _may_replace(self, inc: int, now: float) -> bool:
        cur = self.established
        if cur is None or inc == cur:
            return True
        if self.established_heard is None or now - self.established_heard > self.dead_time:
            return True
        return wire.counter_of(inc) > wire.counter_of(cur)

    def receive(self, inc: int, echo: int, ours: int, now: float) -> str:
        """LIVE: apply the message's view. LEARN: it has not heard us yet; answer it.
        STALE: an incarnation that may not replace the live one (yet)."""
        if not self._may_replace(inc, now):
            return STALE
        self.target = inc
        if echo != ours:
            return LEARN
        self.established, self.established_heard = inc, now
        return LIVE

    def forget(self) -> None:
        """The live incarnation said bye: the next start of the peer may be anything."""
        self.established = self.established_heard = None
