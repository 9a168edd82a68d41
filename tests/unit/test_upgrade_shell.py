"""The bundle checks and the release switch of shell/upgrade.py (no daemon, no venv needed)."""
import hashlib
import io
import json
import os
import platform
import tarfile

import pytest

from dnspair.shell import upgrade as up


def make(tmp_path, machine=None, extra=None, manifest=True, name="b.tar.gz"):
    path = tmp_path / name
    files = {"wheels/x.whl": b"wheel", "constraints.txt": b"a==1\n"}
    with tarfile.open(path, "w:gz") as tar:
        def add(n, data):
            info = tarfile.TarInfo(f"dnspair-update/{n}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for n, d in files.items():
            add(n, d)
        if manifest:
            add("MANIFEST.json", json.dumps({
                "format": 1, "version": "9.9", "machine": machine or platform.machine(),
                "files": {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}}).encode())
        if extra:
            extra(tar)
    (tmp_path / (name + ".sha256")).write_text(hashlib.sha256(path.read_bytes()).hexdigest() + f"  {name}\n")
    return str(path)


def test_bundle_checks(tmp_path):
    b = up.read_bundle(make(tmp_path))
    assert b.version == "9.9" and b.machine == platform.machine()
    with pytest.raises(up.BundleError, match="is for sparc64"):
        up.read_bundle(make(tmp_path, machine="sparc64", name="m.tar.gz"))
    with pytest.raises(up.BundleError, match="MANIFEST"):
        up.read_bundle(make(tmp_path, manifest=False, name="n.tar.gz"))
    p = make(tmp_path, name="c.tar.gz")
    with open(p, "ab") as f:
        f.write(b"x")
    with pytest.raises(up.BundleError, match="does not match"):
        up.read_bundle(p)
    os.unlink(p + ".sha256")
    with pytest.raises(up.BundleError, match="sha256 is missing"):
        up.read_bundle(p)


def test_links_and_escapes_are_refused_on_extraction(tmp_path):
    def link(tar):
        info = tarfile.TarInfo("dnspair-update/evil")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tar.addfile(info)
    with tarfile.open(make(tmp_path, extra=link)) as tar, pytest.raises(up.BundleError, match="evil"):
        up._extract(tar, str(tmp_path / "x"))
    assert not (tmp_path / "x" / "dnspair-update").exists()


def test_switch_replaces_the_link_and_never_leaves_it_missing(tmp_path):
    a, b = tmp_path / "rel-a", tmp_path / "rel-b"
    a.mkdir()
    b.mkdir()
    link = tmp_path / "dnspair"
    link.symlink_to(a)
    host = up.Host.__new__(up.Host)
    host.link = str(link)
    host.switch(str(b))
    assert os.path.realpath(link) == str(b) and host.current() == str(b)
    assert not os.path.lexists(str(link) + ".new")
    link.unlink()
    link.mkdir()
    with pytest.raises(up.BundleError, match="predates rolling upgrades"):
        host.current()


def test_find_bundle_takes_the_newest_unless_it_runs_already(tmp_path):
    m = platform.machine()
    for i, v in enumerate(("1.0", "1.1")):
        p = tmp_path / f"dnspair-update-{v}-{m}.tar.gz"
        p.write_bytes(b"")
        os.utime(p, (1000 + i, 1000 + i))
    assert up.find_bundle(str(tmp_path), "1.0").endswith(f"-1.1-{m}.tar.gz")
    assert up.find_bundle(str(tmp_path), "1.1") is None   # never back to 1.0
    assert up.find_bundle(str(tmp_path / "none"), None) is None


def test_an_unknown_bundle_path_is_named_as_such(tmp_path):
    with pytest.raises(up.BundleError, match="no such bundle"):
        up.read_bundle(str(tmp_path / "nope.tar.gz"))
    with pytest.raises(up.BundleError, match="not a file"):
        up.read_bundle(str(tmp_path))


@pytest.mark.parametrize("argv, says", [
    (["--bundle", "/nonexistent/dnspair-update-9.9-x.tar.gz"], "no such bundle"),
    (["--no-apt"], "upgrade refused: the daemon does not answer"),
])
def test_bad_upgrade_input_is_one_line_a_nonzero_exit_and_changes_nothing(tmp_path, argv, says):
    """No daemon answers here (its control socket does not exist): like a peer that is down,
    the upgrade must be refused before anything is written."""
    import subprocess
    import sys
    from pathlib import Path
    example = (Path(__file__).resolve().parents[2] / "example" / "dnspair.yaml").read_text()
    key = tmp_path / "authkey"
    key.write_text("ab" * 32 + "\n")
    key.chmod(0o600)
    cfg = tmp_path / "dnspair.yaml"
    cfg.write_text("\n".join(line for line in example.splitlines() if not line.startswith("key_file:"))
                   + f"\nkey_file: {key}\nstate_dir: {tmp_path}/state\nruntime_dir: {tmp_path}/run\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    r = subprocess.run([sys.executable, "-m", "dnspair", "upgrade", "--config", str(cfg), *argv],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and says in r.stderr, (r.returncode, r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and not r.stdout, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before
