"""One verdict: the findings in the status document, and every surface mapping them.

For a table of states the simulated engines really reach (and a few documents changed by
hand), each surface is asked what a user sees: `check_dnspair`'s exit code and lines,
`/health`'s code and line, the LEDs on gpiozero's mock pins and `dnspair status`.
"""
import ast
import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dnspair.core import verdict, wire
from dnspair.core.config import Leds
from dnspair.core.status import build
from dnspair.shell import http as endpoint
from dnspair.shell import leds
from dnspair.surfaces import plugin, render
from pairsim import EXAMPLE, Pair

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = Path(sys.executable).parent / "check_dnspair"
EXIT = {"OK": 0, "WARNING": 1, "CRITICAL": 2}


def run_pair(*steps, node="dns-pm01"):
    p = Pair()
    p.run(1.0)
    for step in steps:
        step(p)
        p.run(1.0)
    return build(p.e[node], p.now, 1_700_000_000.0, 4242)


def restarted_alone():
    """dns-pm01 just restarted with its peer dead: not ready until the dead time passed."""
    p = Pair()
    p.run(1.0)
    p.kill("dns-pm02")
    p.restart("dns-pm01", wire.incarnation(2, 1))
    return build(p.e["dns-pm01"], p.now, 1_700_000_000.0, 4242)


def edited(change):
    st = run_pair()
    change(st)
    return verdict.add_findings(st)  # a changed document carries its own findings


def links_and_config(st):
    st["heartbeat"].update(links_up=1, links_total=2)
    st["config_match"] = False


def dns_down(*nodes):
    return lambda p: p.dns.update({n: False for n in nodes})


# name: (status document, kinds in order, plugin state, /health code, LEDs (green, amber, red))
ROWS = {
    "healthy": (lambda: run_pair(), [], "OK", 200, (True, False, False)),
    "starting": (restarted_alone, ["vip_unowned", "peer_unheard", "starting"], "CRITICAL", 503,
                 (False, False, True)),
    "peer unheard": (lambda: run_pair(lambda p: p.kill("dns-pm02")),
                     ["vip_away", "peer_unheard", "failures_recorded"], "WARNING", 200,
                     (True, True, True)),
    "own DNS failed": (lambda: run_pair(dns_down("dns-pm01")),
                       ["vip_away", "dns_failed", "failures_recorded"], "WARNING", 503,
                       (False, False, True)),
    "peer's DNS failed": (lambda: run_pair(dns_down("dns-pm01"), node="dns-pm02"),
                          ["vip_away", "dns_failed", "failures_recorded"], "WARNING", 200,
                          (True, True, False)),
    "both DNS failed": (lambda: run_pair(dns_down("dns-pm01", "dns-pm02")),
                        # a node whose bind failed holds nothing: both VIPs are unowned
                        ["dns_failed_both", "vip_unowned", "vip_unowned", "failures_recorded"],
                        "CRITICAL", 503,
                        (False, False, True)),
    "standby here": (lambda: run_pair(lambda p: p.cmd("dns-pm01", "standby")),
                     ["vip_away", "standby"], "WARNING", 200, (False, False, False)),
    "both in standby": (lambda: run_pair(lambda p: (p.cmd("dns-pm01", "standby"),
                                                    p.cmd("dns-pm02", "standby"))),
                        ["vip_unowned", "vip_unowned", "standby", "standby"], "CRITICAL", 503,
                        (False, False, True)),
    "links and config": (lambda: edited(links_and_config), ["links_degraded", "config_mismatch"],
                         "WARNING", 200, (True, False, False)),
    "VIP unowned": (lambda: edited(lambda st: st["vips"][1].update(owner=None)), ["vip_unowned"],
                    "CRITICAL", 503, (True, False, True)),
}


@pytest.fixture(params=list(ROWS), scope="module")
def row(request):
    make, kinds, state, code, lit = ROWS[request.param]
    st = make()
    return st, kinds, state, code, lit


