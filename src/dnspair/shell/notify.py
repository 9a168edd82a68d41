"""The `notify:` commands: every transition runs them, in order, one at a time.

A transition is queued at once (never waiting: a failover must not wait for a script); one
task runs the queue, each command with its own timeout (`notify_timeout`), killed with its
process group when it overruns. A full queue (`notify_queue`) drops its oldest event and logs
it; DNSPAIR_DROPPED tells every command how many were dropped so far, and the event numbers
(DNSPAIR_EVENT_ID, consecutive) show where. Failures and timeouts are
logged and counted (status: `notify`), never retried: a retry would reorder.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections import deque

log = logging.getLogger("dnspair")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TAIL = 300   # bytes of a failing command's stderr that go into the log


def environment(item: dict, cluster: str, peer: str) -> dict[str, str]:
    """A history entry (shell/state.py `entry`) as the command's environment."""
    def s(v: object) -> str:
        return "" if v is None else str(v)
    return {
        "PATH": PATH, "HOME": "/", "LANG": "C.UTF-8",
        "DNSPAIR_EVENT": s(item["kind"]), "DNSPAIR_EVENT_ID": s(item["number"]),
        "DNSPAIR_VIP": s(item["vip"]), "DNSPAIR_OLD_OWNER": s(item["old_owner"]),
        "DNSPAIR_NEW_OWNER": s(item["new_owner"]), "DNSPAIR_ROLE": s(item["role"]),
        "DNSPAIR_REASON": s(item["reason"]), "DNSPAIR_REASON_CODE": s(item["code"]),
        "DNSPAIR_NODE": s(item["node"]), "DNSPAIR_PEER": peer, "DNSPAIR_CLUSTER": cluster,
        "DNSPAIR_TIME": s(item["time"]), "DNSPAIR_DURATION": s(item["duration_s"]),
    }


class Notifier:
    def __init__(self, commands: tuple[str, ...], timeout: float, limit: int):
        self.commands = commands
        self.timeout = timeout
        self.queue: deque[dict[str, str]] = deque()
        self.limit = limit
        self.stats = {"queued": 0, "run": 0, "failed": 0, "timed_out": 0, "dropped": 0}
        self._dropping = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self.commands:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="notify")

    def put(self, env: dict[str, str]) -> None:
        """Never blocks: the loop only appends."""
        if not self.commands:
            return
        if len(self.queue) >= self.limit:
            old = self.queue.popleft()
            self.stats["dropped"] += 1
            if not self._dropping:
                log.warning("notify: queue full (%d events), dropping the oldest (event %s, %s) "
                            "and more until it empties (counted in status)", self.limit,
                            old["DNSPAIR_EVENT_ID"], old["DNSPAIR_EVENT"])
            self._dropping = True
        self.queue.append(env)
        self.stats["queued"] = len(self.queue)
        self._idle.clear()
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.queue:
                env = dict(self.queue.popleft(), DNSPAIR_DROPPED=str(self.stats["dropped"]))
                self.stats["queued"] = len(self.queue)
                for cmd in self.commands:
                    await self._one(cmd, env)
            self._dropping = False
            self._idle.set()

    async def _one(self, cmd: str, env: dict[str, str]) -> None:
        what = f"notify: event {env['DNSPAIR_EVENT_ID']} ({env['DNSPAIR_EVENT']}): {cmd!r}"
        try:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", cmd, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
                start_new_session=True, close_fds=True)
        except OSError as e:
            self.stats["failed"] += 1
            log.warning("%s could not start: %s", what, e.strerror or e)
            return
        tail = bytearray()

        async def read() -> None:
            assert proc.stderr is not None
            while chunk := await proc.stderr.read(4096):
                tail.extend(chunk)
                del tail[:-TAIL]
        reader = asyncio.get_running_loop().create_task(read())
        self.stats["run"] += 1
        try:
            rc = await asyncio.wait_for(proc.wait(), self.timeout)
        except TimeoutError:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await proc.wait()
            self.stats["timed_out"] += 1
            log.warning("%s did not finish within %g s: killed", what, self.timeout)
            rc = None
        try:   # a child that left the group may hold stderr open: do not wait for it
            await asyncio.wait_for(reader, 0.5)
        except TimeoutError:
            pass
        if rc:
            self.stats["failed"] += 1
            err = tail.decode("utf-8", "replace").strip().splitlines()
            log.warning("%s exited with %d%s", what, rc, f": {err[-1]}" if err else "")

    async def drain(self, timeout: float) -> None:
        """At stop: let queued events run for up to `timeout`, then give up on the rest."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning("notify: stopping with %d event(s) not delivered", len(self.queue))
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
