"""What the shell tells the engine: one typed event per thing that happened.

Each event is passed with `now` (monotonic seconds) to `Engine.handle`, which returns a
`Step`: the actions to carry out and the moment it next wants a `Tick`.
"""
from __future__ import annotations

from dataclasses import dataclass

from .saved import Saved

# The frequent events (ticks, datagrams, DNS results: ~30 a second) have slots: no __dict__.

@dataclass(frozen=True)
class Start:
    """The daemon is up: `held` are the VIP indexes already on our interfaces (adopted);
    `saved` what the state directory kept from the last run (None: nothing, or unreadable)."""
    held: frozenset[int] = frozenset()
    saved: Saved | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    """A deadline the engine asked for has come (or any wakeup with nothing else to say)."""


@dataclass(frozen=True, slots=True)
class Datagram:
    """A heartbeat datagram read from link `link`, from source address `src`."""
    link: int
    data: bytes
    src: str | None = None


@dataclass(frozen=True, slots=True)
class DnsResult:
    """The outcome of the DNS check the engine asked for with `CheckDns`."""
    ok: bool
    latency: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Carrier:
    interface: str
    up: bool


@dataclass(frozen=True)
class WitnessResult:
    ok: bool


@dataclass(frozen=True)
class Command:
    """An operator command: standby | unstandby | cleanup [vip] | move vip node |
    maintenance on|off|failed: WHY (text; `dnspair upgrade` sends it). Answered with one `Reply`."""
    cmd: str
    vip: str | None = None
    node: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class ClaimFailed:
    """The shell could not add VIP `vip` to its interface."""
    vip: int
    error: str


@dataclass(frozen=True, slots=True)
class Listening:
    """The answer to `CheckListening`: whether bind has its UDP socket on VIP `vip` yet (or on
    the wildcard address)."""
    vip: int
    yes: bool


@dataclass(frozen=True)
class Resumed:
    """The process was stopped and continued (SIGCONT): what we know of the peer is stale."""


# A serial as bind gave it: an int; a string when bind answered without the zone
# ("SERVFAIL", "not authoritative"); None when nothing answered.
Seen = int | str | None


@dataclass(frozen=True)
class ZoneSerials:
    """The answer to `CheckZones`: per local zone (and the catalog zone) (zone, this node's
    serial, the peer's); the config digest each bind carries (mine, the peer's); the digest
    this node's config renders; the node primary for the zones here; and bind's own error
    line for each zone whose file does not load on this node."""
    zones: tuple[tuple[str, Seen, Seen], ...]
    digests: tuple[Seen, Seen] = (None, None)
    rendered: str | None = None
    primary: str | None = None
    errors: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Stop:
    """Orderly stop: release everything, say bye (repeated), then `Stopped`."""


Event = (Start | Tick | Datagram | DnsResult | Carrier | WitnessResult | Command | ClaimFailed | Listening
         | Resumed | ZoneSerials | Stop)
