"""Logging and notify outside and inside systemd (systemd-python)."""
import logging
import os
import socket

from dnspair.shell import systemd


def test_logs_go_to_stderr_outside_systemd(monkeypatch):
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    log = systemd.setup_logging()
    assert [type(h) for h in log.handlers] == [logging.StreamHandler]


def test_logs_go_to_the_journal_under_systemd(monkeypatch):
    monkeypatch.setenv("INVOCATION_ID", "0" * 32)
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    log = systemd.setup_logging()
    assert type(log.handlers[0]).__name__ == "JournalHandler"


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
