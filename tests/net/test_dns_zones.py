"""One DNS service from two servers: real bind on both namespace nodes, run with the config
dnspair renders, the pair's daemons beside them, and a client asking through the VIPs.

Every test also holds bind to its promise: it is never restarted (the same named process
answers throughout) and dnspair asks rndc only to reload or reconfig (a wrapper on PATH
logs every rndc call dnspair makes; the image's clock unit and its `rndc flush` do not run
here: tests/unit/test_dns.py pins that it is the one other rndc command shipped).
"""
import os
import re
import sys
import time
from pathlib import Path

import pytest

import lab as labmod
from dnslab import REVERSE, ZONE, DnsPair
from pair import NODE_NAME
from test_operator_plugin import check

VIP1, VIP2 = labmod.VIP1, labmod.VIP2


@pytest.fixture
def rndc_log(tmp_path, monkeypatch):
    """Every rndc command dnspair runs, one line each (a wrapper in front of the real one)."""
    log = tmp_path / "rndc.log"
    wrapper = tmp_path / "bin" / "rndc"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec /usr/sbin/rndc "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")
    log.touch()
    yield log
    verbs = [_verb(line) for line in log.read_text().splitlines()]
    assert set(verbs) <= {"reload", "reconfig"}, verbs


def _verb(line):
    """The rndc command in `rndc -s ADDR -p PORT [-k FILE] VERB ...`."""
    args = line.split()
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2
    return args[i] if i < len(args) else ""


@pytest.fixture
def dns_pair(lab, rndc_log):
    p = DnsPair(lab)
    pids = {n: lab.bind_process(n).pid for n in labmod.NODES}
    logged = {n: len(lab.bind_log(n)) for n in labmod.NODES}   # the lab's first bind came before
    p.start()
    p.wait_served(VIP1, "node1")
    p.wait_served(VIP2, "node2")
    p.wait(lambda: all(z["serials"]["dns-pm02"] == z["serials"]["dns-pm01"] is not None
                       for z in p.dns_status("node2")["zones"]), "both binds serve every zone")
    yield p
    for n in labmod.NODES:   # never restarted: the same named answered from start to end
        assert lab.bind_process(n).pid == pids[n] and lab.bind_running(n), f"bind on {n} restarted"
        assert "exiting" not in lab.bind_log(n)[logged[n]:]


def serials(p, node="node2"):
    return {z["zone"]: z["serials"] for z in p.dns_status(node)["zones"]}


def test_a_record_added_on_node2_is_answered_through_both_vips_within_2s(dns_pair):
    p = dns_pair
    t0 = time.monotonic()
    r = p.cli("node2", "records", "add", f"tv.{ZONE}", "A", "192.0.2.30")
    t1 = time.monotonic()   # the primary has acknowledged the change
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"added tv.{ZONE}. A 192.0.2.30 to {ZONE} on dns-pm01"
    p.wait(lambda: p.answer(VIP1, f"tv.{ZONE}") == ["192.0.2.30"] == p.answer(VIP2, f"tv.{ZONE}"),
           "both VIPs answer the new name", timeout=10)
    t2 = time.monotonic()
    print(f"\nrecord added on node2 answered through VIP1 and VIP2 {t2 - t1:.2f} s after the primary "
          f"took it ({t2 - t0:.2f} s after the command started, the CLI's own start included)")
    assert t2 - t1 < 2.0
    # both nodes list it, from their own bind
    for n in labmod.NODES:
        listing = p.cli(n, "records", "list", ZONE).stdout
        assert f"tv.{ZONE}. 3600 A 192.0.2.30" in listing, listing
    # the config's own records were there from the start, the reverse zone too
    assert p.answer(VIP2, f"nas.{ZONE}") == ["192.0.2.20"]
    assert p.answer(VIP1, f"20.{REVERSE}", "PTR") == [f"nas.{ZONE}."]
    p.cli("node1", "records", "delete", f"tv.{ZONE}", "A")
    p.wait(lambda: p.answer(VIP2, f"tv.{ZONE}") == [], "the deleted name is gone through VIP2", 5)


