"""core/requests.py: a control-socket line to an engine command, or one line saying why not."""
import pytest

from dnspair.core.events import Command
from dnspair.core.requests import BadRequest, command, parse


@pytest.mark.parametrize("line, why", [
    (b"[" * 4096, "nested too deeply"),
    (b'{"cmd": "move", "vip": ' + b"[" * 4000, "nested too deeply"),
    (b'{"cmd": "\xff"}', "can't decode"),
    (b"{", "Expecting property name"),
    (b"[]", "a JSON object with a 'cmd' string"),
    (b'{"cmd": 5}', "a JSON object with a 'cmd' string"),
])
def test_a_bad_line_is_one_line_of_why(line, why):
    with pytest.raises(BadRequest) as e:
        parse(line)
    assert why in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("req, why", [
    ({"cmd": "bogus"}, "unknown command 'bogus'"),
    ({"cmd": "status"}, "unknown command 'status'"),   # the shell answers it, not the engine
    ({"cmd": "move", "vip": "192.0.2.11"}, "move needs a VIP and a node"),
    ({"cmd": "move", "vip": 5, "node": "dns-pm02"}, "vip and node must be strings"),
    ({"cmd": "cleanup", "vip": float("inf")}, "vip and node must be strings"),
    ({"cmd": "standby", "text": 5}, "text must be a string"),
])
def test_a_bad_request_is_refused_before_the_engine(req, why):
    with pytest.raises(BadRequest, match=why):
        command(req)


def test_good_requests_become_engine_commands():
    assert command(parse(b'{"cmd": "move", "vip": "192.0.2.11", "node": "dns-pm02"}\n')) == \
        Command("move", "192.0.2.11", "dns-pm02")
    assert command({"cmd": "cleanup"}) == Command("cleanup")
    assert command({"cmd": "maintenance", "text": "on"}) == Command("maintenance", text="on")
