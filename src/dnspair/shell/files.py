"""Reading the config and key files, with the permission rules ssh uses for keys."""
from __future__ import annotations

import os
import secrets
import stat

from ..core.config import Config, ConfigError, parse, parse_key

MAX_CONFIG = 1 << 20
MAX_KEY_FILE = 4096


def load_config(path: str) -> Config:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG + 1)
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror}"]) from None
    if len(data) > MAX_CONFIG:
        raise ConfigError([f"{path}: larger than {MAX_CONFIG >> 20} MiB: not a dnspair config"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError([f"{path}:{line}: not UTF-8 text (byte {e.start})"]) from None
    return parse(text, path)


def load_key(path: str) -> bytes:
    try:
        st = os.stat(path)
    except OSError as e:
        raise ConfigError([f"{path}: cannot read key file: {e.strerror} "
                           "(make one with `dnspair keygen`)"]) from None
    if st.st_mode & 0o077:
        raise ConfigError([f"{path}: key file is accessible by group or others (mode "
                           f"{stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}"])
    if st.st_uid not in (0, os.getuid()):
        raise ConfigError([f"{path}: key file must belong to root"])
    with open(path, encoding="ascii", errors="replace") as f:
        text = f.read(MAX_KEY_FILE + 1)
    if len(text) > MAX_KEY_FILE:  # never cut: whatever follows would be silently ignored
        raise ConfigError([f"{path}: larger than {MAX_KEY_FILE} bytes: not a dnspair key file"])
    return parse_key(text, path)


def write_key(path: str, force: bool = False) -> None:
    """A new random key, created 0600 from the start (never briefly readable)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o755, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
    finally:
        os.close(fd)
