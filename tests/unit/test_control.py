"""The control socket's limits: a cap on concurrent clients, idle clients dropped, failed
accepts and deeply nested JSON answered or counted, never a traceback."""
import asyncio
import errno
import json

from dnspair.shell import control

NO_GROUP = "dnspair-test-no-such-group"


def ok_handle(req):
    return {"ok": True, "message": req["cmd"]}


async def started(tmp_path, rejects):
    loop = asyncio.get_running_loop()
    errors = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    srv = await control.serve(str(tmp_path / "c.sock"), (NO_GROUP, NO_GROUP), ok_handle, rejects.append)
    return srv, errors


async def ask(path, data=b'{"cmd": "status"}\n', timeout=2.0):
    r, w = await asyncio.open_unix_connection(str(path))
    try:
        w.write(data)
        return await asyncio.wait_for(r.read(), timeout)
    finally:
        w.close()


def test_a_client_over_the_cap_is_answered_busy_and_closed_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(control, "CLIENT_TIMEOUT", 30.0)   # idle ones stay for the whole test
    rejects = []

    async def go():
        srv, errors = await started(tmp_path, rejects)
        idle = [await asyncio.open_unix_connection(str(tmp_path / "c.sock"))
                for _ in range(control.MAX_CLIENTS)]
        await asyncio.sleep(0.2)
        assert srv.clients == control.MAX_CLIENTS
        extra = []
        for _ in range(5):
            r, w = await asyncio.open_unix_connection(str(tmp_path / "c.sock"))
            extra.append(await asyncio.wait_for(r.read(), 5.0))   # EOF right after the reply
            w.close()
        for _, w in idle:
            w.close()
        await asyncio.sleep(0.2)
        served = await ask(tmp_path / "c.sock")
        srv.close()
        return srv, errors, extra, served

    srv, errors, extra, served = asyncio.run(go())
    assert all(json.loads(x) == {"ok": False, "error": json.loads(control.BUSY)["error"]} for x in extra)
    assert rejects.count(f"too many clients: over {control.MAX_CLIENTS} at once") == 5
    assert json.loads(served) == {"ok": True, "message": "status"}, "a slot frees when a client leaves"
    assert srv.clients == 0 and not errors


def test_an_idle_client_is_dropped_after_the_timeout_and_frees_its_slot(tmp_path, monkeypatch):
    monkeypatch.setattr(control, "CLIENT_TIMEOUT", 0.2)
    rejects = []

    async def go():
        srv, errors = await started(tmp_path, rejects)
        r, w = await asyncio.open_unix_connection(str(tmp_path / "c.sock"))
        gone = await asyncio.wait_for(r.read(), 5.0)
        w.close()
        await asyncio.sleep(0.05)
        clients = srv.clients
        srv.close()
        return gone, clients, errors

    gone, clients, errors = asyncio.run(go())
    assert gone == b"" and clients == 0 and not errors
    assert rejects == ["client dropped: TimeoutError"]


class FailingListener:
    """The listening socket, whose next accepts fail as with a full file table."""

    def __init__(self, real, failures):
        self.real, self.failures = real, failures

    def fileno(self):
        return self.real.fileno()

    def accept(self):
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return self.real.accept()

    def close(self):
        self.real.close()


def test_a_failed_accept_is_counted_paused_and_retried_without_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setattr(control, "ACCEPT_PAUSE", 0.1)
    rejects = []

    async def go():
        srv, errors = await started(tmp_path, rejects)
        srv.sock = FailingListener(srv.sock, failures=3)
        reply = await ask(tmp_path / "c.sock", timeout=5.0)
        srv.close()
        return reply, errors

    reply, errors = asyncio.run(go())
    assert json.loads(reply)["ok"] is True, "the waiting client is served once accepts work again"
    assert rejects == ["accept failed EMFILE: Too many open files"] * 3
    assert not errors, errors


def test_deeply_nested_json_gets_a_one_line_error(tmp_path):
    rejects = []

    async def go():
        srv, errors = await started(tmp_path, rejects)
        reply = await ask(tmp_path / "c.sock", b"[" * 4000 + b"\n")
        srv.close()
        return reply, errors

    reply, errors = asyncio.run(go())
    assert reply.count(b"\n") == 1 and not errors, (reply, errors)
    err = json.loads(reply)["error"]
    assert err == "malformed request: nested too deeply" and rejects == [err]


def test_a_regular_file_at_the_socket_path_is_refused_and_kept(tmp_path):
    path = tmp_path / "run" / "c.sock"
    path.parent.mkdir(mode=0o700)
    path.write_text("not ours\n")

    async def go():
        await control.serve(str(path), (NO_GROUP, NO_GROUP), ok_handle, print)

    try:
        asyncio.run(go())
    except control.ControlError as e:
        assert str(e) == (f"{path} exists and is not a socket: not replaced (remove it, or set "
                          "control.socket to another path)")
    else:
        raise AssertionError("a regular file was replaced by the socket")
    assert path.read_text() == "not ours\n"
    assert (path.parent.stat().st_mode & 0o777) == 0o700, "the directory's mode is not ours to change"


def test_a_stale_socket_is_replaced_and_the_directory_mode_kept(tmp_path):
    import os
    import socket
    d = tmp_path / "run"
    d.mkdir(mode=0o711)
    os.chmod(d, 0o711)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(d / "c.sock"))
    stale.close()

    async def go():
        srv = await control.serve(str(d / "c.sock"), (NO_GROUP, NO_GROUP), ok_handle, print)
        try:
            return json.loads(await ask(d / "c.sock"))
        finally:
            srv.close()

    assert asyncio.run(go()) == {"ok": True, "message": "status"}   # root may
    assert (d.stat().st_mode & 0o777) == 0o711
    assert (os.stat(d / "c.sock").st_mode & 0o777) == 0o666


def test_the_monitor_role_may_ask_only_what_is_listed_read_only():
    # An allow list: a command added later (or one a client makes up) needs the admin role.
    assert control.READ_ONLY == {"status", "history"}
    for cmd in ("status", "history"):
        assert control.permitted(control.MONITOR, cmd) and control.permitted(control.ADMIN, cmd)
    for cmd in ("standby", "unstandby", "move", "cleanup", "maintenance", "no-such-command"):
        assert not control.permitted(control.MONITOR, cmd), cmd
        assert control.permitted(control.ADMIN, cmd), cmd
    assert not control.permitted(None, "status")
