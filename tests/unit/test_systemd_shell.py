"""Logging and notify outside and inside systemd (systemd-python)."""
import logging
import os
import socket
import subprocess
import sys
import threading

import pytest

from dnspair.shell import systemd


@pytest.fixture(autouse=True)
def fresh_logger():
    yield
    systemd.stop_logging()
    logging.getLogger("dnspair").handlers.clear()


def test_logs_go_to_stderr_outside_systemd(monkeypatch):
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    log = systemd.setup_logging()
    assert [type(h).__name__ for h in log.handlers] == ["_DroppingQueueHandler"]
    assert type(systemd.log_writer()) is logging.StreamHandler


def test_logs_go_to_the_journal_under_systemd(monkeypatch):
    monkeypatch.setenv("INVOCATION_ID", "0" * 32)
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    systemd.setup_logging()
    assert type(systemd.log_writer()).__name__ == "JournalHandler"


def test_notify_reaches_the_socket_and_is_quiet_without_one(tmp_path, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False
    path = str(tmp_path / "n.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert systemd.notify("STATUS=holding 192.0.2.11") is True
    assert s.recv(100) == b"STATUS=holding 192.0.2.11"
    s.close()


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert systemd.watchdog_interval() == 5.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert systemd.watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert systemd.watchdog_interval() is None


class StalledStream:
    """stderr on a stalled journald or SD card: every write waits until `go` is set."""

    def __init__(self):
        self.go, self.lines = threading.Event(), []

    def write(self, text):
        self.go.wait()
        self.lines.append(text)

    def flush(self):
        pass


def test_a_stalled_log_writer_never_blocks_the_logging_call(monkeypatch):
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    stream = StalledStream()
    monkeypatch.setattr(sys, "stderr", stream)
    log = systemd.setup_logging()
    caller = threading.Thread(target=lambda: [log.warning("heartbeat %d", i) for i in range(50)])
    caller.start()
    caller.join(10)
    returned = not caller.is_alive()
    stream.go.set()                     # unblock, so a failing run ends too
    caller.join(10)
    assert returned, "log.warning waited for the stalled writer"
    systemd.stop_logging()              # flushes what was queued
    text = "".join(stream.lines)
    assert all(f"heartbeat {i}\n" in text for i in range(50)), text[-300:]


def test_a_full_queue_drops_lines_and_says_how_many(monkeypatch):
    import re
    import time
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    monkeypatch.setattr(systemd, "QUEUE_SIZE", 5)
    stream = StalledStream()
    monkeypatch.setattr(sys, "stderr", stream)
    log = systemd.setup_logging()
    for i in range(20):
        log.warning("line %d", i)       # must not wait, nor raise, with the queue full
    stream.go.set()
    deadline = time.monotonic() + 10
    while systemd._listener.queue.qsize() and time.monotonic() < deadline:
        time.sleep(0.01)
    log.warning("after")
    systemd.stop_logging()
    text = "".join(stream.lines)
    kept = sum(f"line {i}\n" in text for i in range(20))
    assert "line 0\n" in text and "after\n" in text and kept < 20, text
    m = re.search(r"(\d+) log lines dropped", text)
    assert m and int(m.group(1)) == 20 - kept, text


def test_what_is_queued_at_exit_is_written(tmp_path):
    """A slow writer at exit: every line logged still reaches stderr."""
    code = """
import sys, time
class Slow:
    def __init__(self, f): self.f = f
    def write(self, t): time.sleep(0.002); self.f.write(t)
    def flush(self): self.f.flush()
sys.stderr = Slow(sys.stderr)
from dnspair.shell import systemd
log = systemd.setup_logging()
for i in range(300):
    log.info("line %d", i)
"""
    env = {k: v for k, v in os.environ.items() if k not in ("INVOCATION_ID", "JOURNAL_STREAM")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr[-500:]
    lines = [ln for ln in r.stderr.splitlines() if " INFO line " in ln]
    assert len(lines) == 300, f"{len(lines)} of 300 lines written; tail: {r.stderr[-300:]}"
