"""Fixes for defects the fault suite (tests/net/test_faults_*.py) found, pinned without a network."""
import logging
from types import SimpleNamespace

from dnspair.daemon import Daemon


def _stub():
    return SimpleNamespace(control_rejected=0, _reject_kinds_logged=set())


def test_control_rejects_are_all_counted_but_each_kind_logged_once(caplog):
    d = _stub()
    reasons = [
        "malformed request: Expecting value: line 1 column 1 (char 0)",
        "unknown command 'reboot'",
        "malformed request: Extra data: line 1 column 5 (char 4)",
        "request too long or not one line",
        "unknown command 'x'",
        "client dropped: ValueError",
        "malformed request: 'utf-8' codec can't decode byte 0x87 in position 0: invalid start byte",
        "client dropped: TimeoutError",
        "request too long or not one line",
    ]
    with caplog.at_level(logging.WARNING, logger="dnspair"):
        for _ in range(3):
            for why in reasons:
                Daemon._reject(d, why)
    assert d.control_rejected == 3 * len(reasons)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4, lines
    assert lines[0].startswith("control socket: rejected a request (malformed request: Expecting value")
    assert any("(unknown command 'reboot'" in ln for ln in lines)
    assert any("(request too long or not one line" in ln for ln in lines)
    assert any("(client dropped: ValueError" in ln for ln in lines)


def test_random_junk_cannot_flood_the_log(caplog):
    import json
    import random
    rng = random.Random(1)
    d = _stub()
    with caplog.at_level(logging.WARNING, logger="dnspair"):
        for _ in range(500):
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))
            try:
                json.loads(junk)
                why = "malformed request: a request is a JSON object with a 'cmd' string"
            except ValueError as e:
                why = f"malformed request: {e}"
            Daemon._reject(d, why)
    assert d.control_rejected == 500
    assert len(caplog.records) == 1


def test_a_claim_is_announced_by_arp_before_the_heartbeat_that_reports_it(tmp_path):
    """In a hand-over the old holder drops the VIP as soon as a heartbeat says the new owner
    holds it; the client must already have been pointed at the new owner by then, or a query
    in that gap is lost (seen in the fault suite at the auto-failback hand-back)."""
    import asyncio
    from dataclasses import replace
    from pathlib import Path

    from dnspair.core.actions import Announce, Claim, Send
    from dnspair.core.config import parse

    cfg = parse((Path(__file__).resolve().parents[2] / "example" / "dnspair.yaml").read_text())
    cfg = replace(cfg, state_dir=str(tmp_path))
    events = []

    class Netlink:
        async def add(self, *a):
            events.append("add")

        async def remove(self, *a):
            events.append("remove")

    class Sock:
        def send(self, frame):
            events.append("garp")

        def getsockname(self):
            return ("eth0", 0x0806, 0, 1, bytes.fromhex("02005e000100"))

        def close(self):
            pass

    async def scenario():
        d = Daemon(cfg, "dns-pm01", bytes(range(32)))
        d.nl = Netlink()
        d.announcer._open_socket = lambda ifname: Sock()
        d.hb = SimpleNamespace(send=lambda data: events.append("heartbeat"))
        task = asyncio.get_running_loop().create_task(d._actuator())
        for a in (Claim(0), Announce(0), Send(b"hb")):
            d.queue.put_nowait(a)
        for _ in range(50):
            await asyncio.sleep(0)
            if "heartbeat" in events and "garp" in events:
                break
        task.cancel()
        d.announcer.close()

    asyncio.run(scenario())
    assert "garp" in events and "heartbeat" in events, events
    assert events.index("add") < events.index("garp") < events.index("heartbeat"), events
