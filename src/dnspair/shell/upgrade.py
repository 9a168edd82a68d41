"""`dnspair upgrade`: thin adapters for what the planner (core/upgrade.py) asks, and its loop.

Adapters: the daemon's control socket, the update bundle (checksum, a new release venv, the
atomic switch of /opt/dnspair), apt-get, the reboot, `systemctl restart dnspair`. The paths and
commands can be changed through DNSPAIR_UPGRADE_* variables (the namespace tests use that to
run real daemons without systemd); the defaults are the appliance's.

Layout on the node: /opt/dnspair is a symlink to /opt/dnspair-releases/VERSION-HASH, a venv;
the unit runs /opt/dnspair/bin/dnspair. A bundle becomes a new release next to the running
one; the symlink is replaced with rename(2) (atomic), and only the current and the previous
release are kept, so the previous one is there to roll back to.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass

from ..core import upgrade as plan
from ..core.config import Config
from . import control
from .state import write_atomic

LINK = "/opt/dnspair"
RELEASES = "/opt/dnspair-releases"
REBOOT_FLAG = "/var/run/reboot-required"
BUNDLE_FORMAT = 1


class BundleError(Exception):
    """One line: why a bundle is refused."""


@dataclass(frozen=True)
class Bundle:
    path: str
    version: str
    machine: str
    sha256: str


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _manifest(tar: tarfile.TarFile) -> dict:
    try:
        f = tar.extractfile("dnspair-update/MANIFEST.json")
        m = json.load(f) if f else None
    except (KeyError, ValueError) as e:
        raise BundleError(f"no readable MANIFEST.json ({e})") from None
    if not isinstance(m, dict) or m.get("format") != BUNDLE_FORMAT or not isinstance(m.get("files"), dict):
        raise BundleError("MANIFEST.json is not a dnspair update bundle of format 1")
    if not isinstance(m.get("version"), str) or not isinstance(m.get("machine"), str):
        raise BundleError("MANIFEST.json has no version or machine")
    return m


def _extract(tar: tarfile.TarFile, into: str) -> None:
    """Plain files and directories under dnspair-update/ only (bookworm's 3.11.2 has no
    extraction filters): no links, devices, absolute paths or `..`."""
    members = tar.getmembers()
    for m in members:
        parts = m.name.split("/")
        if (not (m.isfile() or m.isdir()) or m.name.startswith("/") or ".." in parts
                or parts[0] != "dnspair-update"):
            raise BundleError(f"refusing bundle member {m.name!r}")
        m.mode &= 0o755
    tar.extractall(into, members=members)


def read_bundle(path: str) -> Bundle:
    """Checks the tarball against its .sha256 file and its manifest; BundleError otherwise."""
    if not os.path.isfile(path):
        raise BundleError(f"{path}: no such bundle" if not os.path.exists(path) else f"{path}: not a file")
    try:
        with open(path + ".sha256") as f:
            want = f.read().split()[0].lower()
    except (OSError, IndexError):
        raise BundleError(f"{path}.sha256 is missing: a bundle is only installed with its checksum") from None
    try:
        got = _sha256(path)
    except OSError as e:
        raise BundleError(f"{path}: cannot read: {e.strerror}") from None
    if got != want:
        raise BundleError(f"{path}: SHA-256 {got[:16]}... does not match {path}.sha256 ({want[:16]}...)")
    try:
        with tarfile.open(path) as tar:
            m = _manifest(tar)
    except tarfile.TarError as e:
        raise BundleError(f"{path}: not a tarball ({e})") from None
    if m["machine"] != platform.machine():
        raise BundleError(f"{path} is for {m['machine']}, this node is {platform.machine()}")
    return Bundle(path, m["version"], m["machine"], got)


def find_bundle(directory: str, running: str | None) -> str | None:
    """The newest bundle for this machine in `directory`, unless it is the running version
    (an older one is never picked: that would be a downgrade)."""
    try:
        names = sorted(os.listdir(directory), key=lambda n: os.path.getmtime(os.path.join(directory, n)))
    except OSError:
        return None
    for name in reversed(names):
        if name.endswith(f"-{platform.machine()}.tar.gz") and name.startswith("dnspair-update-"):
            version = name[len("dnspair-update-"):-len(f"-{platform.machine()}.tar.gz")]
            return None if version == running else os.path.join(directory, name)
    return None


def _run(cmd: list[str], timeout: float = 3600, env: dict | None = None) -> str | None:
    """None, or the command's last line of output as the error."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{shlex.join(cmd)}: {e}"
    if r.returncode != 0:
        last = (r.stderr.strip() or r.stdout.strip() or "").splitlines()[-1:] or [""]
        return f"{shlex.join(cmd[:3])} exited with {r.returncode}: {last[0]}"[:300]
    return None


