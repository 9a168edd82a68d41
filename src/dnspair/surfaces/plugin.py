"""`check_dnspair`: the Nagios/Icinga plugin (nagiosplugin, Monitoring Plugins conventions).

Local mode asks the daemon over the control socket (NRPE on a node); remote mode (-H) asks
a node's status endpoint. Either way it maps the findings in the one status model (the
daemon's verdict, core/verdict.py), then sends a real DNS query through every owned VIP,
because "the daemon says fine" is not what users see.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import sys
import time

import nagiosplugin
from nagiosplugin.state import Critical, Ok, Unknown, Warn

from .. import __version__
from ..core import verdict

DEFAULT_CONFIG = "/etc/dnspair/dnspair.yaml"
DEFAULT_PORT = 8053
LINE = 79  # the status line, without perfdata, stays under 80 characters


class Unreachable(Exception):
    """No answer in time: UNKNOWN (we cannot tell how the pair is)."""


class NotRunning(Exception):
    """A definite "nobody home": CRITICAL."""


# --- fetching the status -------------------------------------------------------------------

def fetch_local(socket_path: str, timeout: float) -> dict:
    from ..shell.control import ControlError, request
    try:
        reply = request(socket_path, {"cmd": "status"}, timeout=timeout)
    except ControlError as e:
        # control.request words a missing socket or refused connect as "is not running";
        # the path goes, it would push the reason off the status line
        msg = re.sub(r" (at|on) /[^\s)]+", "", str(e))
        raise (NotRunning if "not running" in msg else Unreachable)(msg) from None
    if not reply.get("ok") or not isinstance(reply.get("status"), dict):
        raise Unreachable(f"daemon refused: {reply.get('error', 'no status')}")
    return reply["status"]


def fetch_remote(host: str, port: int, timeout: float) -> dict:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/status")
        r = conn.getresponse()
        body = r.read(1 << 20)
    except ConnectionRefusedError:
        raise NotRunning(f"dnspair not running on {host}:{port} (connection refused)") from None
    except TimeoutError:
        raise Unreachable(f"no answer from {host}:{port} within {timeout:g} s") from None
    except (OSError, http.client.HTTPException) as e:
        raise Unreachable(f"{host}:{port}: {getattr(e, 'strerror', None) or e}") from None
    finally:
        conn.close()
    if r.status == 503 and body.startswith(b"busy"):
        # Up, but out of client slots (another client, or too many from our address): not down.
        raise Unreachable(f"{host}:{port} is busy (HTTP 503: "
                          f"{body.decode('utf-8', 'replace').strip()[6:80]}); it is up, try again")
    if r.status != 200:
        raise Unreachable(f"{host}:{port}/status answered HTTP {r.status}")
    try:
        st = json.loads(body)
        st["vips"], st["nodes"]  # noqa: B018 - the shape we rely on
        verdict.read(st)
    except (ValueError, TypeError, KeyError, AttributeError):
        raise Unreachable(f"{host}:{port}/status sent no dnspair status") from None
    return st


# --- asking DNS through a VIP ----------------------------------------------------------------

def query(server: str, name: str, qtype: str, timeout: float, port: int = 53):
    """(latency ms, None) on an answer, (None, why) otherwise. A connected socket hears
    ICMP port-unreachable, so a VIP without bind behind it fails at once."""
    import dns.message
    import dns.rcode
    import dns.rdatatype
    q = dns.message.make_query(name, dns.rdatatype.from_text(qtype))
    s = socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    t0 = time.monotonic()
    try:
        s.connect((server, port))
        s.send(q.to_wire())
        while True:
            left = t0 + timeout - time.monotonic()
            if left <= 0:
                return None, "timeout"
            s.settimeout(left)
            data = s.recv(65535)
            try:
                reply = dns.message.from_wire(data)
            except Exception:  # noqa: BLE001 - garbage is no answer, never a crash
                continue
            if reply.id == q.id:
                break
    except TimeoutError:
        return None, "timeout"
    except ConnectionRefusedError:
        return None, "refused"
    except OSError as e:
        return None, e.strerror or str(e)
    finally:
        s.close()
    rcode = reply.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return None, dns.rcode.to_text(rcode)
    return round((time.monotonic() - t0) * 1000, 3), None


# --- judging --------------------------------------------------------------------------------

STATE = {"critical": Critical, "warning": Warn}


def judge(st: dict, dns: dict | None = None) -> list[tuple]:
    """[(state, text)] worst first: the status document's findings (core/verdict.py), then
    the plugin's own measurement, the answers through the VIPs. `dns` maps VIP address ->
    (latency ms, why)."""
    out = [(STATE[f.severity], f.text) for f in verdict.read(st)]
    out += [(Critical, f"{ip} DNS no answer ({why})") for ip, (_ms, why) in (dns or {}).items() if why]
    if not out:
        out = [(Ok, ", ".join(f"{v['address'].split('/')[0]} on {v['owner']}" for v in st["vips"]))]
    order = {Critical: 0, Warn: 1, Unknown: 2, Ok: 3}
    return sorted(out, key=lambda f: order[f[0]])


# --- nagiosplugin wiring -------------------------------------------------------------------

class Pair(nagiosplugin.Resource):
    name = "DNSPAIR"

    def __init__(self, args):
        self.args = args

    def fetch(self) -> dict:
        a = self.args
        if a.host:
            return fetch_remote(a.host, a.port, a.io_timeout)
        return fetch_local(a.socket, a.io_timeout)

    def probe(self):
        try:
            st = self.fetch()
        except NotRunning as e:
            return [nagiosplugin.Metric("daemon", (Critical, str(e)), context="finding")]
        except Unreachable as e:
            return [nagiosplugin.Metric("daemon", (Unknown, str(e)), context="finding")]
        dns = {}
        if not self.args.no_dns:
            owned = [v["address"].split("/")[0] for v in st["vips"] if v["owner"] is not None]
            for k, ip in enumerate(owned):
                # Share what is left of -t, so our own answer beats nagiosplugin's SIGALRM.
                left = (self.args.deadline - time.monotonic()) / (len(owned) - k)
                dns[ip] = query(ip, self.args.query, self.args.qtype,
                                max(0.05, min(self.args.dns_timeout, left)))
        out = [nagiosplugin.Metric(f"finding{i}", f, context="finding")
               for i, f in enumerate(judge(st, dns))]
        hb, fo = st["heartbeat"], st["failovers"]
        out.append(nagiosplugin.Metric("hb_rtt", hb["rtt_ms"], "ms", 0, context="rtt"))
        out.append(nagiosplugin.Metric("hb_age", hb["last_heard_s"], "s", 0, context="perf"))
        for n in st["nodes"]:
            ms = n["dns"]["latency_ms"] if n["dns"]["ok"] else None  # a failed check has no latency
            out.append(nagiosplugin.Metric(f"dns_{n['name']}", ms, "ms", 0, context="perf"))
        for ip, (ms, _why) in dns.items():
            out.append(nagiosplugin.Metric(f"vip_{ip}", ms, "ms", 0, context="vipdns"))
        out.append(nagiosplugin.Metric("failovers", fo["count"], "c", 0, context="perf"))
        out.append(nagiosplugin.Metric("failover_age", fo["last_age_s"], "s", 0, context="perf"))
        return out


class Finding(nagiosplugin.Context):
    def evaluate(self, metric, resource):
        state, text = metric.value
        return nagiosplugin.Result(state, text, metric)


def _perf(metric, ctx):
    w = getattr(ctx, "warning", "") or ""
    c = getattr(ctx, "critical", "") or ""
    value = "U" if metric.value is None else metric.value
    return nagiosplugin.Performance(metric.name, value, "" if metric.value is None else metric.uom,
                                    w, c, metric.min, metric.max)


class Perf(nagiosplugin.Context):
    """Only perfdata; judged elsewhere. None becomes 'U' (unknown) as the guidelines say."""
    def performance(self, metric, resource):
        return _perf(metric, self)


class Threshold(nagiosplugin.ScalarContext):
    """-w/-c style ranges; a missing value is judged by the findings, not here."""
    def evaluate(self, metric, resource):
        if metric.value is None:
            return nagiosplugin.Result(Ok, None, metric)
        r = super().evaluate(metric, resource)
        if r.state != Ok:
            hint = f"{metric.name} {metric.value:g}{metric.uom} ({r.hint})"
            return nagiosplugin.Result(r.state, hint, metric)
        return r

    def performance(self, metric, resource):
        return _perf(metric, self)


class Summary(nagiosplugin.Summary):
    def ok(self, results):
        return self._line(results, Ok)

    def problem(self, results):
        return self._line(results, results.most_significant_state)

    def _line(self, results, state):
        """The worst findings that fit, then how many more there are."""
        texts = [r.hint for r in results if r.state == state and r.hint]
        total = sum(1 for r in results if r.state != Ok and r.hint) if state != Ok else len(texts)
        room = LINE - len(f"DNSPAIR {str(state).upper()} - ")
        line, shown = texts[0] if texts else "", 1 if texts else 0
        for t in texts[1:]:
            rest = total - shown - 1
            cand = f"{line}; {t}" + (f" (+{rest} more)" if rest else "")
            if len(cand) > room:
                break
            line, shown = f"{line}; {t}", shown + 1
        rest = total - shown
        return (line + (f" (+{rest} more)" if rest else ""))[:room]

    def verbose(self, results):
        return [f"{str(r.state).upper()}: {r.hint}" for r in results if r.hint]


# --- command line ---------------------------------------------------------------------------

class Parser(argparse.ArgumentParser):
    def error(self, message):
        print(f"DNSPAIR UNKNOWN - bad arguments: {message}"[:LINE])
        sys.exit(3)


def parser() -> Parser:
    p = Parser(prog="check_dnspair", description="Nagios/Icinga check of a dnspair DNS HA pair. "
               "Local mode (default) asks the daemon on this node; -H asks a node's status endpoint.")
    p.add_argument("-V", "--version", action="version", version=f"check_dnspair {__version__}")
    p.add_argument("-H", "--host", help="remote mode: a node's status endpoint address")
    p.add_argument("-p", "--port", type=int, default=DEFAULT_PORT,
                   help=f"endpoint port (default {DEFAULT_PORT})")
    p.add_argument("--config", help=f"local mode: dnspair config (default {DEFAULT_CONFIG})")
    p.add_argument("--socket", help="local mode: control socket path (instead of --config)")
    p.add_argument("-q", "--query", default="localhost",
                   help="name asked through each VIP (default localhost)")
    p.add_argument("--qtype", default="A", help="query type (default A)")
    p.add_argument("--dns-timeout", type=float, default=1.0, help="seconds per VIP query (default 1)")
    p.add_argument("--no-dns", action="store_true", help="do not query DNS through the VIPs")
    p.add_argument("-w", "--warning", metavar="RANGE", help="VIP DNS answer time in ms, e.g. 200")
    p.add_argument("-c", "--critical", metavar="RANGE", help="VIP DNS answer time in ms, e.g. 1000")
    p.add_argument("--rtt-warning", metavar="RANGE", help="heartbeat round trip in ms")
    p.add_argument("--rtt-critical", metavar="RANGE", help="heartbeat round trip in ms")
    p.add_argument("-t", "--timeout", type=int, default=10, help="seconds for the whole check (default 10)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more output (-vvv: most)")
    return p


def _socket_path(args) -> str:
    if args.socket:
        return args.socket
    from ..core.config import ConfigError, Control
    from ..shell.files import load_config
    path = args.config or DEFAULT_CONFIG
    if args.config is None and not os.path.exists(path):
        return Control().socket
    try:
        return load_config(path).control.socket
    except ConfigError as e:
        raise SystemExit(_unknown(str(e).splitlines()[0])) from None


def _unknown(msg: str) -> int:
    print(f"DNSPAIR UNKNOWN - {msg}"[:LINE])
    return 3


def args_from(argv) -> argparse.Namespace:
    p = parser()
    a = p.parse_args(argv)
    if a.timeout < 1:
        p.error("-t must be at least 1 second")
    if a.host and (a.config or a.socket):
        p.error("-H (remote) and --config/--socket (local) exclude each other")
    if not 1 <= a.port <= 65535:
        p.error("-p must be a port number")
    if not 0 < a.dns_timeout <= 30:
        p.error("--dns-timeout must be in (0, 30] seconds")
    for opt, flag in (("warning", "-w"), ("critical", "-c"), ("rtt_warning", "--rtt-warning"),
                      ("rtt_critical", "--rtt-critical")):
        try:
            nagiosplugin.Range(getattr(a, opt))
        except ValueError as e:
            p.error(f"{flag}: {e}")
    try:
        import dns.rdatatype
        dns.rdatatype.from_text(a.qtype)
    except Exception:  # noqa: BLE001
        p.error(f"--qtype: unknown type {a.qtype!r}")
    # -t is nagiosplugin's SIGALRM (whole seconds): finish by ourselves a little earlier,
    # giving the status fetch at most half when VIP queries follow.
    budget = a.timeout - 0.3
    a.deadline = time.monotonic() + budget
    a.io_timeout = budget if a.no_dns else max(0.3, budget / 2)
    return a


@nagiosplugin.guarded(verbose=0)
def main(argv=None):
    a = args_from(sys.argv[1:] if argv is None else argv)
    if not a.host:
        a.socket = _socket_path(a)
    check = nagiosplugin.Check(
        Pair(a), Finding("finding"), Perf("perf"),
        Threshold("vipdns", a.warning, a.critical), Threshold("rtt", a.rtt_warning, a.rtt_critical),
        Summary(), name="DNSPAIR")
    check.main(verbose=a.verbose, timeout=a.timeout)


if __name__ == "__main__":
    main()
