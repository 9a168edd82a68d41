"""systemd integration: sd_notify and the journal (systemd-python), stderr otherwise."""
from __future__ import annotations

import atexit
import logging
import logging.handlers
import os
import queue
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


# Records waiting for the writer thread. Bounded: a journald stalled for long must cost
# dropped lines (counted and reported), not the Pi's memory.
QUEUE_SIZE = 10000
STOP_WAIT = 5.0   # s to flush at exit; a stuck journal must not hold up the stop for ever


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """Never waits: a full queue drops the record and says so once there is room again."""

    def __init__(self, q):
        super().__init__(q)
        self.dropped = 0

    def enqueue(self, record):
        try:
            if self.dropped:
                note = logging.makeLogRecord({
                    "name": record.name, "levelno": logging.WARNING, "levelname": "WARNING",
                    "msg": f"{self.dropped} log lines dropped: the log writer was stalled"})
                self.queue.put_nowait(self.prepare(note))
                self.dropped = 0
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


class _Listener(logging.handlers.QueueListener):
    def __init__(self, q: queue.Queue, handler: logging.Handler):
        super().__init__(q, handler, respect_handler_level=True)
        self._q = q

    def stop(self, timeout: float = STOP_WAIT) -> None:
        """Write out what is queued, waiting at most `timeout` s for a stuck handler."""
        if self._thread is not None:
            try:
                self._q.put(getattr(self, "_sentinel", None), timeout=timeout)
            except queue.Full:
                pass
            self._thread.join(timeout)
            self._thread = None


_listener: _Listener | None = None


def setup_logging(verbose: bool = False) -> logging.Logger:
    """The daemon's logger hands records to a queue; a thread does the real write (journal or
    stderr), so a stalled journald (an SD card stall) cannot stall the loop's heartbeats."""
    log = logging.getLogger("dnspair")
    stop_logging()
    log.handlers.clear()
    if sd_journal is not None and os.environ.get("JOURNAL_STREAM") and os.environ.get("INVOCATION_ID"):
        handler: logging.Handler = sd_journal.JournalHandler(SYSLOG_IDENTIFIER="dnspair")
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    global _listener
    q: queue.Queue = queue.Queue(QUEUE_SIZE)
    _listener = _Listener(q, handler)
    _listener.start()
    log.addHandler(_DroppingQueueHandler(q))
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
    # asyncio reports from inside the loop too: through the same queue, never a direct write.
    aio = logging.getLogger("asyncio")
    aio.addHandler(log.handlers[0])
    aio.propagate = False
    return log


def log_writer() -> logging.Handler | None:
    """The handler doing the real write (for tests and diagnostics)."""
    return _listener.handlers[0] if _listener else None


def stop_logging() -> None:
    """Flush and stop the writer thread (also run at exit); later records are written directly."""
    global _listener
    if _listener is not None:
        log = logging.getLogger("dnspair")
        for h in [h for h in log.handlers if isinstance(h, _DroppingQueueHandler)]:
            log.removeHandler(h)
            logging.getLogger("asyncio").removeHandler(h)
        _listener.stop()
        log.addHandler(_listener.handlers[0])
        logging.getLogger("asyncio").propagate = True
        _listener = None


atexit.register(stop_logging)
