"""Which pin factory and chip shell/leds.py picks. The real chips exist only on a Pi (and under
qemu's Pi boards: tests/image/test_raspi.py); here the chips' labels and lgpio's factory are
stand-ins and the pins are gpiozero's MockFactory."""
import logging
import os

import gpiozero.pins.lgpio
import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from dnspair.core.config import Leds
from dnspair.shell import leds

LABELS = {"gpiochip0": "raspberrypi-exp-gpio", "gpiochip2": "gpio-sim", "gpiochip4": "pinctrl-rp1",
          "gpiochip10": "pinctrl-bcm2835"}


def label_of(path):
    name = os.path.basename(path)
    if name == "gpiochip1":
        raise PermissionError(1, "Operation not permitted")  # what the unit's DeviceAllow does
    return LABELS[name]


def test_the_header_chip_is_found_by_its_label_not_its_number():
    paths = [f"/dev/{n}" for n in ("gpiochip10", "gpiochip1", "gpiochip0", "gpiochip4", "gpiochip2")]
    assert leds.find_chip(paths, label_of) == (4, "pinctrl-rp1")
    assert leds.find_chip(["/dev/gpiochip0", "/dev/gpiochip10"], label_of) == (10, "pinctrl-bcm2835")
    assert leds.find_chip(["/dev/gpiochip11"], lambda p: "pinctrl-bcm2711") == (11, "pinctrl-bcm2711")


def test_no_header_chip_says_what_it_saw():
    with pytest.raises(leds.NoChip) as e:
        leds.find_chip(["/dev/gpiochip0", "/dev/gpiochip1", "/dev/gpiochip2", "/dev/dnspair-gpiochip"],
                       label_of)
    assert str(e.value) == ("no GPIO chip labelled pinctrl-bcm2835/pinctrl-bcm2711/pinctrl-rp1 "
                            "(gpiochip0: raspberrypi-exp-gpio, gpiochip1: Operation not permitted, "
                            "gpiochip2: gpio-sim)")
    with pytest.raises(leds.NoChip, match=r"\(no /dev/gpiochip\*\)$"):
        leds.find_chip([], label_of)


def test_a_device_that_is_no_gpio_chip_is_skipped_by_the_real_ioctl(tmp_path):
    (tmp_path / "gpiochip0").symlink_to("/dev/null")
    with pytest.raises(leds.NoChip, match="gpiochip0: Inappropriate ioctl for device"):
        leds.find_chip([str(tmp_path / "gpiochip0")])


class FakeLGPIO(MockFactory):
    """lgpio's factory as leds.py calls it (chip=N), with mock pins behind."""
    chips = []

    def __init__(self, chip=None):
        super().__init__()
        FakeLGPIO.chips.append(chip)


@pytest.fixture
def lgpio_on_chip4(monkeypatch):
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    monkeypatch.setattr(leds, "find_chip", lambda: (4, "pinctrl-rp1"))
    monkeypatch.setattr(gpiozero.pins.lgpio, "LGPIOFactory", FakeLGPIO)
    FakeLGPIO.chips = []
    yield
    Device.pin_factory = None


def test_the_panel_opens_lgpio_on_the_chip_it_found_and_drives_its_pins(lgpio_on_chip4, caplog):
    with caplog.at_level(logging.INFO, logger="dnspair"):
        p = leds.Panel(Leds(), lambda c: {"ok": True})
        assert p.open() is True
    assert FakeLGPIO.chips == [4] and isinstance(p.factory, FakeLGPIO)
    assert "GPIO: LGPIOFactory on /dev/gpiochip4 (pinctrl-rp1)" in caplog.messages
    assert p.factory.pin(22).state is True  # the lamp test lights red on the factory it chose
    p.close()
    assert p.factory.pin(22).state is False
    p.factory.close()


def test_no_chip_is_one_warning_and_no_panel(monkeypatch, caplog):
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    monkeypatch.setattr(leds.glob, "glob", lambda pattern: [])
    with caplog.at_level(logging.INFO, logger="dnspair"):
        p = leds.Panel(Leds(), lambda c: {"ok": True})
        assert p.open() is False
    assert [r.message for r in caplog.records] == [
        "no GPIO (NoChip: no GPIO chip labelled pinctrl-bcm2835/pinctrl-bcm2711/pinctrl-rp1 "
        "(no /dev/gpiochip*)): running without LEDs and button"]
    assert p.leds == {} and p.button is None
    p.update({"nodes": []})  # a closed panel ignores status updates


def test_gpiozero_pin_factory_in_the_environment_wins(monkeypatch, factory):
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    monkeypatch.setattr(leds, "find_chip", lambda: pytest.fail("looked for a chip"))
    assert leds.pin_factory() is None
    p = leds.Panel(Leds(), lambda c: {"ok": True})
    assert p.open() is True
    assert factory.pin(17).state is True  # gpiozero's own default (the mock) got the pins
    p.close()
