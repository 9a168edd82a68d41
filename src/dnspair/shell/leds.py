"""Status LEDs and the button on the board (gpiozero).

green: healthy and serving its own VIP; amber blinking: holding the peer's VIP;
red: local DNS failed, the peer unheard, or a critical finding (the findings of
core/verdict.py). Short press: cleanup; hold: toggle standby.
Pins are a nicety: no GPIO means a warning and no LEDs, and a GPIO error is logged,
never raised, so heartbeats and failover carry on whatever the pins do.
"""
from __future__ import annotations

import logging
import struct
import warnings
from typing import Any

from ..core import verdict

log = logging.getLogger("dnspair")


# Red keeps its meaning on the board: the peer unheard is only a warning for Nagios (the
# survivor serves both VIPs), but the person at the board must see the pair lost its partner.
NOT_GREEN = {"dns_failed", "standby", "starting"}  # on this node


def lights(st: dict) -> tuple[bool, bool, bool]:
    """(green, amber blinking, red) for a status dict, mapped from its findings
    (core/verdict.py). green: serving its own VIP and no finding in NOT_GREEN on this node;
    amber: a VIP away from home is on this node; red: any critical finding, this node's
    DNS failed, or the peer unheard."""
    me = next(n for n in st["nodes"] if n["self"])["name"]
    found = verdict.read(st)
    here = {f.kind for f in found if f.node == me}
    own = any(v["owner"] == me and v["preferred"] == me for v in st["vips"])
    critical = any(f.severity == "critical" for f in found)
    green = own and not here & NOT_GREEN and not any(f.kind == "dns_failed_both" for f in found)
    amber = "vip_away" in here
    red = critical or "dns_failed" in here or any(f.kind == "peer_unheard" for f in found)
    return green, amber, red


# The board's revision as the firmware gives it in the device tree. gpiozero reads it from
# /proc/device-tree or /proc/cpuinfo, which the unit's ProcSubset=pid hides; /sys has it too.
DT_REVISION = "/sys/firmware/devicetree/base/system/linux,revision"


def revision_from_sysfs() -> None:
    """Make gpiozero find the board's revision in /sys when /proc does not show it."""
    try:
        import gpiozero.pins.local as local  # type: ignore[import-untyped]
    except ImportError:
        return
    original = getattr(local.get_pi_revision, "__wrapped__", local.get_pi_revision)

    def get_pi_revision() -> int:
        try:
            with open(DT_REVISION, "rb") as f:
                rev = struct.unpack(">L", f.read(4))[0]
        except (OSError, struct.error):
            return original()
        return rev & 0xFFFF if f"{rev:x}".startswith("100") else rev  # overvolted: as gpiozero does

    get_pi_revision.__wrapped__ = original  # type: ignore[attr-defined]
    local.get_pi_revision = get_pi_revision


class Panel:
    """command(cmd) -> control reply dict; schedule(fn, *args) runs fn in the daemon's loop
    (button callbacks arrive on gpiozero's threads)."""

    def __init__(self, pins, command, schedule=None, factory=None, hold_time: float = 3.0,
                 blink: float = 0.5):
        self.pins = pins
        self.command = command
        self.schedule = schedule or (lambda fn, *a: fn(*a))
        self.factory = factory
        self.hold_time = hold_time
        self.blink = blink
        self.leds: dict[str, Any] = {}
        self.button: Any = None
        self.last: dict | None = None
        self.shown: tuple[bool, bool, bool] | None = None
        self.lamp = False
        self._held = False
        self._warned = False

    def open(self) -> bool:
        """Claim the pins and start the lamp test; False (warned once) without GPIO."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # gpiozero's factory fallbacks: one line below says it
                from gpiozero import LED, Button
                if not self.factory:
                    revision_from_sysfs()
                kw = {"pin_factory": self.factory} if self.factory else {}
                for name in ("green", "amber", "red"):
                    self.leds[name] = LED(getattr(self.pins, name), **kw)
                self.button = Button(self.pins.button, hold_time=self.hold_time, **kw)
        except Exception as e:  # noqa: BLE001 - no GPIO on this machine: run without
            log.warning("no GPIO (%s: %s): running without LEDs and button", type(e).__name__, e)
            self.close()
            return False
        self.button.when_pressed = self._on_press
        self.button.when_held = self._on_hold
        self.button.when_released = self._on_release
        self.lamp = True
        self._set(True, True, True, lamp=True)
        return True

    def end_lamp_test(self) -> None:
        self.lamp = False
        self.shown = None
        self._show()

    def update(self, st: dict) -> None:
        """A daemon listener: called with the status dict after every change."""
        self.last = st
        if not self.lamp:
            self._show()

    def _show(self) -> None:
        if not self.leds:  # closed (stopping), or never opened
            return
        want = lights(self.last) if self.last else (False, False, False)
        if want != self.shown:
            self._set(*want)

    def _set(self, green: bool, amber: bool, red: bool, lamp: bool = False) -> None:
        try:
            self.leds["green"].value = green
            self.leds["red"].value = red
            if amber and not lamp:
                self.leds["amber"].blink(self.blink, self.blink)
            else:
                self.leds["amber"].value = amber
            self.shown = None if lamp else (green, amber, red)
        except Exception as e:  # noqa: BLE001 - a pin fault must not reach the daemon
            self.shown = None
            if not self._warned:
                self._warned = True
                log.warning("LED error (%s: %s); carrying on without them", type(e).__name__, e)

    # --- button (gpiozero threads) --------------------------------------------------------

    def _on_press(self) -> None:
        self._held = False

    def _on_hold(self) -> None:
        self._held = True
        self.schedule(self._act, "hold", None)

    def _on_release(self) -> None:
        if not self._held:
            self.schedule(self._act, "short press", "cleanup")

    def _act(self, how: str, cmd: str | None) -> None:
        """In the daemon's loop: the same path as the control socket."""
        try:
            if cmd is None:
                me: dict[str, Any] = (next((n for n in self.last["nodes"] if n["self"]), {})
                                      if self.last else {})
                cmd = "unstandby" if me.get("standby") else "standby"
            reply = self.command(cmd)
            log.info("button %s: %s: %s", how, cmd, reply.get("message") or reply.get("error"))
        except Exception as e:  # noqa: BLE001
            log.warning("button %s failed: %s", how, e)

    def close(self) -> None:
        for dev in [*self.leds.values(), self.button]:
            try:
                if dev is not None:
                    if dev is not self.button:
                        dev.off()  # a stopped daemon shows dark LEDs, not a stale state
                    dev.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self.leds, self.button = {}, None
