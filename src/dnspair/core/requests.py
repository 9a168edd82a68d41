"""A line on the control socket: what it asks for, or one line saying why not.

Pure (JSON in, an engine `Command` out), so the simulator sends the engine the very commands,
and the very garbage, that the socket does (`tests/sim/faults.py`, kind `control`).
"""
from __future__ import annotations

import json
from typing import Any

from .events import Command

# What the engine answers; `status` and `history` the shell answers from its own state.
ENGINE_COMMANDS = frozenset({"standby", "unstandby", "cleanup", "move", "maintenance"})


class BadRequest(ValueError):
    """One line for the user."""


def parse(line: bytes) -> dict[str, Any]:
    """A request object with a `cmd` string, or BadRequest."""
    try:
        req = json.loads(line)
    except RecursionError:  # json's own depth guard: not a ValueError
        raise BadRequest("nested too deeply") from None
    except ValueError as e:   # bad JSON and bad UTF-8 alike
        raise BadRequest(str(e).splitlines()[0][:200]) from None
    if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
        raise BadRequest("a request is a JSON object with a 'cmd' string")
    return req


def command(req: dict[str, Any]) -> Command:
    """The engine command a request asks for, or BadRequest (the engine checks the rest:
    whether the VIP and the node exist)."""
    cmd = req.get("cmd")
    if cmd not in ENGINE_COMMANDS:
        raise BadRequest(f"unknown command {cmd!r}")
    vip, node, text = req.get("vip"), req.get("node"), req.get("text")
    if vip is not None and not isinstance(vip, str) or node is not None and not isinstance(node, str):
        raise BadRequest("vip and node must be strings")
    if cmd == "move" and (vip is None or node is None):
        raise BadRequest("move needs a VIP and a node")
    if text is not None and not isinstance(text, str):
        raise BadRequest("text must be a string")
    return Command(cmd, vip, node, text)
