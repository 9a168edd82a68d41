"""bind's built-in empty zones against the pair's local zones, on a real named.

With recursion on and no forwarders (the example's config), bind 9.18 makes empty zones for
home.arpa and the TEST-NET/private reverse zones. On the secondary such a zone holds the name, so
the catalog cannot add the real one and its VIP answers NXDOMAIN for every local name: the booted
pair test found it. named runs in a namespace of its own with only loopback, so nothing it would
recurse to can be reached, and the primary it names (TEST-NET-1) is never there.
"""
import os
import re
import subprocess
import time

import pytest

import lab as labmod
from dnspair.core import config
from dnspair.shell import bindfiles

pytestmark = pytest.mark.net

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "example", "dnspair.yaml")
PORT = 5399


def run(ns, *cmd, check=True):
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                          check=check, timeout=30)


@pytest.fixture
def bare_ns():
    if os.geteuid() != 0:
        pytest.skip("needs root for a network namespace")
    with labmod.scratch_netns("dpempty") as name:
        yield name


def secondary(tmp_path, body):
    """The example's dns-pm02 (the secondary) rendered under tmp_path, with `body` applied."""
    text = open(EXAMPLE).read()
    key = tmp_path / "authkey"
    key.write_text(bytes(range(32)).hex() + "\n")
    key.chmod(0o600)
    b = tmp_path / "b"
    text = re.sub(r"^key_file: .*$", f"key_file: {key}", text, flags=re.M)
    text += (f"bind: {{etc_dir: {b}/etc, zone_dir: {b}/zones, cache_dir: {b}/cache, "
             f"run_dir: {b}/run}}\n")
    cfg = config.parse(text, "dnspair.yaml")
    assert cfg.dns and not cfg.dns.forwarders, "the example recurses itself: that makes the empty zones"
    bindfiles.apply(cfg, "dns-pm02", bytes(range(32)))
    for d in ("cache", "run"):
        (b / d).mkdir(exist_ok=True)
    opts = b / "etc" / "named.conf.options"
    opts.write_text(body(opts.read_text()))
    conf = b / "etc" / "named.conf"
    conf.write_text(f'include "{opts}";\ninclude "{b}/etc/named.conf.local";\n')
    return conf


def home_arpa_soa(ns, conf):
    """What the secondary's named answers for home.arpa SOA, asked on loopback."""
    named = subprocess.Popen(["ip", "netns", "exec", ns, "named", "-g",
                              "-c", str(conf), "-p", str(PORT)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            r = run(ns, "dig", "+norec", "+time=1", "+tries=1", "-p", str(PORT), "@127.0.0.1",
                    "home.arpa", "SOA", check=False)
            if "status:" in r.stdout or time.monotonic() > deadline:
                return r.stdout
            time.sleep(0.3)
    finally:
        named.terminate()
        named.wait(10)


def authoritative(dig_out):
    flags = re.search(r";; flags: ([^;]*);", dig_out)
    return "status: NOERROR" in dig_out and bool(flags) and "aa" in flags.group(1).split()


def test_the_secondary_has_no_empty_home_arpa_to_hide_the_catalogs(bare_ns, tmp_path):
    conf = secondary(tmp_path, lambda t: t)
    assert 'disable-empty-zone "home.arpa";' in conf.with_name("named.conf.options").read_text()
    out = home_arpa_soa(bare_ns, conf)
    # no primary here to transfer from: the secondary has no home.arpa of its own, and points
    # up the tree (a referral, not authoritative) instead of answering from an empty zone
    assert not authoritative(out) and not re.search(r"SOA\s+\S+ \S+ 0 ", out), out
    # the check bites: the same config without the lines is bind's empty zone, serial 0
    conf = secondary(tmp_path, lambda t: "\n".join(ln for ln in t.splitlines()
                                                   if "disable-empty-zone" not in ln) + "\n")
    out = home_arpa_soa(bare_ns, conf)
    assert authoritative(out) and re.search(r"SOA\s+\S+ \S+ 0 ", out), out
