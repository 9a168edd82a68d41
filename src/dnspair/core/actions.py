"""What the engine tells the shell to do. The shell carries them out in order."""
from __future__ import annotations

from dataclasses import dataclass, field

from .saved import Saved


@dataclass(frozen=True)
class Claim:
    """Add VIP `vip` to its interface (without duplicate address detection)."""
    vip: int


@dataclass(frozen=True)
class CheckListening:
    """Look, once and now (after the claims before it are carried out), whether bind has its
    socket on VIP `vip`; the answer comes back as a `Listening` event. The engine asks again
    at its own cadence until bind listens or its bound runs out (engine.LISTEN_POLL)."""
    vip: int


@dataclass(frozen=True)
class Release:
    """Remove VIP `vip` from its interface, and stop announcing it."""
    vip: int


@dataclass(frozen=True)
class Announce:
    """Send a burst of gratuitous ARP for VIP `vip` (replacing any burst still running).
    `refresh`: one announcement only, and none while a burst for it still runs."""
    vip: int
    refresh: bool = False


@dataclass(frozen=True)
class Send:
    """Send this datagram (already encoded and signed) to the peer on every link."""
    data: bytes
    kind: str = "heartbeat"   # heartbeat | probe | bye


@dataclass(frozen=True)
class CheckDns:
    """Send one DNS check now, replacing any still unanswered; its outcome comes back as a
    `DnsResult` event (a hung bind sends none: the engine judges the timeout).
    `forget`: answers to earlier queries no longer count (they may predate a stall)."""
    forget: bool = False


@dataclass(frozen=True)
class CheckWitness:
    """Ask the witness now; the outcome comes back as a `WitnessResult` event."""


@dataclass(frozen=True)
class CheckZones:
    """Ask both binds for their local zones' serials; the answer comes back as `ZoneSerials`
    (one check at a time: the shell skips this while one is still out)."""


@dataclass(frozen=True)
class Notify:
    """A line for systemd's notify socket: READY=1, WATCHDOG=1, STATUS=..., STOPPING=1."""
    text: str


@dataclass(frozen=True)
class Reply:
    """The answer to a `Command`."""
    ok: bool
    text: str


@dataclass(frozen=True)
class Log:
    text: str
    level: str = "info"


@dataclass(frozen=True)
class Save:
    """The state to keep across restarts changed: write it (atomically) to the state directory."""
    state: Saved


@dataclass(frozen=True)
class Transition:
    """Something an operator may want to hear about happened (docs/config.md, notify).

    kind: vip_claimed | failover (a claim from a failed, dead or unreachable peer) |
    vip_released | peer_lost | peer_found | dns_failed | dns_healthy | standby | unstandby |
    config_mismatch | config_match. `number` goes up by one per transition, across restarts
    while the state directory is kept. `role` is this node's after it: active (holds a VIP),
    backup, standby or failed (its DNS check fails). `code` is the reason for machines (a
    metric label), `reason` for people. `duration`: for a claim, from the moment this node
    had cause to take the VIP (the peer's last heartbeat, its yield, its failure) to the claim;
    for a hand-over, from its start to the release."""
    number: int
    kind: str
    at: float
    role: str
    code: str
    reason: str
    vip: str | None = None
    old_owner: str | None = None
    new_owner: str | None = None
    duration: float | None = None


@dataclass(frozen=True)
class Stopped:
    """The orderly stop is complete: the shell may exit."""


Action = (Claim | CheckListening | Release | Announce | Send | CheckDns | CheckWitness | CheckZones | Notify
          | Reply | Log | Save | Transition | Stopped)


@dataclass
class Step:
    """One call's result: actions in order, and when to call again with `Tick` (None: never)."""
    actions: list[Action] = field(default_factory=list)
    wake_at: float | None = None
