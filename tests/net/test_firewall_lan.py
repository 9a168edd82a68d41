"""The generated nftables ruleset, loaded by `dnspair firewall --apply` into node1's namespace
and tried from real hosts: the peer, LAN hosts, a monitoring host, an SSH admin host and a host
outside the LAN, each its own source address. Listeners stand in for the daemon, sshd and NRPE;
DNS is node1's real bind."""
import socket
import subprocess
import sys
import time

import lab as labmod
from lab import dns_query_packet
from pair import config_text

NODE1 = "192.0.2.1"
# The client namespace's addresses: the VIPs' network is 192.0.2.0/28 here, so .5 is on the LAN
# and .100 is not.
LAN_HOST, OUTSIDE, MONITOR, ADMIN = "192.0.2.5", "192.0.2.100", "192.0.2.101", "192.0.2.102"
LISTENERS = r"""
import socket, threading
def udp_echo():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("192.0.2.1", 7405))
    while True:
        data, addr = s.recvfrom(2048)
        s.sendto(b"echo " + data, addr)
def tcp(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(16)
    while True:
        c, _ = s.accept()
        c.sendall(b"hello %d\n" % port)
        c.close()
for port in (22, 5666, 8053, 9100):
    threading.Thread(target=tcp, args=(port,), daemon=True).start()
udp_echo()
"""


def udp(lab, where, source, port=7405, data=b"hb"):
    """The answer to one datagram from `source`, or None (nothing within a second)."""
    s = lab.socket(where)
    s.settimeout(1.0)
    try:
        if source:
            s.bind((source, 0))
        s.sendto(data, (NODE1, port))
        return s.recvfrom(2048)[0]
    except (TimeoutError, ConnectionRefusedError):
        return None
    finally:
        s.close()


def tcp(lab, source, port):
    """What the listener says on connect from `source`, or None (no answer within a second)."""
    s = lab.socket("client", socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.bind((source, 0))
        s.connect((NODE1, port))
        return s.recv(64)
    except (TimeoutError, ConnectionRefusedError):
        return None
    finally:
        s.close()


def dns(lab, source):
    got = udp(lab, "client", source, 53, dns_query_packet("test.example"))
    return got is not None and len(got) > 12


def dropped(lab):
    out = lab.run("node1", "nft", "list", "counter", "inet", "dnspair", "dropped").stdout
    return int(out.split("packets ")[1].split()[0])


def write_config(lab, monitoring):
    text = config_text(lab, "status_http: {listen: '0.0.0.0:8053'}\n"
                            f"firewall: {{monitoring: [{monitoring}], ssh_from: [{ADMIN}]}}\n")
    path = lab.workdir / "fw.yaml"
    path.write_text(text.replace("/24", "/28"))
    return path


def apply(lab, cfg, include_dir):
    r = lab.dnspair_cli("node1", "firewall", "--apply", "--config", cfg, "--node", "dns-pm01",
                        "--include-dir", include_dir, "--unit", "")
    return r.returncode, r.stdout, r.stderr


def test_the_lan_reaches_only_what_it_must(lab):
    for a in (LAN_HOST, OUTSIDE, MONITOR, ADMIN):
        if a != OUTSIDE:
            lab.run("client", "ip", "addr", "add", f"{a}/24", "dev", "eth0")
    script = lab.workdir / "listeners.py"
    script.write_text(LISTENERS)
    lab.popen("node1", [sys.executable, script])
    time.sleep(1.0)
    # Without the firewall every host reaches every port (what the appliance shipped with).
    assert udp(lab, "client", OUTSIDE) == b"echo hb"

    own = lab.workdir / "firewall.d"
    own.mkdir()
    cfg = write_config(lab, MONITOR)
    rc, out, err = apply(lab, cfg, own)
    assert rc == 0 and "firewall: applied for dns-pm01" in out, err

    # Heartbeat port: the peer gets its answer, no other host does (on the LAN or not).
    assert udp(lab, "node2", None) == b"echo hb"
    before = dropped(lab)
    assert udp(lab, "client", LAN_HOST) is None
    assert udp(lab, "client", OUTSIDE) is None
    assert dropped(lab) >= before + 2, "what is dropped is counted"
    # DNS from the network bind serves (the VIPs' /28), not from outside it.
    assert dns(lab, LAN_HOST) and not dns(lab, OUTSIDE)
    # SSH from the configured list only (it replaces the LAN default).
    assert tcp(lab, ADMIN, 22) == b"hello 22\n"
    assert tcp(lab, LAN_HOST, 22) is None and tcp(lab, OUTSIDE, 22) is None
    # NRPE and the status endpoint from the monitoring host only.
    for port in (5666, 8053):
        assert tcp(lab, MONITOR, port) == b"hello %d\n" % port
        assert tcp(lab, LAN_HOST, port) is None and tcp(lab, OUTSIDE, port) is None
    assert tcp(lab, MONITOR, 9100) is None, "anything else is dropped"

    # A rule of your own, in the include directory, survives a regenerated ruleset.
    (own / "node-exporter.nft").write_text(
        f"add rule inet dnspair own ip saddr {MONITOR} tcp dport 9100 accept\n")
    cfg = write_config(lab, f"{MONITOR}, {ADMIN}")   # a config change: regenerated
    rc, out, err = apply(lab, cfg, own)
    assert rc == 0, err
    assert tcp(lab, MONITOR, 9100) == b"hello 9100\n"
    assert tcp(lab, ADMIN, 5666) == b"hello 5666\n"
    assert tcp(lab, OUTSIDE, 9100) is None

    # A broken rule of your own: one line naming it, exit 1, and the generated rules still hold.
    (own / "typo.nft").write_text("add rule inet dnspair own tcp dport 9101 acept\n")
    rc, out, err = apply(lab, cfg, own)
    assert rc == 1 and err.count("\n") == 1 and f"own rules in {own} not applied" in err, (out, err)
    assert udp(lab, "node2", None) == b"echo hb" and udp(lab, "client", OUTSIDE) is None
    assert tcp(lab, MONITOR, 5666) == b"hello 5666\n" and tcp(lab, MONITOR, 9100) is None


def test_the_example_ruleset_loads_in_nft_and_names_what_it_admits():
    """Every config the docs show loads as nft sees it (checked, not applied)."""
    from pathlib import Path
    example = Path(__file__).resolve().parents[2] / "example" / "dnspair.yaml"
    for node in ("dns-pm01", "dns-pm02"):
        text = subprocess.run([sys.executable, "-m", "dnspair", "firewall", "--config", str(example),
                               "--node", node, "--include-dir", ""], capture_output=True, text=True,
                              check=True).stdout
        with labmod.scratch_netns(f"dpfw{node[-1]}") as ns:
            r = subprocess.run(["ip", "netns", "exec", ns, "nft", "-c", "-f", "-"], input=text,
                               capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
