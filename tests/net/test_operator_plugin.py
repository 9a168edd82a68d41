"""check_dnspair against a live pair on the namespace network, in each state a pair can be in.

The plugin runs where a monitoring system would: remote mode (-H) from the client namespace
(a Nagios server), local mode (--config) inside a node (NRPE).
"""
import re
import signal
import sys
from pathlib import Path

import lab as labmod
from pair import Pair

VIP1, VIP2 = labmod.VIP1, labmod.VIP2
# The same config on both nodes (the config digests must match): listen on every address.
HTTP = "status_http: {listen: '0.0.0.0:8053'}"
PERF = re.compile(r"^'?([^'=]+)'?=(U|-?[\d.]+)([a-zA-Z%]*)(;[^;]*){0,4}$")


def plugin_cmd():
    here = Path(sys.executable).parent / "check_dnspair"
    if here.exists():
        return [str(here)]
    return [str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "check_dnspair")]


def check(lab, where, *args):
    r = lab.run(where, *plugin_cmd(), *map(str, args), check=False, timeout=60)
    line = r.stdout.splitlines()[0] if r.stdout else ""
    text, _, perf = line.partition(" | ")
    return r.returncode, text, perf, r


def perfdata(perf: str) -> dict:
    items = perf.split()
    parsed = {m.group(1): m for m in map(PERF.match, items) if m}
    assert len(parsed) == len(items), f"unparsable perfdata: {perf}"
    return parsed


def test_healthy_pair_is_ok_remote_and_local_with_perfdata(lab):
    p = Pair(lab, extra=HTTP)
    p.start()
    p.wait_served(VIP1, "node1")
    p.wait_served(VIP2, "node2")
    # just after start the peer may not have reported its digest yet
    p.wait(lambda: check(lab, "client", "-H", "192.0.2.1")[0] == 0, "plugin OK")
    rc, text, perf, r = check(lab, "client", "-H", "192.0.2.1", "-w", "500", "-c", "2000")
    assert rc == 0, r.stdout
    assert text == "DNSPAIR OK - 192.0.2.11 on dns-pm01, 192.0.2.12 on dns-pm02"
    pd = perfdata(perf)
    assert {"hb_rtt", "hb_age", "dns_dns-pm01", "dns_dns-pm02", "failovers", "failover_age",
            "vip_192.0.2.11", "vip_192.0.2.12"} <= set(pd)
    assert pd["vip_192.0.2.11"].group(2) != "U" and float(pd["vip_192.0.2.11"].group(2)) >= 0
    assert pd["vip_192.0.2.11"].group(0).split(";")[1:3] == ["500", "2000"]
    assert float(pd["hb_rtt"].group(2)) >= 0 and pd["hb_rtt"].group(3) == "ms"
    assert pd["failovers"].group(2) == "0"
    rc, text, perf, r = check(lab, "node1", "--config", p.configs["node1"])
    assert rc == 0 and text.startswith("DNSPAIR OK - "), r.stdout + r.stderr
    rc, text, _, r = check(lab, "node2", "--config", p.configs["node2"], "-q", "test.example")
    assert rc == 0, r.stdout


