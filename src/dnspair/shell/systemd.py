"""systemd integration: sd_notify and the journal (systemd-python), stderr otherwise."""
from __future__ import annotations

import logging
import os
import sys

try:
    from systemd import daemon as sd_daemon
    from systemd import journal as sd_journal
except ImportError:  # pragma: no cover - the pinned install always has it
    sd_daemon = sd_journal = None


def notify(text: str) -> bool:
    """READY=1, STATUS=..., WATCHDOG=1, STOPPING=1. False (quietly) outside systemd."""
    if sd_daemon is None or not os.environ.get("NOTIFY_SOCKET"):
        return False
    return bool(sd_daemon.notify(text))


def watchdog_interval() -> float | None:
    """Half of WATCHDOG_USEC when the watchdog is meant for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


def setup_logging(verbose: bool = False) -> logging.Logger:
    log = logging.getLogger("dnspair")
    log.handlers.clear()
    if sd_journal is not None and os.environ.get("JOURNAL_STREAM") and os.environ.get("INVOCATION_ID"):
        handler: logging.Handler = sd_journal.JournalHandler(SYSLOG_IDENTIFIER="dnspair")
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
    return log
