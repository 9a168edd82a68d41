"""The control socket: one JSON request line in, one JSON reply line out.

Only root and the configured admin group may connect (socket mode 0660, directory 0750).
"""
from __future__ import annotations

import asyncio
import errno
import grp
import json
import logging
import os
import socket

log = logging.getLogger("dnspair")
MAX_REQUEST = 4096
CLIENT_TIMEOUT = 2.0
# Like the HTTP endpoint's cap: a crowd of idle local clients must not use up the file table
# the daemon needs for a takeover. The CLI and the plugin hold one connection for milliseconds.
MAX_CLIENTS = 16
BACKLOG = 64
ACCEPT_PAUSE = 0.5   # after a failed accept (EMFILE...): the client waits in the queue meanwhile
BUSY = b'{"ok": false, "error": "busy: too many control clients at once, try again"}\n'


class ControlError(Exception):
    """One line for the user."""


def parse(line: bytes) -> dict:
    """A request object, or ValueError with one line."""
    try:
        req = json.loads(line)
    except RecursionError:  # json's own depth guard: not a ValueError
        raise ValueError("nested too deeply") from None
    if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
        raise ValueError("a request is a JSON object with a 'cmd' string")
    return req


class Server:
    """Accepts by hand (not asyncio's server) so a refused or failed accept is counted through
    on_reject instead of logged with a traceback, and a client over the cap is closed at once."""

    def __init__(self, sock: socket.socket, handle, on_reject):
        self.sock, self.handle, self.on_reject = sock, handle, on_reject
        self.clients = 0
        self.loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task] = set()
        self._errors_logged: set[str] = set()
        self._listening = False
        self._listen()

    def _listen(self) -> None:
        if self.sock.fileno() >= 0 and not self._listening:
            self.loop.add_reader(self.sock.fileno(), self._accept)
            self._listening = True

    def _accept(self) -> None:
        for _ in range(BACKLOG):  # bounded, so one wakeup never runs long
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                name = errno.errorcode.get(e.errno or 0, str(e.errno))
                self.on_reject(f"accept failed {name}: {e.strerror or e}")
                self.loop.remove_reader(self.sock.fileno())
                self._listening = False
                self.loop.call_later(ACCEPT_PAUSE, self._listen)
                return
            if self.clients >= MAX_CLIENTS:
                try:
                    conn.setblocking(False)
                    conn.send(BUSY)
                except OSError:
                    pass
                conn.close()
                self.on_reject(f"too many clients: over {MAX_CLIENTS} at once")
                continue
            self.clients += 1
            task = self.loop.create_task(self._client(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _client(self, conn: socket.socket) -> None:
        writer = None
        try:
            reader, writer = await asyncio.open_unix_connection(sock=conn, limit=MAX_REQUEST * 2)
            line = await asyncio.wait_for(reader.readline(), CLIENT_TIMEOUT)
            if not line:
                self.on_reject("client dropped: hung up without a word")
                return
            if len(line) > MAX_REQUEST or not line.endswith(b"\n"):
                reply = {"ok": False, "error": "request too long or not one line"}
            else:
                try:
                    req = parse(line)
                except ValueError as e:
                    reply = {"ok": False, "error": f"malformed request: {e}"}
                else:
                    reply = self.handle(req)
            error = str(reply.get("error", ""))
            if not reply["ok"] and error.startswith(("malformed", "request too long")):
                self.on_reject(error)
            writer.write(json.dumps(reply).encode() + b"\n")
            await asyncio.wait_for(writer.drain(), CLIENT_TIMEOUT)
        except (TimeoutError, ConnectionError, asyncio.LimitOverrunError, ValueError) as e:
            self.on_reject(f"client dropped: {type(e).__name__}")
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - one bad request must never reach the loop
            kind = type(e).__name__
            if kind not in self._errors_logged:
                self._errors_logged.add(kind)
                log.error("control socket: internal error on a request (%s: %s; not logged again)",
                          kind, e)
        finally:
            self.clients -= 1
            if writer is not None:
                writer.close()
            else:
                conn.close()

    def close(self) -> None:
        if self._listening:
            self.loop.remove_reader(self.sock.fileno())
            self._listening = False
        self.sock.close()
        for t in self._tasks:
            t.cancel()


async def serve(path: str, group: str, handle, on_reject) -> Server:
    """handle(request: dict) -> dict; malformed requests get an error reply and on_reject(why).
    Refused connections (over the cap, failed accepts) are counted through on_reject too."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o750, exist_ok=True)
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        gid = None
        log.warning("control group %r does not exist: only root can use the control socket", group)
    if os.path.exists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o117)
    try:
        sock.bind(path)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    os.chmod(path, 0o660)
    if gid is not None:
        os.chown(path, 0, gid)
        os.chown(directory, 0, gid)
    os.chmod(directory, 0o750)
    return Server(sock, handle, on_reject)


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
        raise ControlError(f"dnspair daemon is not running (no control socket at {path})") from None
    except ConnectionRefusedError:
        raise ControlError(f"dnspair daemon is not running (nothing listens on {path})") from None
    except PermissionError:
        raise ControlError(f"permission denied on {path}: run as root or as a member of the "
                           "admin group") from None
    except TimeoutError:
        raise ControlError(f"dnspair daemon did not answer within {timeout:g} s") from None
    finally:
        s.close()
    try:
        return json.loads(data)
    except ValueError:
        raise ControlError("dnspair daemon sent an unreadable reply") from None