def found(st):
    return [verdict.Finding(**d) for d in st["findings"]]


# --- the verdict ------------------------------------------------------------------------------

def test_findings_are_in_the_document_json_safe_and_worst_first(row):
    st, kinds, state, _, _ = row
    assert [f["kind"] for f in st["findings"]] == kinds
    assert json.loads(json.dumps(st))["findings"] == st["findings"]
    assert st["findings"] == [f.as_dict() for f in verdict.findings(st)]
    sev = [f["severity"] for f in st["findings"]]
    assert sev == sorted(sev, key=verdict.SEVERITIES.index)
    assert all(f["severity"] == verdict.SEVERITY[f["kind"]] for f in st["findings"])
    assert all(f["text"] and "\n" not in f["text"] for f in st["findings"])


def test_every_kind_and_its_severity_is_documented():
    doc = (ROOT / "docs" / "status.md").read_text()
    for kind, sev in verdict.SEVERITY.items():
        assert f"| `{kind}` | {sev} |" in doc, kind
    assert set(verdict.KINDS) == set(verdict.SEVERITY)


def test_verdict_is_pure_and_mypy_strict_clean():
    path = ROOT / "src" / "dnspair" / "core" / "verdict.py"
    imported = {a.name.split(".")[0] for n in ast.walk(ast.parse(path.read_text()))
                if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(ast.parse(path.read_text()))
                 if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "collections", "dataclasses", "typing"}, imported
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


# --- check_dnspair ----------------------------------------------------------------------------

def check(*args):
    cmd = [str(PLUGIN)] if PLUGIN.exists() else [sys.executable, "-m", "dnspair.surfaces.plugin"]
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, timeout=60)


def test_plugin_state_summary_and_verbose_lines_are_the_findings(row, daemon):
    st, _, state, _, _ = row
    fs = found(st)
    want = [(plugin.STATE[f.severity], f.text) for f in fs]
    assert plugin.judge(st) == (want or [(plugin.Ok, "192.0.2.11 on dns-pm01, 192.0.2.12 on dns-pm02")])
    r = check("--socket", daemon(st), "--no-dns", "-v")
    assert r.returncode == EXIT[state], r.stdout + r.stderr
    line = r.stdout.splitlines()[0].partition(" | ")[0]
    assert line.startswith(f"DNSPAIR {state} - ") and len(line) < 80, line
    if fs:  # the worst finding leads the line (cut to fit if it is long)
        msg = line.removeprefix(f"DNSPAIR {state} - ")
        assert msg.startswith(fs[0].text) or fs[0].text.startswith(msg), (msg, fs[0].text)
    for f in fs:
        assert f"{f.severity.upper()}: {f.text}" in r.stdout, r.stdout


class StatusHandler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *a):
        pass


@pytest.fixture
def endpoint_serving():
    """A plain HTTP server on 127.0.0.1 answering /status with the given bytes."""
    servers = []

    def serve(body: bytes) -> int:
        handler = type("H", (StatusHandler,), {"body": body})
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv.server_address[1]
    yield serve
    for s in servers:
        s.shutdown()
        s.server_close()


def test_remote_plugin_maps_the_very_same_findings_as_local(endpoint_serving, daemon):
    st = ROWS["own DNS failed"][0]()
    _, _, body = endpoint.route("GET", "/status", lambda: st)
    remote = check("-H", "127.0.0.1", "-p", endpoint_serving(body), "--no-dns", "-v")
    local = check("--socket", daemon(st), "--no-dns", "-v")
    assert remote.returncode == local.returncode == 1
    assert remote.stdout == local.stdout
    assert "WARNING: DNS failed on dns-pm01 (refused)" in remote.stdout


def test_remote_document_with_malformed_findings_is_unknown(endpoint_serving):
    st = run_pair()
    st["findings"] = [{"kind": "vip_unowned", "severity": "fatal", "subject": "x", "text": "x"}]
    r = check("-H", "127.0.0.1", "-p", endpoint_serving(json.dumps(st).encode()), "--no-dns")
    assert r.returncode == 3 and "sent no dnspair status" in r.stdout, r.stdout


