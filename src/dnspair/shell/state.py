"""The node's persistent state directory (`state_dir`, default /var/lib/dnspair).

Today it holds the start counter behind the incarnation. Written atomically (temp file,
fsync, rename); a missing or corrupt file starts again from 0 with one warning: the random
nonce keeps the new incarnation unique all the same.
"""
from __future__ import annotations

import logging
import os
import secrets

from ..core import wire

log = logging.getLogger("dnspair")


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


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
