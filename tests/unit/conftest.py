"""Fixtures shared by the unit tests: a fake control socket, gpiozero's mock pins."""
import json
import os
import socketserver
import tempfile
import threading

# lgpio makes its notification FIFO (.lgd-nfy-N) in LG_WD, else in the working directory (the
# checkout) when test_gpio_select.py imports it.
os.environ.setdefault("LG_WD", tempfile.mkdtemp(prefix="dnspair-lgwd-"))

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory


class FakeDaemon:
    """A control socket that answers with a given status (or not at all)."""

    def __init__(self, path, st, silent=False):
        self.st = st
        outer = self

        class H(socketserver.StreamRequestHandler):
            def handle(self):
                self.rfile.readline()
                if silent:
                    self.rfile.read()  # hold the line until the client gives up
                    return
                self.wfile.write(json.dumps({"ok": True, "status": outer.st}).encode() + b"\n")

        self.srv = socketserver.ThreadingUnixStreamServer(str(path), H)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def daemon(tmp_path):
    made = []

    def make(st, silent=False):
        d = FakeDaemon(tmp_path / "c.sock", st, silent)
        made.append(d)
        return tmp_path / "c.sock"
    yield make
    for d in made:
        d.close()


@pytest.fixture
def factory():
    f = MockFactory()
    Device.pin_factory = f
    yield f
    f.reset()
    Device.pin_factory = None
