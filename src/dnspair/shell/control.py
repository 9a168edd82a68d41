"""The control socket: one JSON request line in, one JSON reply line out.

Only root and the configured admin group may connect (socket mode 0660, directory 0750).
"""
from __future__ import annotations

import asyncio
import grp
import json
import logging
import os
import socket

log = logging.getLogger("dnspair")
MAX_REQUEST = 4096
CLIENT_TIMEOUT = 2.0


class ControlError(Exception):
    """One line for the user."""


async def serve(path: str, group: str, handle, on_reject) -> asyncio.AbstractServer:
    """handle(request: dict) -> dict; malformed requests get an error reply and on_reject(why)."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o750, exist_ok=True)
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        gid = None
        log.warning("control group %r does not exist: only root can use the control socket", group)
    if os.path.exists(path):
        os.unlink(path)

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            line = await asyncio.wait_for(reader.readline(), CLIENT_TIMEOUT)
            if len(line) > MAX_REQUEST or not line.endswith(b"\n"):
                reply = {"ok": False, "error": "request too long or not one line"}
            else:
                try:
                    req = json.loads(line)
                    if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
                        raise ValueError("a request is a JSON object with a 'cmd' string")
                except ValueError as e:
                    reply = {"ok": False, "error": f"malformed request: {e}"}
                else:
                    reply = handle(req)
            if not reply["ok"] and reply["error"].startswith(("malformed", "request too long")):
                on_reject(reply["error"])
            writer.write(json.dumps(reply).encode() + b"\n")
            await asyncio.wait_for(writer.drain(), CLIENT_TIMEOUT)
        except (asyncio.TimeoutError, ConnectionError, asyncio.LimitOverrunError, ValueError) as e:
            on_reject(f"client dropped: {type(e).__name__}")
        finally:
            writer.close()

    old = os.umask(0o117)
    try:
        server = await asyncio.start_unix_server(client, path, limit=MAX_REQUEST * 2)
    finally:
        os.umask(old)
    os.chmod(path, 0o660)
    if gid is not None:
        os.chown(path, 0, gid)
        os.chown(directory, 0, gid)
    os.chmod(directory, 0o750)
    return server


def request(path: str, req: dict, timeout: float = 3.0) -> dict:
    """Synchronous client for the CLI and the plugin. ControlError with one line on failure."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(json.dumps(req).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except FileNotFoundError:
        raise ControlError(f"dnspair daemon is not running (no control socket at {path})")
    except ConnectionRefusedError:
        raise ControlError(f"dnspair daemon is not running (nothing listens on {path})")
    except PermissionError:
        raise ControlError(f"permission denied on {path}: run as root or as a member of the admin group")
    except socket.timeout:
        raise ControlError(f"dnspair daemon did not answer within {timeout:g} s")
    finally:
        s.close()
    try:
        return json.loads(data)
    except ValueError:
        raise ControlError("dnspair daemon sent an unreadable reply")