class Host:
    def __init__(self, cfg: Config, config_path: str, env=os.environ):
        self.cfg, self.config_path = cfg, config_path
        self.link = env.get("DNSPAIR_UPGRADE_LINK", LINK)
        self.releases = env.get("DNSPAIR_UPGRADE_RELEASES", RELEASES)
        self.reboot_flag = env.get("DNSPAIR_UPGRADE_REBOOT_FLAG", REBOOT_FLAG)
        self.python = env.get("DNSPAIR_UPGRADE_PYTHON", "/usr/bin/python3")
        self.restart_cmd = shlex.split(env.get("DNSPAIR_UPGRADE_RESTART",
                                               "systemctl restart dnspair.service"))
        self.reboot_cmd = shlex.split(env.get("DNSPAIR_UPGRADE_REBOOT", "systemctl reboot"))
        self.apt = shlex.split(env.get("DNSPAIR_UPGRADE_APT", "apt-get"))
        self.job_path = os.path.join(cfg.state_dir, "upgrade.json")
        self.last_path = os.path.join(cfg.state_dir, "upgrade.last.json")

    # --- the job file ------------------------------------------------------------------------

    def load(self, now: float) -> plan.Job | None:
        try:
            with open(self.job_path) as f:
                return plan.from_json(json.load(f), now)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise RuntimeError(f"{self.job_path}: unreadable upgrade job ({e})") from None

    def save(self, job: plan.Job) -> None:
        os.makedirs(self.cfg.state_dir, mode=0o750, exist_ok=True)
        write_atomic(self.job_path, json.dumps(plan.to_json(job), indent=1) + "\n")

    def finish(self, job: plan.Job) -> None:
        """The job is over: kept as upgrade.last.json, so a new one may start."""
        write_atomic(self.last_path, json.dumps(plan.to_json(job), indent=1) + "\n")
        try:
            os.unlink(self.job_path)
        except FileNotFoundError:
            pass

    # --- observing ---------------------------------------------------------------------------

    def status(self) -> dict | None:
        try:
            reply = control.request(self.cfg.control.socket, {"cmd": "status"})
        except control.ControlError:
            return None
        return reply.get("status") if reply.get("ok") else None

    def command(self, cmd: str, text: str | None = None) -> str | None:
        req = {"cmd": cmd} if text is None else {"cmd": cmd, "text": text}
        try:
            reply = control.request(self.cfg.control.socket, req)
        except control.ControlError as e:
            return str(e)
        return None if reply.get("ok") else str(reply.get("error", "refused"))

    def local_dns(self) -> str | None:
        import dns.exception
        import dns.message
        import dns.query

        from .dnsprobe import judge
        c = self.cfg.dns_check
        try:
            reply = dns.query.udp(dns.message.make_query(c.query, c.type), c.server, timeout=2.0, port=c.port)
        except (dns.exception.DNSException, OSError) as e:
            return f"{c.query} {c.type} @{c.server}: {type(e).__name__}"
        return judge(c, reply)

    def config_check(self) -> str | None:
        return _run([os.path.join(self.link, "bin", "dnspair"), "check-config", "--key", self.config_path],
                    timeout=120)

    def observe(self, job: plan.Job, now: float) -> plan.Seen:
        st = self.status()
        seen = plan.Seen(now, st, os.path.exists(self.reboot_flag))
        # The slower checks only when the rest says healthy (a Pi 2B takes seconds per check-config).
        if job.phase == "verify" and plan.unhealthy(job, seen) is None:
            seen = plan.Seen(now, st, seen.reboot_required, self.local_dns(), self.config_check())
        return seen

    # --- acting ------------------------------------------------------------------------------

    def current(self) -> str:
        if not os.path.islink(self.link):
            raise BundleError(f"{self.link} is not a symlink to a release: this install predates "
                              f"rolling upgrades (reflash with an image built by this version)")
        return os.path.realpath(self.link)

    def switch(self, release: str) -> None:
        tmp = self.link + ".new"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(release, tmp)
        os.replace(tmp, self.link)
        fd = os.open(os.path.dirname(self.link) or "/", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def restart(self) -> str | None:
        return _run(self.restart_cmd, timeout=180)

    def install(self, path: str) -> tuple[str | None, dict[str, str]]:
        """Bundle -> new release -> switch -> restart. The switch comes last of the checks,
        so any error before it leaves the running release untouched."""
        try:
            b = read_bundle(path)
            previous = self.current()
        except BundleError as e:
            return str(e), {}
        os.makedirs(self.releases, exist_ok=True)
        release = os.path.join(os.path.realpath(self.releases), f"{b.version}-{b.sha256[:8]}")
        if release == previous:
            return f"dnspair {b.version} from this bundle is already the running release", {}
        work = tempfile.mkdtemp(prefix=".incoming-", dir=self.releases)
        try:
            with tarfile.open(path) as tar:
                _extract(tar, work)
            top = os.path.join(work, "dnspair-update")
            with open(os.path.join(top, "MANIFEST.json")) as f:
                files = json.load(f)["files"]
            for name, digest in files.items():
                if _sha256(os.path.join(top, name)) != digest:
                    return f"{path}: {name} does not match MANIFEST.json", {}
            shutil.rmtree(release, ignore_errors=True)
            err = (_run([self.python, "-m", "venv", "--system-site-packages", release])
                   or _run([os.path.join(release, "bin", "pip"), "install", "-q",
                            "--disable-pip-version-check",
                            "--no-index", "--find-links", os.path.join(top, "wheels"),
                            "-c", os.path.join(top, "constraints.txt"), f"dnspair=={b.version}"]))
            new = os.path.join(release, "bin", "dnspair")
            err = err or _run([new, "check-config", "--key", self.config_path], timeout=120)
            if err:
                shutil.rmtree(release, ignore_errors=True)
                return f"the new release did not install: {err}", {}
        except (OSError, tarfile.TarError, ValueError, KeyError, BundleError) as e:
            shutil.rmtree(release, ignore_errors=True)
            return f"{path}: {e}", {}
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self.switch(release)
        for name in os.listdir(self.releases):   # keep the new one and the one to roll back to
            p = os.path.join(os.path.realpath(self.releases), name)
            if p not in (release, previous) and not name.startswith("."):
                shutil.rmtree(p, ignore_errors=True)
        info = {"previous": previous, "release": release}
        return self.restart(), info

    def roll_back(self, release: str) -> str | None:
        if not os.path.isdir(release):
            return f"{release} is gone"
        self.switch(release)
        return self.restart()

    def apt_upgrade(self) -> str | None:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        return (_run([*self.apt, "-q", "update"], env=env)
                or _run([*self.apt, "-q", "-y", "-o", "Dpkg::Options::=--force-confdef",
                         "-o", "Dpkg::Options::=--force-confold", "upgrade"], env=env))

    def reboot(self) -> str | None:
        return _run(self.reboot_cmd, timeout=120)

    def perform(self, job: plan.Job, act: plan.Action) -> tuple[str | None, dict[str, str]]:
        match act:
            case plan.Maintenance(text):
                return self.command("maintenance", text), {}
            case plan.Standby(on):
                return self.command("standby" if on else "unstandby"), {}
            case plan.InstallBundle():
                assert job.bundle is not None
                return self.install(job.bundle)
            case plan.AptUpgrade():
                return self.apt_upgrade(), {}
            case plan.Reboot():
                return self.reboot(), {}
            case plan.RollBack(release):
                return self.roll_back(release), {}
        raise ValueError(f"not an adapter action: {act!r}")


def _say(text: str) -> None:
    print(text, flush=True)   # under systemd stdout is a pipe to the journal: no block buffering


def run(host: Host, job: plan.Job, bounds: plan.Bounds, say=_say, clock=time.monotonic,
        sleep=time.sleep) -> int:
    """Drive the planner until it finishes; the job is saved after every change."""
    pending: list[plan.Action] = []
    while True:
        if not pending:
            job, pending = plan.step(job, host.observe(job, clock()), bounds)
            host.save(job)
            if not pending:   # a phase change with nothing to do: step again at once
                continue
        act = pending.pop(0)
        if isinstance(act, plan.Finish):
            host.finish(job)
            say(("dnspair upgrade: " if act.ok else "dnspair upgrade: FAILED: ") + act.message)
            return 0 if act.ok else 1
        if isinstance(act, plan.Wait):
            sleep(act.seconds)
            continue
        say(f"dnspair upgrade: {job.node}: {_describe(act)}")
        if isinstance(act, plan.Reboot):
            host.save(job)
        error, info = host.perform(job, act)
        if error:
            say(f"dnspair upgrade: {_describe(act)}: {error}")
        job, more = plan.done(job, act, error, info, clock())
        host.save(job)
        if more:
            pending = more
        elif isinstance(act, plan.Reboot) and error is None:
            say("dnspair upgrade: rebooting; dnspair-upgrade-resume.service finishes after boot")
            sleep(600)
            pending = [plan.Finish(False, "the reboot was asked for but did not happen within 600 s")]


def _describe(act: plan.Action) -> str:
    match act:
        case plan.Maintenance(text):
            return f"maintenance {text}"
        case plan.Standby(on):
            return "standby" if on else "unstandby"
        case plan.InstallBundle():
            return "installing the dnspair bundle"
        case plan.AptUpgrade():
            return "apt-get upgrade"
        case plan.Reboot():
            return "reboot"
        case plan.RollBack(release):
            return f"rolling back to {release}"
    return type(act).__name__
