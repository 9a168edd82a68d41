"""The read-only status endpoint: /status, /health, /metrics over HTTP/1.0-style GETs.

It runs in the daemon's loop, so every step is bounded: one request head of at most
MAX_HEAD bytes, read within READ_TIMEOUT, at most MAX_CLIENTS at once and MAX_PER_SOURCE from
one address, one reply, close. A slow or hostile client only ever costs its own connection,
never a heartbeat, and one host cannot take the slots a monitor on another host needs.
It renders the status model only, which holds no key.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging

from ..core import verdict

log = logging.getLogger("dnspair")
NAN = float("nan")
MAX_HEAD = 8192
# A monitor's request head is one small packet on the LAN: a second is ample, and a client that
# trickles its head holds a slot no longer than that.
READ_TIMEOUT = 1.0
WRITE_TIMEOUT = 2.0
MAX_CLIENTS = 16
MAX_PER_SOURCE = 4   # so 16 slots serve at least 4 hosts, whatever one of them does
BUSY = b"busy: too many clients at once, try again\n"
BUSY_SOURCE = b"busy: too many clients from your address at once, try again\n"
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           408: "Request Timeout", 413: "Content Too Large",
           431: "Request Header Fields Too Large", 503: "Service Unavailable"}


# Findings on this node that mean it does not do its job; every critical one does too.
FAILS_HERE = {"starting", "dns_failed"}


def health(st: dict) -> tuple[int, str]:
    """503 when a finding says this node does not do its job (starting, its own DNS failed,
    or any critical one: a VIP without owner, DNS failed on both); else 200 with the other
    findings as notes. The findings are the status document's (core/verdict.py)."""
    me = next(n for n in st["nodes"] if n["self"])["name"]
    found = verdict.read(st)
    bad = [f.text for f in found if f.severity == "critical" or (f.kind in FAILS_HERE and f.node == me)]
    if bad:
        return 503, f"FAIL {me}: {'; '.join(bad)}"
    held = [v["address"].split("/")[0] for v in st["vips"] if v["held_here"]]
    return 200, "; ".join([f"OK {me} holds {', '.join(held) or 'no VIP'}", *(f.text for f in found)])


def _ts(iso: str | None) -> float | None:
    return None if iso is None else dt.datetime.fromisoformat(iso).timestamp()


