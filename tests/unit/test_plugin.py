"""check_dnspair: judgments on real status dicts (from the engine), real exit codes and output."""
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import dns.message
import dns.rrset
import pytest
from nagiosplugin.state import Critical, Ok, Warn

from dnspair.core import verdict
from dnspair.core.status import build
from dnspair.surfaces import plugin
from pairsim import Pair

PLUGIN = Path(sys.executable).parent / "check_dnspair"
PERF = re.compile(r"^'?([^'=]+)'?=(U|-?[\d.]+)([a-zA-Z%]*)(;[^;]*){0,4}$")


def status(p, node=None):
    return build(p.e[node or p.names[0]], p.now, 1_700_000_000.0, 4242)


def healthy():
    p = Pair()
    p.run(1.0)
    return p


def states(findings):
    return {s for s, _ in findings}


def texts(findings):
    return " | ".join(t for _, t in findings)


# --- judging ---------------------------------------------------------------------------------

def test_healthy_pair_is_ok_and_names_where_each_vip_lives():
    f = plugin.judge(status(healthy()))
    assert f == [(Ok, "192.0.2.11 on dns-pm01, 192.0.2.12 on dns-pm02")]


def test_failed_over_is_warning():
    p = healthy()
    p.dns["dns-pm01"] = False
    p.run(1.0)
    f = plugin.judge(status(p, "dns-pm02"))
    assert states(f) == {Warn}
    assert "192.0.2.11 on dns-pm02, not dns-pm01" in texts(f)
    assert "DNS failed on dns-pm01" in texts(f)
    assert "need cleanup" in texts(f)


def test_failures_waiting_for_cleanup_warn_after_recovery_and_clear_with_cleanup():
    p = healthy()
    p.dns["dns-pm01"] = False
    p.run(1.0)
    p.dns["dns-pm01"] = True
    p.run(1.0)
    f = plugin.judge(status(p))
    assert states(f) == {Warn} and "need cleanup" in texts(f) and "not dns-pm01" in texts(f)
    p.cmd("dns-pm01", "cleanup")
    p.run(1.0)
    assert states(plugin.judge(status(p))) == {Ok}


def test_both_dns_failed_is_critical():
    p = healthy()
    p.dns = {n: False for n in p.names}
    p.run(1.0)
    f = plugin.judge(status(p))
    assert f[0] == (Critical, "DNS failed on both nodes")
    assert "DNS failed on dns-pm01" not in texts(f)


def test_peer_unheard_is_warning():
    p = healthy()
    p.kill("dns-pm02")
    p.run(1.0)
    f = plugin.judge(status(p))
    assert states(f) == {Warn}
    assert "peer dns-pm02 unheard" in texts(f) and "192.0.2.12 on dns-pm01, not dns-pm02" in texts(f)


def test_standby_is_warning():
    p = healthy()
    p.cmd("dns-pm02", "standby")
    p.run(1.0)
    f = plugin.judge(status(p))
    assert states(f) == {Warn} and "dns-pm02 standby" in texts(f)


def test_vip_without_owner_and_vip_dns_silent_are_critical():
    st = status(healthy())
    st["vips"][1]["owner"] = None
    verdict.add_findings(st)  # the plugin maps the document's findings: a changed document, new ones
    f = plugin.judge(st, {"192.0.2.11": (None, "timeout")})
    assert {t for s, t in f if s == Critical} == {"192.0.2.12 has no owner",
                                                  "192.0.2.11 DNS no answer (timeout)"}


def test_one_of_two_links_down_and_config_mismatch_warn():
    st = status(healthy())
    st["heartbeat"].update(links_up=1, links_total=2)
    st["config_match"] = False
    verdict.add_findings(st)
    f = plugin.judge(st)
    assert f == [(Warn, "only 1 of 2 heartbeat links up"), (Warn, "configs differ")]


# --- the program -----------------------------------------------------------------------------

def run(*args):
    cmd = [str(PLUGIN)] if PLUGIN.exists() else [sys.executable, "-m", "dnspair.surfaces.plugin"]
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, timeout=60)


def parse(out):
    line = out.splitlines()[0]
    text, _, perf = line.partition(" | ")
    return text, dict((m.group(1), m) for m in map(PERF.match, perf.split()) if m), perf.split()


def test_ok_exit_0_one_short_line_and_perfdata(daemon):
    sock = daemon(status(healthy()))
    r = run("--socket", sock, "--no-dns")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(r.stdout.splitlines()) == 1
    text, perf, raw = parse(r.stdout)
    assert text == "DNSPAIR OK - 192.0.2.11 on dns-pm01, 192.0.2.12 on dns-pm02"
    assert len(raw) == len(perf), raw  # every perfdata item parses
    assert {"hb_rtt", "hb_age", "dns_dns-pm01", "dns_dns-pm02", "failovers", "failover_age"} <= set(perf)
    assert perf["failovers"].group(2) == "0" and perf["failovers"].group(3) == "c"
    assert perf["failover_age"].group(2) == "U"  # never failed over: unknown, not zero
    assert perf["hb_age"].group(3) == "s" and perf["dns_dns-pm01"].group(3) == "ms"