def test_failed_over_is_warning_and_names_where_the_vip_went(lab):
    p = Pair(lab, extra=HTTP)
    p.start()
    p.wait_served(VIP1, "node1")
    lab.stop_bind("node1")
    p.wait_served(VIP1, "node2")
    rc, text, perf, r = check(lab, "client", "-H", "192.0.2.2")
    assert rc == 1, r.stdout
    assert text.startswith("DNSPAIR WARNING - 192.0.2.11 on dns-pm02, not dns-pm01") and len(text) < 80
    pd = perfdata(perf)
    assert int(pd["failovers"].group(2)) >= 1 and pd["failover_age"].group(2) != "U"
    assert pd["vip_192.0.2.11"].group(2) != "U", "the VIP answers from node2"
    rc, text, _, r = check(lab, "client", "-H", "192.0.2.1", "-v")
    assert rc == 1 and "WARNING: DNS failed on dns-pm01" in r.stdout, r.stdout
    # bind back: still away until cleanup (manual failback), then OK again
    lab.restore_bind("node1")
    p.wait(lambda: p.me("node1")["dns"]["ok"], "node1 DNS healthy again")
    rc, text, _, r = check(lab, "node1", "--config", p.configs["node1"], "-v")
    assert rc == 1 and "need cleanup" in r.stdout, r.stdout
    assert p.cli("node1", "cleanup").returncode == 0
    p.wait_served(VIP1, "node1")
    p.wait(lambda: check(lab, "client", "-H", "192.0.2.1")[0] == 0, "OK after cleanup")


def test_both_dns_down_is_critical(lab):
    p = Pair(lab, extra=HTTP)
    p.start()
    p.wait_served(VIP1, "node1")
    lab.stop_bind("node1")
    lab.stop_bind("node2")
    p.wait(lambda: not p.me("node1")["dns"]["ok"] and not p.me("node2")["dns"]["ok"], "both DNS failed")
    p.wait(lambda: check(lab, "client", "-H", "192.0.2.1")[0] == 2, "plugin CRITICAL")
    rc, text, perf, r = check(lab, "client", "-H", "192.0.2.1")
    assert rc == 2 and text.startswith("DNSPAIR CRITICAL - ") and len(text) < 80, r.stdout
    perfdata(perf)
    rc, text, perf, r = check(lab, "client", "-H", "192.0.2.1", "-v")
    assert "CRITICAL: DNS failed on both nodes" in r.stdout
    assert re.search(r"CRITICAL: 192\.0\.2\.1[12] (DNS no answer|has no owner)", r.stdout), r.stdout


def test_daemon_stopped_is_critical_and_the_survivor_warns(lab):
    p = Pair(lab, extra=HTTP)
    p.start()
    p.wait_served(VIP1, "node1")
    assert p.stop("node1") == 0
    p.wait_served(VIP1, "node2")
    rc, text, _, r = check(lab, "client", "-H", "192.0.2.1")
    assert rc == 2 and text == "DNSPAIR CRITICAL - dnspair not running on 192.0.2.1:8053 (connection refused)"
    rc, text, _, r = check(lab, "node1", "--config", p.configs["node1"])
    assert rc == 2 and text == "DNSPAIR CRITICAL - dnspair daemon is not running (no control socket)", \
        r.stdout
    assert len(text) < 80
    rc, text, _, r = check(lab, "client", "-H", "192.0.2.2", "-v")
    assert rc == 1 and "WARNING: peer dns-pm01 unheard" in r.stdout, r.stdout


def test_endpoint_unreachable_or_silent_is_unknown(lab):
    p = Pair(lab, extra=HTTP)
    p.start()
    p.wait_served(VIP1, "node1")
    # 192.0.2.50 is no host of the lab: ARP goes unanswered, nothing ever comes back
    rc, text, _, r = check(lab, "client", "-H", "192.0.2.50", "-t", "3")
    assert rc == 3 and text.startswith("DNSPAIR UNKNOWN - "), r.stdout
    # a frozen daemon: the kernel accepts the connection, no answer comes within -t
    lab.send_signal(p.procs["node2"], signal.SIGSTOP)
    try:
        rc, text, _, r = check(lab, "client", "-H", "192.0.2.2", "-t", "2", "--no-dns")
        assert rc == 3 and text.startswith("DNSPAIR UNKNOWN - ") and len(text) < 80, r.stdout
    finally:
        lab.send_signal(p.procs["node2"], signal.SIGCONT)
    rc, text, _, r = check(lab, "client", "-H", "192.0.2.1", "--bogus")
    assert rc == 3 and text.startswith("DNSPAIR UNKNOWN - bad arguments")