def test_a_bad_name_or_record_is_one_line_and_changes_nothing(dns_pair):
    p = dns_pair
    p.cli("node1", "records", "add", f"alias.{ZONE}", "CNAME", f"nas.{ZONE}.")
    p.wait(lambda: p.answer(VIP2, f"alias.{ZONE}", "CNAME") == [f"nas.{ZONE}."], "the CNAME", 5)

    def serials():
        return [p.soa_serial(a, z) for a in ("192.0.2.1", "192.0.2.2") for z in (ZONE, REVERSE)]
    before = serials()
    cases = [
        (("add", "nas.example.org", "A", "192.0.2.9"), "is in no local zone"),
        (("add", f"x.{ZONE}", "A", "999.0.2.9"), "not valid A data"),
        (("add", f"x.{ZONE}", "AX", "192.0.2.9"), "type must be one of"),
        (("add", f"bad..{ZONE}", "A", "192.0.2.9"), "bad name"),
        (("add", f"alias.{ZONE}", "A", "192.0.2.9"), "CNAME"),          # a CNAME stands alone
        (("delete", f"ghost.{ZONE}", "A"), "no such record"),
    ]
    for args, why in cases:
        r = p.cli("node2", "records", *args)
        assert r.returncode == 1 and r.stdout == "", (args, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and why in r.stderr, (args, r.stderr)
    time.sleep(1.5)
    assert serials() == before
    assert p.answer(VIP1, f"x.{ZONE}") == [] and p.answer(VIP1, f"alias.{ZONE}", "A") == [f"nas.{ZONE}.",
                                                                                          "192.0.2.20"]


def test_a_new_zone_appears_on_the_secondary(dns_pair):
    p = dns_pair
    new = p.dns_text.replace("      - printer 300 A 192.0.2.21\n",
                             "      - printer 300 A 192.0.2.21\n      - garage A 192.0.2.41\n")
    new += "    pair.test:\n      - www A 192.0.2.40\n"
    p.rewrite_config(new)
    r = p.cli("node1", "reload", "--node", "dns-pm01")     # the primary only
    assert r.returncode == 0, r.stderr
    assert "catalog serial 2" in r.stdout
    t0 = time.monotonic()
    p.wait(lambda: p.answer("192.0.2.2", "www.pair.test") == ["192.0.2.40"],
           "node2's bind serves the new zone", timeout=15)
    print(f"\nnew zone served by the secondary {time.monotonic() - t0:.2f} s after `dnspair reload`")
    assert p.soa_serial("192.0.2.2", "pair.test") == p.soa_serial("192.0.2.1", "pair.test")
    # a record added to the file for a zone bind already owns is there after the reload too
    p.wait_answer("192.0.2.2", f"garage.{ZONE}", ["192.0.2.41"], timeout=5)
    # node2's own reload is only for its options (the digest names the zone list): no restart
    assert p.cli("node2", "reload", "--node", "dns-pm02").returncode == 0
    p.wait(lambda: not any(f["kind"].startswith(("zone_", "dns_")) for f in p.status("node2")["findings"])
           and "pair.test" in serials(p), "node2 reports the new zone alike on both", 10)


UPSTREAM = """\
import socket, sys
import dns.message, dns.rdatatype, dns.rrset
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(4096)
    q = dns.message.from_wire(data)
    r = dns.message.make_response(q)
    if q.question[0].rdtype == dns.rdatatype.A:
        r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", "192.0.2.99"))
    s.sendto(r.to_wire(), peer)
"""


def test_forwarders_and_allow_query_apply_with_dnspair_reload_and_no_restart(dns_pair, tmp_path):
    p, lab = dns_pair, dns_pair.lab
    pids = {n: lab.bind_process(n).pid for n in labmod.NODES}
    # an upstream of our own on the client (TEST-NET-1): it answers every A with 192.0.2.99.
    # ntp.org is in validate-except, so bind takes its unsigned answer.
    script, log = tmp_path / "upstream.py", tmp_path / "upstream.log"
    script.write_text(UPSTREAM)
    lab.popen("client", [sys.executable, script, labmod.CLIENT_ADDR], log=log, what="upstream")
    p.wait(lambda: "ready" in log.read_text(), "the fake upstream listening", 10)
    name = "dnspair-check.pool.ntp.org"
    assert p.answer("127.0.0.1", name, where="node1") != ["192.0.2.99"]   # 192.0.2.53: nobody
    assert p.answer(VIP1, f"nas.{ZONE}") == ["192.0.2.20"]                # the client may ask
    new = p.dns_text.replace("forwarders: [192.0.2.53]", f"forwarders: [{labmod.CLIENT_ADDR}]")
    new = new.replace("allow_query: [192.0.2.0/24, localhost]", "allow_query: [localhost]")
    assert new != p.dns_text and new.count(labmod.CLIENT_ADDR) == 1
    p.rewrite_config(new)
    for n in labmod.NODES:
        r = p.cli(n, "reload", "--node", NODE_NAME[n])
        assert r.returncode == 0 and "bind reconfigured" in r.stdout, r.stdout + r.stderr
    p.wait(lambda: all(p.answer("127.0.0.1", name, where=n) == ["192.0.2.99"] for n in labmod.NODES),
           "both binds forward to the new upstream", 10)
    for vip in (VIP1, VIP2):   # the client is no longer allowed to ask
        assert "status: REFUSED" in lab.run("client", "dig", "+time=1", "+tries=1", f"@{vip}",
                                            f"nas.{ZONE}", check=False).stdout
    assert p.answer("127.0.0.1", f"nas.{ZONE}", where="node2") == ["192.0.2.20"]
    assert {n: lab.bind_process(n).pid for n in labmod.NODES} == pids, "bind restarted"


def test_with_the_primary_gone_the_secondary_serves_and_refuses_changes_then_converges(dns_pair):
    p, lab = dns_pair, dns_pair.lab
    lab.link_down("node1")
    p.wait_served(VIP1, "node2")
    for vip in (VIP1, VIP2):   # every zone, through both VIPs, from the secondary
        assert p.answer(vip, f"nas.{ZONE}") == ["192.0.2.20"]
        assert p.answer(vip, f"20.{REVERSE}", "PTR") == [f"nas.{ZONE}."]
    before = p.soa_serial(VIP1)
    r = p.cli("node2", "records", "add", f"late.{ZONE}", "A", "192.0.2.31")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "changes wait for the primary dns-pm01" in r.stderr, r.stderr
    # the primary, cut off, still takes a change of its own
    r = p.cli("node1", "records", "add", f"cut.{ZONE}", "A", "192.0.2.32")
    assert r.returncode == 0, r.stderr
    assert p.soa_serial(VIP1) == before and p.answer(VIP1, f"cut.{ZONE}") == []
    lab.link_up("node1")
    t0 = time.monotonic()
    p.wait(lambda: p.soa_serial("192.0.2.2") == p.soa_serial("192.0.2.1", where="node1"),
           "serials converge after the heal", timeout=40)
    print(f"\nserials converged {time.monotonic() - t0:.1f} s after the link came back")
    assert p.answer("192.0.2.2", f"cut.{ZONE}") == ["192.0.2.32"]
    z = serials(p)
    p.wait(lambda: serials(p)[ZONE]["dns-pm01"] == serials(p)[ZONE]["dns-pm02"], "status agrees", 10)
    assert not any(f["kind"] == "zone_drift" for f in p.status("node2")["findings"]), z


def test_a_lasting_difference_is_reported_everywhere(lab, rndc_log):
    p = DnsPair(lab, drift=3, extra="status_http: {listen: '0.0.0.0:8053'}\n")
    p.start()
    p.wait(lambda: all(z["serials"]["dns-pm02"] == z["serials"]["dns-pm01"] is not None
                       for z in p.dns_status("node2")["zones"]), "both binds serve every zone")
    # node2 stops hearing node1's NOTIFYs and SOA answers: its copy falls behind
    lab.drop_heartbeats("node2", 100, port=53)
    lab.run("node2", "nft", "add", "rule", "ip", "dplab", "input", "ip", "saddr", "192.0.2.1",
            "tcp", "sport", "53", "drop")
    assert p.cli("node1", "records", "add", f"new.{ZONE}", "A", "192.0.2.33").returncode == 0
    text = f"zone {ZONE}: dns-pm01 serial "
    # node2 sees it: its own serial behind node1's (node1 no longer hears node2's bind)
    f = p.wait(lambda: [x for x in p.status("node2")["findings"] if x["kind"] == "zone_drift"],
               "a zone_drift finding on node2", 20)
    assert f[0]["text"].startswith(text) and "differing for" in f[0]["text"], f
    assert f[0]["severity"] == "warning"
    assert text in p.cli("node2", "status").stdout
    rc, line, _, r = check(lab, "node2", "--config", p.configs["node2"], "--no-dns")
    assert rc == 1 and line.startswith("DNSPAIR WARNING") and ZONE in r.stdout, r.stdout
    metrics = _get(lab, "192.0.2.2")
    assert re.search(rf'dnspair_zone_drift\{{zone="{re.escape(ZONE)}"\}} 1', metrics), metrics
    from dnspair.shell.leds import lights
    assert lights(p.status("node2"))[1], "amber on"
    lab.heal()
    p.wait(lambda: not [x for x in p.status("node2")["findings"] if x["kind"] == "zone_drift"],
           "the finding clears once the serials converge", 40)
    assert not lights(p.status("node2"))[1]


def test_a_heard_peer_whose_bind_does_not_answer_is_reported_everywhere(lab, rndc_log):
    p = DnsPair(lab, drift=3, extra="status_http: {listen: '0.0.0.0:8053'}\n")
    p.start()
    p.wait(lambda: all(z["serials"]["dns-pm02"] == z["serials"]["dns-pm01"] is not None
                       for z in p.dns_status("node1")["zones"]), "both binds serve every zone")
    # node2's own firewall drops node1's DNS queries; heartbeats (another port) still flow
    lab.run("node2", "nft", "-f", "-", input="table ip dpblk {\n chain input {\n"
            "  type filter hook input priority -20; policy accept;\n"
            "  ip saddr 192.0.2.1 udp dport 53 drop\n  ip saddr 192.0.2.1 tcp dport 53 drop\n }\n}\n")
    try:
        f = p.wait(lambda: [x for x in p.status("node1")["findings"] if x["kind"] == "zone_unanswered"],
                   "a zone_unanswered finding on node1", 20)
        st = p.status("node1")
        assert next(n for n in st["nodes"] if not n["self"])["online"], "the peer is still heard"
        want = f"zone {ZONE}: dns-pm02's bind has not answered for "
        mine = [x for x in f if x["subject"] == ZONE]
        assert mine and mine[0]["text"].startswith(want), f
        assert mine[0]["text"].endswith("(serials cannot be compared)") and mine[0]["severity"] == "warning"
        assert not any(x["kind"] == "zone_drift" for x in st["findings"]), st["findings"]
        assert want in p.cli("node1", "status").stdout
        rc, line, _, r = check(lab, "node1", "--config", p.configs["node1"], "--no-dns")
        assert rc == 1 and line.startswith("DNSPAIR WARNING") and "has not answered" in r.stdout, r.stdout
        metrics = _get(lab, "192.0.2.1")
        assert re.search(rf'dnspair_zone_peer_silent\{{zone="{re.escape(ZONE)}"\}} 1', metrics), metrics
        from dnspair.shell.leds import lights
        assert lights(p.status("node1"))[1], "amber on"
    finally:
        lab.run("node2", "nft", "delete", "table", "ip", "dpblk", check=False)
    p.wait(lambda: not [x for x in p.status("node1")["findings"] if x["kind"] == "zone_unanswered"],
           "the finding clears once node2's bind answers again", 20)


def _get(lab, host):
    import socket
    s = lab.socket("client", socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect((host, 8053))
    s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    s.close()
    return out.decode()


def test_a_hand_broken_zone_file_is_a_failed_action_with_binds_line(dns_pair):
    p, lab = dns_pair, dns_pair.lab
    path = Path(p.zone_dir("node1")) / f"{ZONE}.db"
    with open(path, "a") as f:
        f.write("oops AX 192.0.2.99\n")
    n = len(path.read_text().splitlines())
    bind_says = lab.run("node1", "named-checkzone", "-j", ZONE, str(path), check=False).stdout.splitlines()[0]
    assert f"{path}:{n}: unknown RR type 'AX'" in bind_says
    fa = p.wait(lambda: [a for a in p.status("node1")["failed_actions"] if a["what"] == "zone_load"],
                "a zone_load failed action", 15)
    assert fa[0]["node"] == "dns-pm01" and fa[0]["why"] == f"{ZONE}: {bind_says}", fa
    rc, line, _, r = check(lab, "node1", "--config", p.configs["node1"], "--no-dns")
    assert rc == 1 and line.startswith("DNSPAIR WARNING"), r.stdout
    assert "Failed Actions" in p.cli("node1", "status").stdout


def test_promote_refuses_while_the_primary_is_ahead_or_answers_then_takes_over_when_it_is_gone(dns_pair):
    p, lab = dns_pair, dns_pair.lab
    # node2 misses node1's NOTIFYs and transfers for a moment: node1 is ahead, and reachable
    lab.drop_heartbeats("node2", 100, port=53)
    lab.run("node2", "nft", "add", "rule", "ip", "dplab", "input", "ip", "saddr", "192.0.2.1",
            "tcp", "sport", "53", "drop")
    assert p.cli("node1", "records", "add", f"ahead.{ZONE}", "A", "192.0.2.34").returncode == 0
    r = p.cli("node2", "dns", "promote", "--node", "dns-pm02")
    assert r.returncode == 1 and "refused" in r.stderr and "newer serials" in r.stderr, r.stdout + r.stderr
    assert p.soa_serial("192.0.2.2") != p.soa_serial("192.0.2.1")
    lab.clear_drops("node2")
    p.wait(lambda: p.soa_serial("192.0.2.2") == p.soa_serial("192.0.2.1"), "node2 catches up", 40)
    # same serials, but node1's bind still answers: a second primary is refused too
    r = p.cli("node2", "dns", "promote", "--node", "dns-pm02")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stdout + r.stderr
    assert "the primary dns-pm01 (192.0.2.1) still answers" in r.stderr and "two primaries" in r.stderr
    r = p.cli("node2", "records", "add", f"still.{ZONE}", "A", "192.0.2.36")
    assert r.returncode == 0 and "on dns-pm01" in r.stdout, r.stdout + r.stderr   # still the secondary
    lab.link_down("node1")
    p.wait_served(VIP1, "node2")
    r = p.cli("node2", "dns", "promote", "--node", "dns-pm02")
    assert r.returncode == 0, r.stderr
    assert "dns-pm02 is now primary" in r.stdout
    r = p.cli("node2", "records", "add", f"after.{ZONE}", "A", "192.0.2.35")
    assert r.returncode == 0 and "on dns-pm02" in r.stdout, r.stderr
    for vip in (VIP1, VIP2):
        assert p.answer(vip, f"after.{ZONE}") == ["192.0.2.35"]
        assert p.answer(vip, f"ahead.{ZONE}") == ["192.0.2.34"]
