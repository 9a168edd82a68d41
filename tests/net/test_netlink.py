"""shell/netlink.py against the kernel: addresses as `ip` then shows them, carrier as the link's
state, and the link events it hears. In a namespace of its own with one veth pair (no address
outside TEST-NET-1 and 2001:db8::/32)."""
import json
import os
import queue
import subprocess
import sys
import threading
import time

import pytest

import lab as labmod

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")

RUN = """
import asyncio, json, subprocess, sys
from dnspair.shell.netlink import Netlink
async def main():
    nl = Netlink()
    await nl.open()
    out = []
    try:
        for op, *args in json.loads(sys.argv[1]):
            if op == "run":   # a shell command between two calls
                subprocess.run(args[0], shell=True, check=True)
                out.append(None)
                continue
            try:
                r = await getattr(nl, op)(*args)
                out.append(sorted(r) if isinstance(r, set) else r)
            except Exception as e:
                out.append(f"{type(e).__name__}: {e}")
    finally:
        await nl.close()
    print(json.dumps(out))
asyncio.run(main())
"""

WATCH = """
import asyncio, sys
from dnspair.shell.netlink import watch_carrier
print("ready", flush=True)
asyncio.run(watch_carrier({"v0"}, lambda n, up: print(n, up, flush=True)))
"""


@pytest.fixture
def ns():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    with labmod.scratch_netns("dpnl", ["link", "add", "v0", "type", "veth", "peer", "name", "v0p"],
                              ["link", "set", "v0", "up"], ["link", "set", "v0p", "up"]) as name:
        yield name


def netlink(ns, *ops):
    r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", RUN, json.dumps(ops)],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=SRC), timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def shown(ns, dev="v0"):
    return subprocess.run(["ip", "-n", ns, "-o", "addr", "show", "dev", dev],
                          capture_output=True, text=True, check=True).stdout


def test_add_and_remove_are_what_ip_shows_and_idempotent(ns):
    assert netlink(ns, ["add", "v0", "192.0.2.11", 24], ["add", "v0", "192.0.2.11", 24],
                   ["add", "v0", "2001:db8::11", 64]) == [None, None, None]
    text = shown(ns)
    assert "inet 192.0.2.11/24" in text
    v6 = next(line for line in text.splitlines() if "2001:db8::11/64" in line)
    assert "tentative" not in v6   # no duplicate address detection: it serves at once
    got = netlink(ns, ["addresses", "v0"])[0]
    assert [a for a in got if not a.startswith("fe80:")] == ["192.0.2.11", "2001:db8::11"], got
    out = netlink(ns, ["remove", "v0", "192.0.2.11", 24], ["remove", "v0", "192.0.2.11", 24],
                  ["remove", "v0", "2001:db8::11", 64], ["remove", "nosuch", "192.0.2.11", 24],
                  ["addresses", "v0"])
    assert out[:4] == [None] * 4 and [a for a in out[4] if not a.startswith("fe80:")] == [], out
    assert "192.0.2.11" not in shown(ns) and "2001:db8::11" not in shown(ns)


def test_refusals_are_errors_and_a_missing_interface_is_a_lookup_error(ns):
    out = netlink(ns, ["add", "nosuch", "192.0.2.11", 24], ["add", "v0", "192.0.2.11", 99],
                  ["addresses", "nosuch"], ["carrier", "nosuch"])
    assert out[0] == "LookupError: no interface nosuch"
    assert out[1].startswith("NetlinkError: [Errno 22]"), out[1]   # EINVAL: prefix length 99
    assert out[2:] == [[], False]


def test_an_interface_made_again_gets_its_new_index(ns):
    """The index is cached; a VIP's interface deleted and made again (a new index) still takes
    the address, through one lookup again on ENODEV."""
    # one process: the first add caches the index, the link is remade, the second add must work
    remake = ["run", "ip link del v0 && ip link add v0 type veth peer name v0p"]
    assert netlink(ns, ["add", "v0", "192.0.2.11", 24], remake, ["add", "v0", "192.0.2.12", 24]) == \
        [None, None, None]
    assert "inet 192.0.2.12/24" in shown(ns)


def test_carrier_follows_the_link_and_the_peer(ns):
    assert netlink(ns, ["carrier", "v0"]) == [True]
    subprocess.run(["ip", "-n", ns, "link", "set", "v0p", "down"], check=True)   # the cable's far end
    assert netlink(ns, ["carrier", "v0"]) == [False]
    subprocess.run(["ip", "-n", ns, "link", "set", "v0p", "up"], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", "v0", "down"], check=True)    # our end, admin down
    assert netlink(ns, ["carrier", "v0"]) == [False]


def test_watch_carrier_reports_each_change_of_the_watched_link_only(ns):
    p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", WATCH], stdout=subprocess.PIPE,
                         text=True, env=dict(os.environ, PYTHONPATH=SRC))
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x.strip()) for x in p.stdout], daemon=True).start()
    seen = []

    def until(wanted):
        while not seen or seen[-1] != wanted:
            try:
                seen.append(lines.get(timeout=10))
            except queue.Empty:
                raise AssertionError(f"no {wanted!r} within 10 s; saw {seen}") from None
    try:
        until("ready")
        time.sleep(0.5)   # the socket is bound a moment after "ready"
        ip = ["ip", "-n", ns, "link"]
        subprocess.run([*ip, "add", "other", "type", "veth", "peer", "name", "otherp"], check=True)
        subprocess.run([*ip, "set", "other", "up"], check=True)   # not watched: no line
        subprocess.run([*ip, "set", "v0p", "down"], check=True)   # the cable's far end
        until("v0 False")
        subprocess.run([*ip, "set", "v0p", "up"], check=True)
        until("v0 True")
        subprocess.run([*ip, "del", "v0"], check=True)   # the interface gone: no carrier
        until("v0 False")
        assert set(seen) == {"ready", "v0 False", "v0 True"}, seen
    finally:
        p.kill()
        p.wait()
