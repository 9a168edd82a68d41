"""The control socket: one JSON request line in, one JSON reply line out.

Who may do what is decided from the peer's credentials (SO_PEERCRED, SO_PEERGROUPS), taken by
the kernel at connect(): root and the admin group may change state (standby, unstandby, move,
cleanup); the monitor group may read the status; anyone else is refused in one line naming the
group. The socket itself is 0666 so the refusal can say so; its directory is never chmod'ed.
"""
from __future__ import annotations

import asyncio
import errno
import grp
import json
import logging
import os
import socket
import stat
import struct

from ..core.requests import parse

log = logging.getLogger("dnspair")
MAX_REQUEST = 4096
CLIENT_TIMEOUT = 2.0
# Like the HTTP endpoint's cap: a crowd of idle local clients must not use up the file table
# the daemon needs for a takeover. The CLI and the plugin hold one connection for milliseconds.
MAX_CLIENTS = 16
BACKLOG = 64
ACCEPT_PAUSE = 0.5   # after a failed accept (EMFILE...): the client waits in the queue meanwhile
BUSY = b'{"ok": false, "error": "busy: too many control clients at once, try again"}\n'
# What the monitor group may ask; every other command (standby, move, cleanup, any added later)
# needs root or the admin group: an allow list, so a new command is never open by default.
READ_ONLY = frozenset({"status", "history"})
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # linux/socket.h; Python names it in 3.12
ADMIN, MONITOR = "admin", "monitor"


def permitted(role: str | None, cmd: str) -> bool:
    return role == ADMIN or (role == MONITOR and cmd in READ_ONLY)


class ControlError(Exception):
    """One line for the user."""


def peer_ids(conn: socket.socket) -> tuple[int, set[int]]:
    """(uid, gids) of the process that connected: its primary and supplementary groups as
    they were at connect()."""
    _pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                         struct.calcsize("3i")))
    gids = {gid}
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * 65536)
        gids.update(struct.unpack(f"{len(raw) // 4}I", raw[:len(raw) // 4 * 4]))
    except OSError:  # a kernel before 4.13: the user's groups from the group database
        try:
            import pwd
            gids.update(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
        except (KeyError, OSError):
            pass
    return uid, gids


class Roles:
    """The two groups by name and id (None: the group does not exist, nobody is in it)."""

    def __init__(self, admin_group: str, monitor_group: str):
        self.admin_group, self.monitor_group = admin_group, monitor_group
        self.admin_gid, self.monitor_gid = _gid(admin_group), _gid(monitor_group)

    def role(self, uid: int, gids: set[int]) -> str | None:
        if uid == 0 or self.admin_gid in gids:
            return ADMIN
        if self.monitor_gid in gids:
            return MONITOR
        return None

    def refusal(self, cmd: str | None) -> str:
        if cmd is not None and cmd not in READ_ONLY:
            return f"permission denied: {cmd} needs root or group {self.admin_group}"
        return (f"permission denied: the control socket needs root or group {self.monitor_group} "
                f"(status) or {self.admin_group} (every command)")


def _gid(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


class Server:
    """Accepts by hand (not asyncio's server) so a refused or failed accept is counted through
    on_reject instead of logged with a traceback, and a client over the cap is closed at once."""

    def __init__(self, sock: socket.socket, handle, on_reject, roles: Roles | None = None):
        self.sock, self.handle, self.on_reject = sock, handle, on_reject
        self.roles = roles or Roles("dnspair-admin", "dnspair-monitor")
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
            try:
                role = self.roles.role(*peer_ids(conn))
            except OSError:
                role = None
            if role is None:  # refused before a byte is read: costs no client slot
                self._refuse(conn, json.dumps({"ok": False, "error": self.roles.refusal(None)}).encode()
                             + b"\n")
                self.on_reject("permission denied: a user in neither control group")
                continue
            if self.clients >= MAX_CLIENTS:
                self._refuse(conn, BUSY)
                self.on_reject(f"too many clients: over {MAX_CLIENTS} at once")
                continue
            self.clients += 1
            task = self.loop.create_task(self._client(conn, role))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _refuse(conn: socket.socket, line: bytes) -> None:
        try:
            conn.setblocking(False)
            conn.send(line)
        except OSError:
            pass
        conn.close()

    async def _client(self, conn: socket.socket, role: str) -> None:
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
                    if not permitted(role, req["cmd"]):
                        reply = {"ok": False, "error": self.roles.refusal(req["cmd"])}
                        self.on_reject(f"permission denied: {req['cmd']} from the monitor group")
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


async def serve(path: str, groups: tuple[str, str], handle, on_reject) -> Server:
    """handle(request: dict) -> dict; malformed requests get an error reply and on_reject(why).
    Refused connections (over the cap, failed accepts, no permission) are counted through
    on_reject too. groups: (admin group, monitor group). ControlError if `path` is there and
    is not a socket: a file of someone else's is never deleted."""
    roles = Roles(*groups)
    for name, gid in ((roles.admin_group, roles.admin_gid), (roles.monitor_group, roles.monitor_gid)):
        if gid is None:
            log.warning("control group %r does not exist: nobody is in it (`dnspair check-config "
                        "--key` says so too)", name)
    check_socket_path(path)
    # Made if missing (normally systemd's RuntimeDirectory); an existing one is left as it is.
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    if os.path.lexists(path):
        os.unlink(path)  # a socket left by an earlier run (check_socket_path said so)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o111)
    try:
        sock.bind(path)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    os.chmod(path, 0o666)  # everyone may connect, to be told what they may do
    return Server(sock, handle, on_reject, roles)


def check_socket_path(path: str) -> None:
    """ControlError unless `path` is absent or a socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ControlError(f"{path} exists and is not a socket: not replaced (remove it, or set "
                           "control.socket to another path)")


def request(path: str, req: dict, timeout: float = 3.0) -> dict:
    """Synchronous client for the CLI and the plugin. ControlError with one line on failure."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        try:
            s.sendall(json.dumps(req).encode() + b"\n")
        except BrokenPipeError:
            pass  # refused before reading: the one-line reason is waiting to be read
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
        raise ControlError(f"permission denied on {path}: run as root or as a member of "
                           "dnspair-admin (or dnspair-monitor for status)") from None
    except TimeoutError:
        raise ControlError(f"dnspair daemon did not answer within {timeout:g} s") from None
    finally:
        s.close()
    try:
        return json.loads(data)
    except ValueError:
        raise ControlError("dnspair daemon sent an unreadable reply") from None