def metrics(st: dict) -> str:
    """Prometheus text format 0.0.4 (prometheus_client writes it); seconds as base unit, NaN
    where unknown. Imported on the first scrape: a node nobody scrapes never pays for it."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.exposition import generate_latest

    families = []

    def m(name, kind, help, samples, labels=()):
        """samples: (label values in `labels` order, value); counters get `_total` added."""
        cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        fam = cls(f"dnspair_{name}".removesuffix("_total"), help, labels=list(labels))
        for values, v in samples:
            fam.add_metric([str(x) for x in values], NAN if v is None else float(v))
        families.append(fam)

    hb, fo = st["heartbeat"], st["failovers"]
    nodes, vips = st["nodes"], st["vips"]

    def ms(v):
        return None if v is None else v / 1000

    def ip(v):
        return v["address"].split("/")[0]

    m("info", "gauge", "Constant 1, labelled with version, cluster and node.",
      [((st["daemon"]["version"], st["cluster"], st["node"]), 1)], ("version", "cluster", "node"))
    m("build_info", "gauge", "Constant 1, labelled with the dnspair version.",
      [((st["daemon"]["version"],), 1)], ("version",))
    m("uptime_seconds", "gauge", "Seconds since the daemon started.", [((), st["daemon"]["uptime_s"])])
    m("node_online", "gauge", "1 if the node is up (the peer: heard within the dead time).",
      [((n["name"],), int(n["online"])) for n in nodes], ("node",))
    m("node_standby", "gauge", "1 if the node is in standby.",
      [((n["name"],), int(n["standby"])) for n in nodes], ("node",))
    m("dns_ok", "gauge", "1 if the node's DNS check passes, 0 if it fails, NaN if unknown.",
      [((n["name"],), None if n["dns"]["ok"] is None else int(n["dns"]["ok"])) for n in nodes], ("node",))
    m("dns_latency_seconds", "gauge", "Latency of the node's last DNS check.",
      [((n["name"],), ms(n["dns"]["latency_ms"])) for n in nodes], ("node",))
    m("dns_failures_total", "counter", "DNS check failures seen since this daemon started "
      "(cleanup does not reset it).",
      [((n["name"],), n["dns"]["failures_since_start"]) for n in nodes], ("node",))
    m("vip_owner", "gauge", "1 for the node that owns the VIP (no sample: no owner).",
      [((ip(v), v["owner"]), 1) for v in vips if v["owner"]], ("vip", "node"))
    m("vip_owned", "gauge", "1 if some node owns the VIP.",
      [((ip(v),), int(v["owner"] is not None)) for v in vips], ("vip",))
    m("vip_moved", "gauge", "1 if the VIP is away from its preferred node.",
      [((ip(v),), int(v["moved"])) for v in vips], ("vip",))
    m("vip_held_here", "gauge", "1 if this node holds the VIP.",
      [((ip(v),), int(v["held_here"])) for v in vips], ("vip",))
    m("vip_last_change_timestamp_seconds", "gauge",
      "When the VIP last changed hands as this node saw it (Unix time; kept across restarts).",
      [((ip(v),), _ts(v.get("last_change"))) for v in vips if v.get("last_change")], ("vip",))
    m("transitions_total", "counter", "Transitions of this node since it started, by VIP and reason "
      "(docs/config.md, notify).",
      [((t["vip"] or "", t["reason"]), t["count"]) for t in st.get("transitions", {}).get("counts", [])],
      ("vip", "reason"))
    m("heartbeat_rtt_seconds", "gauge", "Heartbeat round trip.", [((), ms(hb["rtt_ms"]))])
    m("heartbeat_last_heard_seconds", "gauge", "Age of the last heartbeat from the peer.",
      [((), hb["last_heard_s"])])
    m("heartbeat_links_up", "gauge", "Heartbeat links the peer is heard on.", [((), hb["links_up"])])
    m("heartbeat_links", "gauge", "Heartbeat links configured.", [((), hb["links_total"])])
    m("heartbeat_dropped_total", "counter", "Datagrams dropped, by reason.",
      [((k,), v) for k, v in sorted(hb["dropped"].items())], ("reason",))
    m("failovers_total", "counter", "VIPs taken over by this node.", [((), fo["count"])])
    m("last_failover_age_seconds", "gauge", "Seconds since the last failover (NaN: never).",
      [((), fo["last_age_s"])])
    m("failed_actions", "gauge", "Failures waiting for `dnspair cleanup`.", [((), len(st["failed_actions"]))])
    m("finding", "gauge", "1 for each finding of the verdict (docs/status.md, findings).",
      [((f.kind, f.severity, f.subject), 1) for f in verdict.read(st)], ("kind", "severity", "subject"))
    m("config_match", "gauge", "1 if both nodes run the same config, NaN if unknown.",
      [((), None if st["config_match"] is None else int(st["config_match"]))])
    n = st.get("notify")
    if n is not None:
        m("notify_failures_total", "counter", "Notify commands that failed, timed out, or events "
          "dropped from a full queue.", [((k,), n.get(k, 0)) for k in ("failed", "timed_out", "dropped")],
          ("kind",))
    dns = st.get("dns")
    if dns:
        def serial(v):
            return v if isinstance(v, int) else None
        m("zone_serial", "gauge", "SOA serial of a local zone on each node (NaN: no answer or not loaded).",
          [((z["zone"], node), serial(v)) for z in dns["zones"] for node, v in sorted(z["serials"].items())],
          ("zone", "node"))
        m("zone_differing_seconds", "gauge", "How long the nodes' serials of a zone have differed (0: same).",
          [((z["zone"],), z["differing_s"] or 0) for z in dns["zones"]], ("zone",))
        m("zone_drift", "gauge", "1 if a zone has differed for longer than dns.drift_after.",
          [((z["zone"],), int(z["drifted"])) for z in dns["zones"]], ("zone",))
        m("zone_peer_silent", "gauge", "1 if the peer is heard but its bind has not answered this "
          "node's SOA query for a zone for longer than dns.drift_after.",
          [((z["zone"],), int(bool(z.get("peer_silent")))) for z in dns["zones"]], ("zone",))
        m("bind_config_match", "gauge", "1 if both binds carry the same config digest, NaN if unknown.",
          [((), None if None in dns["config"]["digests"].values()
            else int(len(set(dns["config"]["digests"].values())) == 1))])

    class Families:
        def collect(self):
            return families
    return generate_latest(Families()).decode()


def route(method: str, target: str, status) -> tuple[int, str, bytes]:
    """(code, content type, body) for one request; `status()` gives the status dict."""
    if method != "GET":
        return 405, "text/plain", b"only GET\n"
    path = target.split("?", 1)[0]
    if path == "/status":
        return 200, "application/json", json.dumps(status(), indent=2, sort_keys=True).encode() + b"\n"
    if path == "/health":
        code, line = health(status())
        return code, "text/plain; charset=utf-8", line.encode() + b"\n"
    if path == "/metrics":
        return 200, "text/plain; version=0.0.4; charset=utf-8", metrics(status()).encode()
    return 404, "text/plain", b"try /status, /health or /metrics\n"


class Server:
    def __init__(self, status):
        self.status = status
        self.clients = 0
        self.per_source: dict[str, int] = {}
        self.server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self._client, host, port, limit=MAX_HEAD,
                                                 reuse_address=True)

    def close(self) -> None:
        if self.server:
            self.server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        source = str(peer[0]) if peer else "?"
        mine = self.per_source.get(source, 0)
        busy = BUSY_SOURCE if mine >= MAX_PER_SOURCE else BUSY if self.clients >= MAX_CLIENTS else None
        # A turned-away client holds no slot: its one short write and close are all it costs, so
        # a crowd being turned away never fills the slots other hosts are served from.
        slot = 0 if busy else 1
        self.clients += slot
        self.per_source[source] = mine + slot
        try:
            if busy:  # answer at once, without reading: a crowd costs nothing to wait on
                code, ctype, body = 503, "text/plain", busy
            else:
                code, ctype, body = await self._answer(reader)
            if code:
                head = (f"HTTP/1.1 {code} {REASONS[code]}\r\nContent-Type: {ctype}\r\n"
                        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
                        + ("Allow: GET\r\n" if code == 405 else "")
                        + ("Retry-After: 1\r\n" if busy else "") + "Connection: close\r\n\r\n")
                writer.write(head.encode() + body)
                await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
        except (TimeoutError, ConnectionError):
            pass
        except Exception as e:  # noqa: BLE001 - a bad request must never reach the loop
            log.warning("status endpoint: %s", e)
        finally:
            self.clients -= slot
            left = self.per_source[source] - slot
            if left:
                self.per_source[source] = left
            else:
                del self.per_source[source]
            if writer.transport.get_write_buffer_size():
                writer.transport.abort()  # a client that does not read gets no more time
            else:
                writer.close()

    async def _answer(self, reader) -> tuple[int, str, bytes]:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
        except TimeoutError:
            return 408, "text/plain", b"request too slow\n"
        except asyncio.LimitOverrunError:
            return 431, "text/plain", f"request head over {MAX_HEAD} bytes\n".encode()
        except asyncio.IncompleteReadError:
            return 0, "", b""
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return 400, "text/plain", b"bad request line\n"
        if parts[0] != "GET":
            return 405, "text/plain", b"only GET\n"
        for h in lines[1:]:
            name, _, value = h.partition(":")
            if name.strip().lower() == "content-length" and value.strip() not in ("", "0"):
                return 413, "text/plain", b"no request body accepted\n"
            if name.strip().lower() == "transfer-encoding":
                return 413, "text/plain", b"no request body accepted\n"
        return route(parts[0], parts[1], self.status)


async def serve(host: str, port: int, status) -> Server | None:
    """None (logged) if the address cannot be bound: the pair matters more than its web page."""
    s = Server(status)
    try:
        await s.start(host, port)
    except OSError as e:
        log.error("status endpoint %s:%d not started: %s", host, port, e.strerror or e)
        return None
    log.info("status endpoint on http://%s:%d/ (/status, /health, /metrics)", host, port)
    return s