def test_warning_exit_1_line_under_80_with_count_of_the_rest(daemon):
    p = healthy()
    p.dns["dns-pm02"] = False     # a failure, recorded; VIP2 moves to dns-pm01
    p.run(0.5)
    p.dns["dns-pm02"] = True
    p.cmd("dns-pm02", "standby")
    p.run(1.0)
    sock = daemon(status(p))
    r = run("--socket", sock, "--no-dns")
    assert r.returncode == 1, r.stdout
    text, perf, _ = parse(r.stdout)
    assert text.startswith("DNSPAIR WARNING - ") and len(text) < 80 and "more)" in text, text
    assert int(perf["failovers"].group(2)) >= 1
    assert perf["failover_age"].group(2) != "U"
    r = run("--socket", sock, "--no-dns", "-v")
    assert r.returncode == 1
    assert "WARNING: dns-pm02 standby" in r.stdout and "failure(s) need cleanup" in r.stdout, r.stdout


def test_critical_exit_2_when_both_dns_fail(daemon):
    p = healthy()
    p.dns = {n: False for n in p.names}
    p.run(1.0)
    r = run("--socket", daemon(status(p)), "--no-dns")
    assert r.returncode == 2 and r.stdout.startswith("DNSPAIR CRITICAL - DNS failed on both nodes"), r.stdout
    _, perf, _ = parse(r.stdout)
    assert perf["dns_dns-pm01"].group(2) == "U", "a failed check has no latency"


def test_daemon_not_running_is_critical(tmp_path):
    r = run("--socket", tmp_path / "none.sock")
    assert r.returncode == 2, r.stdout
    assert r.stdout.startswith("DNSPAIR CRITICAL - dnspair daemon is not running (no control socket)")
    assert len(r.stdout.splitlines()[0]) < 80


def test_daemon_silent_is_unknown_within_the_timeout(daemon):
    r = run("--socket", daemon(None, silent=True), "--no-dns", "-t", "1")
    assert r.returncode == 3 and r.stdout.startswith("DNSPAIR UNKNOWN - "), r.stdout


def test_remote_endpoint_refused_is_critical_and_unroutable_is_unknown():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    r = run("-H", "127.0.0.1", "-p", port, "--no-dns")
    assert r.returncode == 2 and "connection refused" in r.stdout, r.stdout
    r = run("-H", "256.1.1.1", "--no-dns", "-t", "2")
    assert r.returncode == 3, r.stdout


@pytest.mark.parametrize("args", [["-t", "0"], ["-t", "x"], ["-w", "abc"], ["--qtype", "NOPE"],
                                  ["-H", "192.0.2.1", "--socket", "/x"], ["-p", "70000"], ["--bogus"]])
def test_bad_arguments_are_unknown_in_one_line(args):
    r = run(*args)
    assert r.returncode == 3, (args, r.stdout, r.stderr)
    assert r.stdout.startswith("DNSPAIR UNKNOWN - bad arguments") and len(r.stdout.splitlines()) == 1
    assert len(r.stdout.rstrip("\n")) < 80


def test_bad_config_is_unknown_in_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster: [\n")
    r = run("--config", bad)
    assert r.returncode == 3 and r.stdout.startswith("DNSPAIR UNKNOWN - ") and len(r.stdout.splitlines()) == 1


def test_help_and_version():
    r = run("-h")
    assert r.returncode == 0 and "-H" in r.stdout and "--query" in r.stdout
    r = run("-V")
    assert r.returncode == 0 and r.stdout.startswith("check_dnspair ")


def test_latency_thresholds_judge_vip_dns_answer_time():
    ctx = plugin.Threshold("vipdns", "100", "500")
    from nagiosplugin import Metric
    assert ctx.evaluate(Metric("vip_192.0.2.11", 50.0, "ms", context="vipdns"), None).state == Ok
    assert ctx.evaluate(Metric("vip_192.0.2.11", 150.0, "ms", context="vipdns"), None).state == Warn
    r = ctx.evaluate(Metric("vip_192.0.2.11", 900.0, "ms", context="vipdns"), None)
    assert r.state == Critical and "vip_192.0.2.11 900ms" in r.hint
    assert ctx.evaluate(Metric("vip_192.0.2.11", None, "ms", context="vipdns"), None).state == Ok
    perf = str(ctx.performance(Metric("vip_192.0.2.11", 3.2, "ms", 0, context="vipdns"), None))
    assert perf == "'vip_192.0.2.11'=3.2ms;100;500;0"


# --- the real DNS query through a VIP ------------------------------------------------------

def _dns_server(family, host):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((host, 0))
    stop = threading.Event()

    def serve():
        s.settimeout(0.1)
        while not stop.is_set():
            try:
                data, addr = s.recvfrom(4096)
            except TimeoutError:
                continue
            q = dns.message.from_wire(data)
            r = dns.message.make_response(q)
            r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", "127.0.0.1"))
            s.sendto(r.to_wire(), addr)
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield s.getsockname()[1]
    stop.set()
    t.join()
    s.close()


@pytest.fixture
def dns_server():
    yield from _dns_server(socket.AF_INET, "127.0.0.1")


@pytest.fixture
def dns_server6():
    yield from _dns_server(socket.AF_INET6, "::1")


def test_query_through_an_ipv6_vip(dns_server6):
    ms, why = plugin.query("::1", "localhost", "A", 2.0, port=dns_server6)
    assert why is None and ms >= 0


def test_query_answered_refused_and_silent(dns_server):
    ms, why = plugin.query("127.0.0.1", "localhost", "A", 2.0, port=dns_server)
    assert why is None and ms >= 0
    free = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    ms, why = plugin.query("127.0.0.1", "localhost", "A", 2.0, port=port)  # bound, never answers
    assert (ms, why) == (None, "timeout")
    free.close()
    assert plugin.query("127.0.0.1", "localhost", "A", 2.0, port=port) == (None, "refused")

