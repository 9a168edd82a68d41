"""The image's bind options with a clock that is behind the DNSSEC signatures (a Pi without a
real-time clock, freshly flashed): every answer fails validation except the NTP pool's names,
so systemd-timesyncd can still find its server and set the clock.

One namespace of our own holds two real bind9 servers on TEST-NET-1 addresses on its loopback:
a test root (192.0.2.53) signed with dnssec-signzone, and the resolver (192.0.2.1) running the
appliance's rendered named.conf.options (core/bindconf.py), trusting the test root's key instead of IANA's.
"""
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab as labmod  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ROOT_NS, RESOLVER = "192.0.2.53", "192.0.2.1"
DAY = 86400


def run(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def signed_root(d: Path, inception: int) -> str:
    """A root zone holding the test names, signed with validity from `inception`; returns the
    trust-anchors clause for its key-signing key."""
    d.mkdir()
    (d / "root.db").write_text(
        f". 3600 IN SOA ns.root. admin.root. 1 3600 600 86400 60\n"
        f". 3600 IN NS ns.root.\n"
        f"ns.root. 3600 IN A {ROOT_NS}\n"
        f"0.debian.pool.ntp.org. 60 IN A 192.0.2.123\n"
        f"www.example.com. 60 IN A 192.0.2.80\n")
    ksk = run("dnssec-keygen", "-q", "-K", str(d), "-a", "ECDSAP256SHA256", "-f", "KSK", ".").stdout.strip()
    run("dnssec-keygen", "-q", "-K", str(d), "-a", "ECDSAP256SHA256", ".")
    with open(d / "root.db", "a") as f:
        for key in d.glob("K.+*.key"):
            f.write(key.read_text())
    # -P: its own check would fail, by design, on signatures from the future.
    # -d: the dsset- file goes here; by default it lands in the working directory (the repo).
    run("dnssec-signzone", "-q", "-P", "-K", str(d), "-d", str(d), "-o", ".", "-s", str(inception),
        "-e", str(inception + 30 * DAY), "-f", str(d / "root.db.signed"), str(d / "root.db"))
    assert (d / "dsset-.").is_file()
    assert not list(Path.cwd().glob("dsset-*")) and not list(REPO.glob("dsset-*"))
    flags, proto, alg, key = re.search(r"DNSKEY\s+(\d+)\s+(\d+)\s+(\d+)\s+(.+)$",
                                       (d / f"{ksk}.key").read_text(), re.M).groups()
    return f'trust-anchors {{ . static-key {flags} {proto} {alg} "{key.replace(" ", "")}"; }};'


def resolver_conf(d: Path, anchors: str) -> str:
    """The appliance's options, with this test's directory and this test's root key."""
    from dnspair.core import bindconf, config
    cfg = config.parse((REPO / "example/dnspair.yaml").read_text()
                       + f"bind: {{cache_dir: {d}, run_dir: {d}, etc_dir: {d}}}\n")
    options = bindconf.options(cfg, "dns-pm01", None) + bindconf.key_file(bytes(32))
    # `any` would take the test root's address too: both servers share this namespace.
    assert "listen-on { any; };" in options
    options = options.replace("listen-on { any; };", f"listen-on {{ {RESOLVER}; }};")
    # `auto` means IANA's root key; here the root is the test's, so its key is the anchor.
    assert "dnssec-validation auto;" in options
    options = options.replace("dnssec-validation auto;", "dnssec-validation yes;")
    return options + f'\n{anchors}\ncontrols {{ }};\nzone "." {{ type hint; file "{d}/hints"; }};\n'


def dig(ns, name):
    r = subprocess.run(["ip", "netns", "exec", ns, "dig", "+tries=1", "+time=3", f"@{RESOLVER}",
                        name, "A"], capture_output=True, text=True, timeout=30)
    status = re.search(r"status: (\w+)", r.stdout)
    return ((status.group(1) if status else r.stdout + r.stderr),
            re.findall(r"\sA\s+(192\.0\.2\.\d+)", r.stdout))


@pytest.fixture
def netns():
    why = labmod.requirements_missing()
    if why or not shutil.which("dnssec-signzone") or not shutil.which("dig"):
        pytest.skip(why or "needs dnssec-signzone and dig (bind9-utils, bind9-dnsutils)")
    with labmod.scratch_netns("dpclk", *(["addr", "add", f"{a}/32", "dev", "lo"]
                                         for a in (ROOT_NS, RESOLVER))) as ns:
        yield ns


def serve(ns, tmp, inception):
    """Both servers for a root signed from `inception`; returns their Popen objects."""
    anchors = signed_root(tmp / "root", inception)
    (tmp / "root.conf").write_text(
        f'options {{ directory "{tmp}/root"; pid-file "{tmp}/root/named.pid"; listen-on {{ {ROOT_NS}; }};\n'
        f'  listen-on-v6 {{ none; }}; recursion no; }};\n'
        f'controls {{ }};\nzone "." {{ type primary; file "{tmp}/root/root.db.signed"; }};\n')
    res = tmp / "resolver"
    res.mkdir()
    (res / "hints").write_text(f". 3600 IN NS ns.root.\nns.root. 3600 IN A {ROOT_NS}\n")
    (tmp / "resolver.conf").write_text(resolver_conf(res, anchors))
    procs = []
    for conf in ("root.conf", "resolver.conf"):
        run("named-checkconf", str(tmp / conf))
        procs.append(subprocess.Popen(["ip", "netns", "exec", ns, "named", "-g", "-4", "-c", str(tmp / conf)],
                                      stdout=open(tmp / f"{conf}.log", "w"), stderr=subprocess.STDOUT))
    deadline = time.monotonic() + 30
    while dig(ns, "ns.root")[0] not in ("NOERROR", "SERVFAIL", "NXDOMAIN"):
        assert time.monotonic() < deadline, (tmp / "resolver.conf.log").read_text()[-2000:]
        time.sleep(0.5)
    return procs


def stop(procs):
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.mark.parametrize("clock_behind", [False, True], ids=["clock-right", "clock-behind"])
def test_ntp_names_resolve_when_the_clock_is_behind_the_signatures(netns, tmp_path, clock_behind):
    now = int(time.time())
    # A clock behind by 60 days looks, to the validator, like signatures made 60 days from now.
    procs = serve(netns, tmp_path, now + 60 * DAY if clock_behind else now - DAY)
    try:
        www, ntp = dig(netns, "www.example.com"), dig(netns, "0.debian.pool.ntp.org")
    finally:
        stop(procs)
    log = (tmp_path / "resolver.conf.log").read_text()
    assert ntp == ("NOERROR", ["192.0.2.123"]), log[-2000:]
    if clock_behind:
        assert www == ("SERVFAIL", []), log[-2000:]
        assert "validity period has not begun" in log or "not yet valid" in log, log[-3000:]
    else:
        assert www == ("NOERROR", ["192.0.2.80"]), log[-2000:]
