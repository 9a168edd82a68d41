"""LEDs and button on gpiozero's mock pins, driven by status dicts the engine really produces."""
import logging
import threading

from dnspair.core.config import Leds
from dnspair.core.status import build
from dnspair.shell import leds
from pairsim import Pair

PINS = Leds()  # the default pin map: green 17, amber 27, red 22, button 23


class Board:
    """A Panel on mock pins whose commands go to the engine of a simulated pair."""

    def __init__(self, factory, pair=None, node="dns-pm01", hold_time=3.0):
        self.pair = pair or Pair()
        self.node = node
        self.commands = []
        self.panel = leds.Panel(PINS, self.command, factory=factory, hold_time=hold_time, blink=0.01)
        assert self.panel.open()
        self.pin = {n: factory.pin(getattr(PINS, n)) for n in ("green", "amber", "red", "button")}

    def command(self, cmd):
        self.commands.append(cmd)
        self.pair.cmd(self.node, cmd)
        return {"ok": True, "message": "done"}

    def push(self, seconds=1.0):
        self.pair.run(seconds)
        self.panel.update(build(self.pair.e[self.node], self.pair.now, 1e9, 1))

    def lit(self):
        return {n: self.pin[n].state for n in ("green", "amber", "red")}

    def blinking(self, name="amber"):
        """The LED's pin toggles by itself (gpiozero's blink thread): wait for a few edges."""
        pin = self.pin[name]
        done = threading.Event()
        for _ in range(500):
            if sum(1 for a, b in zip(pin.states, pin.states[1:], strict=False) if a.state != b.state) >= 4:
                done.set()
                break
            done.wait(0.01)
        return done.is_set()


def test_lamp_test_lights_all_three_until_it_ends(factory):
    b = Board(factory)
    assert b.lit() == {"green": True, "amber": True, "red": True}
    b.push()  # a status arriving during the lamp test waits for its end
    assert b.lit() == {"green": True, "amber": True, "red": True}
    b.panel.end_lamp_test()
    assert b.lit() == {"green": True, "amber": False, "red": False}


def test_healthy_node_serving_its_own_vip_is_green_only(factory):
    b = Board(factory)
    b.panel.end_lamp_test()
    b.push()
    assert b.lit() == {"green": True, "amber": False, "red": False}


def test_holding_the_peers_vip_blinks_amber_and_peer_unheard_lights_red(factory):
    b = Board(factory)
    b.panel.end_lamp_test()
    b.push()
    b.pair.kill("dns-pm02")
    b.push()
    assert b.pin["green"].state and b.pin["red"].state
    assert b.blinking("amber")
    b.pair.restart("dns-pm02", 2)
    b.push(2.0)
    b.pin["amber"].clear_states()
    assert b.pin["red"].state is False  # peer heard again
    b.pair.cmd("dns-pm01", "cleanup")
    b.push()
    assert b.lit() == {"green": True, "amber": False, "red": False}, "VIP went home: amber stops"


def test_local_dns_failed_is_red_without_green_and_the_peer_sees_amber(factory):
    b = Board(factory)
    b.panel.end_lamp_test()
    b.push()
    b.pair.dns["dns-pm01"] = False
    b.push()
    assert b.lit() == {"green": False, "amber": False, "red": True}
    peer = leds.lights(build(b.pair.e["dns-pm02"], b.pair.now, 1e9, 1))
    assert peer == (True, True, False), "the peer serves its own VIP and holds ours"


def test_standby_turns_green_off(factory):
    b = Board(factory)
    b.panel.end_lamp_test()
    b.push()
    b.pair.cmd("dns-pm01", "standby")
    b.push()
    assert b.lit() == {"green": False, "amber": False, "red": False}


def test_short_press_runs_cleanup_and_is_logged(factory, caplog):
    b = Board(factory)
    b.panel.end_lamp_test()
    b.pair.dns["dns-pm01"] = False
    b.push()
    b.pair.dns["dns-pm01"] = True
    b.push()
    assert b.pair.e["dns-pm01"].failures
    with caplog.at_level(logging.INFO, logger="dnspair"):
        b.pin["button"].drive_low()
        b.pin["button"].drive_high()
    assert b.commands == ["cleanup"]
    assert not b.pair.e["dns-pm01"].failures
    assert "button short press: cleanup: done" in caplog.text
    b.push(2.0)
    assert b.lit() == {"green": True, "amber": False, "red": False}


