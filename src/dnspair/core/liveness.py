"""Who counts as a live peer: the incarnation handshake.

Every heartbeat carries the sender's incarnation and *echoes* the incarnation of ours it last
heard. A peer is live only while its heartbeats echo our current incarnation: a datagram
recorded before we started cannot, so a replay from the past never poses as a live peer,
and no value of the peer's own incarnation can lock it out (incarnations are not ordered).

Which peer incarnation we echo (`target`) and which one is live (`established`):
* a message that echoes us establishes its incarnation. While another established one is
  still heard, it takes over at once only if it has a higher start counter (the peer
  restarted), or if it was never established before (it heard us after we started, so it
  is a live process, not a recording: a restart whose state directory was lost) and the
  live one has been quiet past `quiet` (0 in the engine: the fresh-ack rule keeps stray datagrams out);
  an incarnation
  that was live before and went quiet waits until the live one is silent for the dead time;
* a message that does not echo us (the peer started, or we did) makes us echo it if the
  live one is silent or its start counter is higher. Otherwise the new one learns our
  incarnation from our heartbeats and echoes it, which establishes it by the rule above.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import wire

REMEMBER = 64   # incarnations that were live, kept to refuse their replays a quick return

LIVE, LEARN, STALE = "live", "learn", "stale"


@dataclass
class Liveness:
    dead_time: float
    quiet: float = 0.0
    established: int | None = None
    established_heard: float | None = None
    target: int = 0
    was_live: dict[int, None] = field(default_factory=dict)

    def _may_replace(self, inc: int, now: float, echoes_us: bool) -> bool:
        cur = self.established
        if cur is None or inc == cur:
            return True
        if self.established_heard is None or now - self.established_heard > self.dead_time:
            return True
        if echoes_us and inc not in self.was_live and now - self.established_heard > self.quiet:
            return True
        return wire.counter_of(inc) > wire.counter_of(cur)

    def receive(self, inc: int, echo: int, ours: int, now: float) -> str:
        """LIVE: apply the message's view. LEARN: it has not heard us yet; answer it.
        STALE: an incarnation that may not replace the live one (yet)."""
        echoes_us = echo == ours
        if not self._may_replace(inc, now, echoes_us):
            return STALE
        self.target = inc
        if not echoes_us:
            return LEARN
        if inc != self.established:
            self.was_live[inc] = None
            if len(self.was_live) > REMEMBER:
                del self.was_live[next(iter(self.was_live))]
        self.established, self.established_heard = inc, now
        return LIVE

    def forget(self) -> None:
        """The live incarnation said bye: the next start of the peer may be anything."""
        self.established = self.established_heard = None