# --- /health ----------------------------------------------------------------------------------

def test_health_code_and_line_map_the_findings(row):
    st, _, _, code, _ = row
    me = st["node"]
    got, _, body = endpoint.route("GET", "/health", lambda: st)
    line = body.decode()
    assert got == code and line.count("\n") == 1, line
    fs = found(st)
    if code == 503:
        failing = [f.text for f in fs if f.severity == "critical" or
                   (f.kind in ("starting", "dns_failed") and f.node == me)]
        assert line == f"FAIL {me}: {'; '.join(failing)}\n"
    else:
        assert line.startswith(f"OK {me} holds ") and all(f.text in line for f in fs), line


# --- LEDs -------------------------------------------------------------------------------------

def toggles(pin, want=4, tries=300):
    """Edges the pin made by itself (gpiozero's blink thread), waiting up to tries*10 ms."""
    ev = threading.Event()
    for _ in range(tries):
        n = sum(1 for a, b in zip(pin.states, pin.states[1:], strict=False) if a.state != b.state)
        if n >= want:
            return n
        ev.wait(0.01)
    return n


def test_leds_map_the_findings_on_mock_pins(row, factory):
    st, _, _, _, (green, amber, red) = row
    pins = Leds()
    panel = leds.Panel(pins, lambda c: {"ok": True}, factory=factory, blink=0.01)
    assert panel.open()
    panel.end_lamp_test()
    pin = {n: factory.pin(getattr(pins, n)) for n in ("green", "amber", "red")}
    pin["amber"].clear_states()
    panel.update(st)
    try:
        assert (pin["green"].state, pin["red"].state) == (green, red)
        if amber:
            assert toggles(pin["amber"]) >= 4, "amber blinks"
        else:
            assert pin["amber"].state is False and toggles(pin["amber"], tries=10) == 0
    finally:
        panel.close()


# --- dnspair status ---------------------------------------------------------------------------

def test_cli_warnings_are_the_findings(row, daemon, tmp_path):
    st = row[0]
    sock = daemon(st)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(EXAMPLE + f"control: {{socket: {sock}}}\n")
    r = subprocess.run([sys.executable, "-m", "dnspair", "status", "--config", cfg],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    want = [f"  * {'CRITICAL: ' if f.severity == 'critical' else ''}{f.text}" for f in found(st)]
    warn = r.stdout.split("\nWarnings:\n")
    assert (warn[1].splitlines() if len(warn) == 2 else []) == want, r.stdout
    assert render.warnings(st) == [f.text for f in found(st)]


# --- the surfaces follow the document's verdict, not their own reading of it ----------------

def test_every_surface_shows_a_finding_the_facts_alone_do_not_show(factory):
    """A healthy node's document carrying a critical finding (say, from a newer daemon with a
    kind this version does not know): each surface says so; none re-derives "healthy"."""
    st = run_pair()
    st["findings"] = [{"kind": "clock_skew", "severity": "critical", "subject": "dns-pm01",
                       "text": "clock 40 s off", "node": "dns-pm01"}]
    assert plugin.judge(st) == [(plugin.Critical, "clock 40 s off")]
    assert endpoint.health(st) == (503, "FAIL dns-pm01: clock 40 s off")
    assert leds.lights(st)[2] is True
    assert "Warnings:\n  * CRITICAL: clock 40 s off" in render.text(st)
    assert 'dnspair_finding{kind="clock_skew",severity="critical",subject="dns-pm01"} 1.0' in \
        endpoint.metrics(st).splitlines()


def test_a_document_without_findings_is_judged_here(row):
    """An older daemon's /status (no "findings" key) gets the same verdict from this version."""
    st = dict(row[0])
    del st["findings"]
    assert plugin.judge(st) == plugin.judge(row[0])
    assert endpoint.health(st) == endpoint.health(row[0])
    assert leds.lights(st) == leds.lights(row[0])