def test_hold_toggles_standby_and_release_after_hold_does_not_clean_up(factory, caplog):
    b = Board(factory, hold_time=0.05)
    b.panel.end_lamp_test()
    b.push()
    held = threading.Event()
    b.panel.button.when_held = lambda: (b.panel._on_hold(), held.set())
    with caplog.at_level(logging.INFO, logger="dnspair"):
        b.pin["button"].drive_low()
        assert held.wait(10)
        b.pin["button"].drive_high()
        assert b.commands == ["standby"] and b.pair.e["dns-pm01"].standby
        b.push()
        held.clear()
        b.pin["button"].drive_low()
        assert held.wait(10)
        b.pin["button"].drive_high()
    assert b.commands == ["standby", "unstandby"] and not b.pair.e["dns-pm01"].standby
    assert "button hold: standby" in caplog.text and "button hold: unstandby" in caplog.text


def test_default_hold_time_is_three_seconds(factory):
    b = Board(factory)
    assert b.panel.button.hold_time == 3.0


def test_no_gpio_warns_once_and_runs_without(caplog, monkeypatch):
    from gpiozero.exc import BadPinFactory

    class NoGpio:
        def __getattr__(self, name):
            raise BadPinFactory("Unable to load any default pin factory!")
    with caplog.at_level(logging.WARNING, logger="dnspair"):
        p = leds.Panel(PINS, lambda c: {"ok": True}, factory=NoGpio())
        assert p.open() is False
    assert [r.message for r in caplog.records if "GPIO" in r.message] == [
        "no GPIO (BadPinFactory: Unable to load any default pin factory!): running without LEDs and button"]
    p.close()


def test_gpio_errors_are_logged_once_and_never_raised(factory, caplog):
    b = Board(factory)
    b.panel.end_lamp_test()

    class Broken:
        def __setattr__(self, name, value):
            raise OSError(5, "Input/output error")

        def blink(self, *a):
            raise OSError(5, "Input/output error")

        def close(self):
            raise OSError(5, "Input/output error")
    b.panel.leds["green"] = Broken()
    with caplog.at_level(logging.WARNING, logger="dnspair"):
        b.push()
        b.pair.kill("dns-pm02")
        b.push()
        b.panel.close()
    assert sum("LED error" in r.message for r in caplog.records) == 1


def test_button_action_errors_are_logged_not_raised(factory, caplog):
    def refuse(cmd):
        raise ValueError("the daemon is still starting; try again in a moment")
    p = leds.Panel(PINS, refuse, factory=factory)
    assert p.open()
    with caplog.at_level(logging.WARNING, logger="dnspair"):
        factory.pin(PINS.button).drive_low()
        factory.pin(PINS.button).drive_high()
    assert "button short press failed: the daemon is still starting" in caplog.text
    p.close()


def test_button_actions_run_in_the_daemon_loop_not_on_gpio_threads(factory):
    import asyncio

    async def main():
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        seen = []

        def command(cmd):
            seen.append((cmd, threading.get_ident()))
            done.set()
            return {"ok": True, "message": "done"}
        p = leds.Panel(PINS, command, loop.call_soon_threadsafe, factory=factory)
        assert p.open()
        pin = factory.pin(PINS.button)
        t = threading.Thread(target=lambda: (pin.drive_low(), pin.drive_high()))
        t.start()
        await asyncio.wait_for(done.wait(), 10)
        t.join()
        p.close()
        return seen, threading.get_ident()
    seen, loop_thread = asyncio.run(main())
    assert seen == [("cleanup", loop_thread)]


def test_close_darkens_the_leds_and_later_updates_are_ignored(factory):
    b = Board(factory)
    b.panel.end_lamp_test()
    b.push()
    assert b.pin["green"].state
    b.panel.close()
    assert b.lit() == {"green": False, "amber": False, "red": False}
    b.panel.end_lamp_test()  # the lamp-test timer may fire after a quick stop
    b.push()
    assert b.lit() == {"green": False, "amber": False, "red": False}


def test_the_board_revision_comes_from_sysfs_when_proc_hides_it(tmp_path, monkeypatch):
    """Under the unit's ProcSubset=pid, /proc/device-tree and /proc/cpuinfo are not there;
    the same device-tree property in /sys is what gpiozero then gets (0xa02082: a Pi 3B)."""
    import struct

    import gpiozero.pins.local as local

    from dnspair.shell import leds
    prop = tmp_path / "linux,revision"
    prop.write_bytes(struct.pack(">L", 0xA02082))
    monkeypatch.setattr(leds, "DT_REVISION", str(prop))
    monkeypatch.setattr(local, "get_pi_revision", local.get_pi_revision)   # undone after the test
    leds.revision_from_sysfs()
    assert local.get_pi_revision() == 0xA02082
    leds.revision_from_sysfs()   # twice (the panel reopened): still one layer
    assert local.get_pi_revision.__wrapped__.__module__ == "gpiozero.pins.local"
    prop.unlink()   # no device tree at all: gpiozero's own lookup, its own error
    try:
        got = local.get_pi_revision()
    except Exception as e:  # noqa: BLE001 - whatever gpiozero raises here, not ours
        assert "revision" in str(e).lower() or isinstance(e, OSError), e
    else:
        assert isinstance(got, int)
