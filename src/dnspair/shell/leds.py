"""Status LEDs and the button on the board (gpiozero).

green: healthy and serving its own VIP; amber blinking: holding the peer's VIP;
red: local DNS failed, the peer unheard, or a critical finding (the findings of
core/verdict.py). Short press: cleanup; hold: toggle standby.
Pins are a nicety: no GPIO means a warning and no LEDs, and a GPIO error is logged,
never raised, so heartbeats and failover carry on whatever the pins do.

The pin factory is chosen here, not by gpiozero's fallbacks: lgpio on the GPIO character device
whose label is the header's pin controller (its number moved between Pi 5 kernels), so no
/dev/gpiomem or /dev/mem is ever needed. GPIOZERO_PIN_FACTORY, if set, still wins (tests: mock).
"""
from __future__ import annotations

import array
import fcntl
import glob
import logging
import os
import re
import struct
import warnings
from typing import Any

from ..core import verdict

log = logging.getLogger("dnspair")


# Red keeps its meaning on the board: the peer unheard is only a warning for Nagios (the
# survivor serves both VIPs), but the person at the board must see the pair lost its partner.
NOT_GREEN = {"dns_failed", "standby", "starting"}  # on this node
DRIFT = {"zone_drift", "zone_unanswered", "dns_config_drift"}


def lights(st: dict) -> tuple[bool, bool, bool]:
    """(green, amber blinking, red) for a status dict, mapped from its findings
    (core/verdict.py). green: serving its own VIP and no finding in NOT_GREEN on this node;
    amber: a VIP away from home is on this node, or the binds differ; red: any critical finding, this node's
    DNS failed, or the peer unheard."""
    me = next(n for n in st["nodes"] if n["self"])["name"]
    found = verdict.read(st)
    here = {f.kind for f in found if f.node == me}
    own = any(v["owner"] == me and v["preferred"] == me for v in st["vips"])
    critical = any(f.severity == "critical" for f in found)
    green = own and not here & NOT_GREEN and not any(f.kind == "dns_failed_both" for f in found)
    # Both binds serving different names is the same kind of news as a VIP away: look soon.
    amber = "vip_away" in here or any(f.kind in DRIFT for f in found)
    red = critical or "dns_failed" in here or any(f.kind == "peer_unheard" for f in found)
    return green, amber, red


# The header's pin controller: Pi 1-3 and Zero (BCM2835/6/7), Pi 4 (BCM2711), Pi 5 (RP1).
HEADER_CHIPS = ("pinctrl-bcm2835", "pinctrl-bcm2711", "pinctrl-rp1")
# linux/gpio.h: struct gpiochip_info {char name[32]; char label[32]; __u32 lines;},
# GPIO_GET_CHIPINFO_IOCTL = _IOR(0xB4, 0x01, struct gpiochip_info)
_CHIPINFO_SIZE = 68
GPIO_GET_CHIPINFO_IOCTL = (2 << 30) | (_CHIPINFO_SIZE << 16) | (0xB4 << 8) | 0x01


class NoChip(Exception):
    pass


def chip_label(path: str) -> str:
    """The label the kernel gives a GPIO chip (what `gpiodetect` shows in brackets)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        buf = array.array("B", bytes(_CHIPINFO_SIZE))
        fcntl.ioctl(fd, GPIO_GET_CHIPINFO_IOCTL, buf, True)
    finally:
        os.close(fd)
    return buf.tobytes()[32:64].split(b"\0", 1)[0].decode(errors="replace")


def find_chip(paths: list[str] | None = None, label_of=chip_label) -> tuple[int, str]:
    """(N, label) of the /dev/gpiochipN that carries the header pins, found by its label.
    Chips this process may not open (the unit's DeviceAllow) or that answer no ioctl are skipped."""
    if paths is None:
        paths = glob.glob("/dev/gpiochip*")
    chips = sorted((int(m.group(1)), p) for p in paths
                   if (m := re.fullmatch(r"gpiochip(\d+)", os.path.basename(p))))
    seen = []
    for n, path in chips:
        try:
            label = label_of(path)
        except OSError as e:
            seen.append(f"{os.path.basename(path)}: {e.strerror or e}")
            continue
        if label in HEADER_CHIPS:
            return n, label
        seen.append(f"{os.path.basename(path)}: {label}")
    raise NoChip(f"no GPIO chip labelled {'/'.join(HEADER_CHIPS)}"
                 + (f" ({', '.join(seen)})" if seen else " (no /dev/gpiochip*)"))


def pin_factory():
    """gpiozero's lgpio factory on the header's chip; None when GPIOZERO_PIN_FACTORY is set
    (gpiozero then makes that one). Raises when there is no such chip or lgpio cannot open it."""
    if os.environ.get("GPIOZERO_PIN_FACTORY"):
        return None
    n, label = find_chip()
    from gpiozero.pins.lgpio import LGPIOFactory
    factory = LGPIOFactory(chip=n)
    log.info("GPIO: LGPIOFactory on /dev/gpiochip%d (%s)", n, label)
    return factory


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
                if self.factory is None:
                    revision_from_sysfs()   # before the factory reads the board's revision
                    self.factory = pin_factory()
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
