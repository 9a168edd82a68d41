"""build.sh refuses bad input with one clear line and a non-zero exit, and a failed build leaves
nothing behind (no mounts, no work directory, no partial images)."""
import os
import subprocess

import pytest

from imagehelpers import EXAMPLE, REPO

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="build.sh needs root")


def build(*args, timeout=120):
    return subprocess.run([f"{REPO}/build.sh", *args], capture_output=True, text=True, timeout=timeout)


def one_error_line(r):
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("build.sh: error: ")]
    assert len(errors) == 1, r.stderr
    return errors[0]


@pytest.fixture
def pubkey(tmp_path):
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return str(key)


@pytest.mark.parametrize("args, message", [
    ([], "--config FILE is required"),
    (["--config", "/nonexistent.yaml", "--ssh-key", "K"], "config not found: /nonexistent.yaml"),
    (["--config", EXAMPLE], "--ssh-key FILE is required"),
    (["--config", EXAMPLE, "--ssh-key", "/nonexistent.pub"], "SSH public key not found"),
    (["--config", EXAMPLE, "--ssh-key", "PUB", "--arch", "i386"], "--arch must be arm64 or armhf"),
    (["--config", EXAMPLE, "--ssh-key", "PUB", "--arch", "dns-pm02=i386"], "--arch must be arm64 or armhf"),
    (["--config", EXAMPLE, "--ssh-key", "PUB", "--arch", "dns-pm09=armhf"],
     "--arch dns-pm09=armhf: dns-pm09 is not a node"),
    (["--config", EXAMPLE, "--ssh-key", "PUB", "--arch", "armhf", "--base", EXAMPLE,
      "--base-sha256", "0" * 64],
     "--base takes the 64-bit Raspberry Pi OS Lite image only"),
    (["--config", EXAMPLE, "--ssh-key", "PUB", "--xz-level", "fast"], "--xz-level must be 0-9"),
    (["--config", EXAMPLE, "--ssh-key", "PUB", "--image-url", "example.org/pair"],
     "--image-url must be an http://, https:// or file:/// URL"),
    (["--config", EXAMPLE, "--ssh-key", "PUB", "--base", EXAMPLE], "--base needs --base-sha256"),
    (["--config", EXAMPLE, "--ssh-key", "PUB", "--authkey", EXAMPLE], "is not a dnspair key"),
    (["--config", EXAMPLE, "--ssh-key", "PUB", "--authkey", "/nonexistent.key"], "key file not found"),
    (["--config", EXAMPLE, "--ssh-key", "PUB", "--frobnicate"], "unknown argument: --frobnicate"),
    (["--config", EXAMPLE, "--ssh-key", "PUB", "--node"], "--node needs a value"),
])
def test_bad_arguments(args, message, pubkey):
    args = [f"{pubkey}.pub" if a == "PUB" else a for a in args]
    assert message in one_error_line(build(*args))


def test_a_private_key_is_not_taken_for_a_public_one(pubkey):
    r = build("--config", EXAMPLE, "--ssh-key", pubkey)
    assert "does not look like an SSH public key" in one_error_line(r)


def test_config_the_image_cannot_place_is_refused_before_building(pubkey, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(open(EXAMPLE).read().replace("addresses: [192.0.2.2]", "addresses: [198.51.100.2]"))
    line = one_error_line(
        build("--config", str(bad), "--ssh-key", f"{pubkey}.pub", "--out", str(tmp_path / "out")))
    assert "node dns-pm02 address 198.51.100.2 is in no VIP's network" in line
    assert "node 'nope' is not in the config" in one_error_line(
        build("--config", EXAMPLE, "--ssh-key", f"{pubkey}.pub", "--node", "nope",
              "--out", str(tmp_path / "out")))


def test_base_image_with_wrong_checksum_is_refused(pubkey, tmp_path):
    fake = tmp_path / "raspios.img.xz"
    fake.write_bytes(b"not an image")
    line = one_error_line(build("--config", EXAMPLE, "--ssh-key", f"{pubkey}.pub", "--base", str(fake),
                                "--base-sha256", "0" * 64, "--out", str(tmp_path / "out")))
    assert "SHA-256 does not match" in line


@pytest.mark.image
def test_a_build_failing_inside_the_chroot_cleans_up(pubkey, tmp_path):
    """dnspair check-config rejects this config in step 30, while /proc, /sys, /dev are mounted
    in the ARM chroot: afterwards nothing is mounted, no work directory and no output remain."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(open(EXAMPLE).read().replace("failback: manual", "failback: sometimes"))
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    r = subprocess.run([f"{REPO}/build.sh", "--config", str(bad), "--ssh-key", f"{pubkey}.pub",
                        "--out", str(out)], capture_output=True, text=True, timeout=3600,
                       env=dict(os.environ, DNSPAIR_WORKDIR=str(work)))
    assert "dnspair check-config rejected" in one_error_line(r)
    with open("/proc/mounts") as f:
        assert [line for line in f if str(work) in line] == []
    assert os.listdir(work) == []
    assert os.listdir(out) == []
