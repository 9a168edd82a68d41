"""Are both nodes' bind serving the same thing? A pure tracker of what each side says.

Fed observations with `now` (the engine's clock): per local zone, the SOA serial this node's
bind answers and the peer's (an int; a string when bind answers without the zone, e.g.
"SERVFAIL"; None when nothing answered), and the same for the config digest each bind carries.
A difference counts only once it has lasted `after` seconds (a transfer takes a moment); an
unknown side (the peer unreachable: that is another finding) stops the clock.

A peer that is heard (heartbeats flow) but whose bind does not answer (port 53 blocked,
allow-query) would otherwise hide any drift for ever: that silence has a clock of its own,
counted by the same `after`.
"""
from __future__ import annotations

from dataclasses import dataclass

from .events import Seen


def serial_newer(a: int, b: int) -> bool:
    """RFC 1982 serial arithmetic: is `a` after `b`?"""
    return a != b and (a - b) % (1 << 32) < (1 << 31)


@dataclass
class Item:
    mine: Seen = None
    peer: Seen = None
    since: float | None = None   # differing since (both sides known)
    silent_since: float | None = None   # the peer heard, its bind not answering, since

    def differing_for(self, now: float) -> float | None:
        return None if self.since is None else now - self.since

    def silent_for(self, now: float) -> float | None:
        return None if self.silent_since is None else now - self.silent_since


class Drift:
    def __init__(self, after: float):
        self.after = after
        self.items: dict[str, Item] = {}

    def observe(self, now: float, what: str, mine: Seen, peer: Seen, peer_heard: bool = False) -> None:
        """`peer_heard`: the peer node is alive, so its bind's silence is news (False for items
        whose "peer" is not the peer's bind, and while the peer is unheard: peer_unheard)."""
        it = self.items.setdefault(what, Item())
        it.mine, it.peer = mine, peer
        if mine is None or peer is None or mine == peer:
            it.since = None
        elif it.since is None:
            it.since = now
        if peer is not None or not peer_heard:
            it.silent_since = None
        elif it.silent_since is None:
            it.silent_since = now

    def forget(self, keep: set[str]) -> None:
        for what in [w for w in self.items if w not in keep]:
            del self.items[what]

    def drifted(self, now: float) -> list[str]:
        """What has differed for longer than `after`, in name order."""
        if not self.items:
            return []   # asked at every wakeup: most of them before any zone check answered
        return sorted(w for w, it in self.items.items()
                      if it.since is not None and now - it.since > self.after)

    def silent(self, now: float) -> list[str]:
        """What the heard peer's bind has not answered for longer than `after`, in name order."""
        return sorted(w for w, it in self.items.items()
                      if it.silent_since is not None and now - it.silent_since > self.after)

    def next_due(self, now: float) -> float | None:
        """When a difference or a silence still inside its grace time will count."""
        if not self.items:
            return None
        starts = [t for it in self.items.values() for t in (it.since, it.silent_since) if t is not None]
        due = [t + self.after for t in starts if t + self.after >= now]
        return min(due) + 1e-6 if due else None
