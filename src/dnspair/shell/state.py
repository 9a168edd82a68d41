"""The node's persistent state directory (`state_dir`, default /var/lib/dnspair).

It holds the start counter behind the incarnation (`NODE.starts`), and the state file
(`NODE.state.json`): what the engine keeps across restarts (stickiness, what left this node by
a failure, pins, failure records, the transition number; core/saved.py) and the last 200
transitions. Each written atomically (temp file, fsync, rename); a missing or corrupt file
gives defaults with one warning (for the counter: the random nonce keeps the new incarnation
unique all the same).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import secrets
import time

from ..core import wire
from ..core.actions import Transition
from ..core.config import Config
from ..core.saved import Saved, from_json, to_json

log = logging.getLogger("dnspair")


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        data = text.encode()
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    try:   # the rename itself is durable only once the directory is synced
        dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def next_incarnation(state_dir: str, node: str) -> int:
    """This start's incarnation: the stored counter + 1 and 32 random bits."""
    path = os.path.join(state_dir, f"{node}.starts")
    counter = 0
    try:
        with open(path) as f:
            counter = int(f.read().strip()) + 1
        if not 0 < counter <= wire.U32:
            raise ValueError(f"counter out of range: {counter - 1}")
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as e:
        log.warning("start counter %s unreadable (%s): starting again from 0", path, e)
        counter = 0
    try:
        os.makedirs(state_dir, mode=0o750, exist_ok=True)
        write_atomic(path, f"{counter}\n")
    except OSError as e:
        log.warning("cannot keep the start counter in %s (%s): the incarnation relies on its "
                    "random part alone", state_dir, e)
    return wire.incarnation(counter, secrets.randbits(32))


# --- the state file: what the engine keeps (core/saved.py) and the transition history -----

HISTORY_MAX = 200


def state_path(state_dir: str, node: str) -> str:
    return os.path.join(state_dir, f"{node}.state.json")


def _offset() -> float:
    """wall = monotonic + offset, now."""
    return time.time() - time.monotonic()


def load(state_dir: str, node: str, cfg: Config) -> tuple[Saved | None, list[dict]]:
    """(the engine's saved state, the history) from the state file; (None, []) with one
    warning if it is missing or unreadable: the node starts with defaults."""
    path = state_path(state_dir, node)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.loads(f.read(1 << 22))
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        saved = from_json(doc.get("engine"), cfg, _offset())
        history = doc.get("history", [])
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise ValueError("history: not a list of entries")
        return saved, history[-HISTORY_MAX:]
    except FileNotFoundError:
        log.warning("no state file %s (first start, or the state directory was lost): "
                    "starting with defaults", path)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        log.warning("state file %s unreadable (%s): starting with defaults", path, e)
    return None, []


def read_history(state_dir: str, node: str) -> list[dict]:
    """The history as the state file has it (for `dnspair history` without a daemon)."""
    with open(state_path(state_dir, node), encoding="utf-8") as f:
        doc = json.loads(f.read(1 << 22))
    history = doc.get("history", []) if isinstance(doc, dict) else []
    return [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []


def entry(t: Transition, node: str, wall: float) -> dict:
    """A transition as the history, `dnspair history --json` and the notify commands see it."""
    when = dt.datetime.fromtimestamp(wall, dt.UTC).isoformat(timespec="milliseconds")
    return {"number": t.number, "time": when,
            "unix": round(wall, 3), "node": node, "kind": t.kind, "vip": t.vip, "old_owner": t.old_owner,
            "new_owner": t.new_owner, "role": t.role, "code": t.code, "reason": t.reason,
            "duration_s": t.duration}


class Keeper:
    """Keeps the state file current without blocking the loop: each change schedules one write
    (in a thread: an SD card's fsync can take a while), changes meanwhile coalesce into the next."""

    def __init__(self, state_dir: str, node: str, cfg: Config, saved: Saved | None, history: list[dict]):
        self.path = state_path(state_dir, node)
        self.dir = state_dir
        self.cfg = cfg
        self.saved = saved
        self.history: list[dict] = list(history)
        self.writes = 0
        self.failed = 0
        self._dirty = False
        self._task: asyncio.Task | None = None
        self._errors_logged: set[str] = set()

    def save(self, saved: Saved) -> None:
        self.saved = saved
        self._schedule()

    def add(self, item: dict) -> None:
        self.history.append(item)
        del self.history[:-HISTORY_MAX]
        self._schedule()

    def _schedule(self) -> None:
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def render(self) -> str:
        doc = {"engine": None if self.saved is None else to_json(self.saved, self.cfg, _offset()),
               "history": self.history}
        return json.dumps(doc, indent=1, sort_keys=True) + "\n"

    async def _run(self) -> None:
        while self._dirty:
            self._dirty = False
            text = self.render()
            try:
                await asyncio.to_thread(self._write, text)
                self.writes += 1
            except OSError as e:
                self.failed += 1
                kind = e.strerror or str(e)
                if kind not in self._errors_logged:
                    self._errors_logged.add(kind)
                    log.warning("cannot write the state file %s (%s): stickiness, pins and history "
                                "will not survive a restart (not logged again)", self.path, kind)

    def _write(self, text: str) -> None:
        os.makedirs(self.dir, mode=0o750, exist_ok=True)
        write_atomic(self.path, text)

    async def flush(self, timeout: float = 2.0) -> None:
        """At stop: the last state reaches the disk (or the timeout passes)."""
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                log.error("state file %s: the last write did not finish in time", self.path)
