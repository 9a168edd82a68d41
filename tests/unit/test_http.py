"""The status endpoint on a real socket (127.0.0.1, ephemeral port) inside an asyncio loop."""
import asyncio
import json
import re

import pytest

from dnspair.core.status import build
from dnspair.shell import http
from pairsim import KEY, Pair

SAMPLE = re.compile(r'^dnspair_[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? (NaN|-?[0-9.e+-]+)$')


def healthy():
    p = Pair()
    p.run(1.0)
    return p


class Endpoint:
    def __init__(self, st):
        self.st = st
        self.calls = 0

    def status(self):
        self.calls += 1
        return self.st


async def exchange(port, data: bytes, read=True, source="127.0.0.1"):
    r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    w.write(data)
    await w.drain()
    out = await asyncio.wait_for(r.read(), 10) if read else b""
    w.close()
    return out


def served(st, *requests):
    """Start the server, send each raw request, return the raw replies."""
    async def main():
        ep = Endpoint(st)
        srv = await http.serve("127.0.0.1", 0, ep.status)
        port = srv.server.sockets[0].getsockname()[1]
        try:
            return [await exchange(port, req) for req in requests]
        finally:
            srv.close()
    return asyncio.run(main())


def parse(raw: bytes):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    code = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    assert int(headers["content-length"]) == len(body)
    return code, headers, body.decode()


def get(path):
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def test_status_is_the_status_json_document():
    st = build(healthy().e["dns-pm01"], 1.0, 1e9, 7)
    code, h, body = parse(served(st, get("/status"))[0])
    assert code == 200 and h["content-type"] == "application/json"
    assert json.loads(body) == json.loads(json.dumps(st))
    assert KEY.hex() not in body and "key" not in json.loads(body)


def test_health_ok_and_503_with_one_line():
    p = healthy()
    code, h, body = parse(served(build(p.e["dns-pm01"], p.now, 1e9, 1), get("/health"))[0])
    assert (code, body) == (200, "OK dns-pm01 holds 192.0.2.11\n")
    p.dns["dns-pm01"] = False
    p.run(1.0)
    code, _, body = parse(served(build(p.e["dns-pm01"], p.now, 1e9, 1), get("/health?x=1"))[0])
    assert code == 503 and body == "FAIL dns-pm01: DNS failed on dns-pm01 (refused)\n"
    p.kill("dns-pm02")
    p.run(1.0)
    code, _, body = parse(served(build(p.e["dns-pm01"], p.now, 1e9, 1), get("/health"))[0])
    assert code == 503 and body.count("\n") == 1, body


def _parsed(body):
    """{(name, sorted labels): value} by prometheus_client's own parser (it raises on bad text)."""
    from prometheus_client.parser import text_string_to_metric_families
    out = {}
    for fam in text_string_to_metric_families(body):
        for smp in fam.samples:
            out[(smp.name, tuple(sorted(smp.labels.items())))] = smp.value
    return out


def test_metrics_are_prometheus_text():
    p = healthy()
    p.kill("dns-pm02")
    p.run(1.0)
    code, h, body = parse(served(build(p.e["dns-pm01"], p.now, 1e9, 1), get("/metrics"))[0])
    assert code == 200 and h["content-type"].startswith("text/plain; version=0.0.4")
    samples = [ln for ln in body.splitlines() if not ln.startswith("#")]
    bad = [ln for ln in samples if not SAMPLE.match(ln)]
    assert not bad, bad
    got = _parsed(body)
    assert got[("dnspair_vip_owner", (("node", "dns-pm01"), ("vip", "192.0.2.12")))] == 1
    assert got[("dnspair_node_online", (("node", "dns-pm02"),))] == 0
    assert got[("dnspair_failovers_total", ())] == 1
    names = {ln.split()[2] for ln in body.splitlines() if ln.startswith("# TYPE")}
    assert all(ln.split("{")[0].split()[0] in names for ln in samples)


def test_metrics_transitions_last_change_and_build_info():
    """The counters a poller cannot miss: transitions by VIP and reason, the VIP's last change
    as a Unix timestamp, the build; parsed with prometheus_client's parser."""
    from dnspair import __version__
    p = healthy()
    t_fail = p.now
    p.kill("dns-pm02")
    p.run(1.0)
    wall_now = 1e9
    body = parse(served(build(p.e["dns-pm01"], p.now, wall_now, 1), get("/metrics"))[0])[2]
    got = _parsed(body)
    assert got[("dnspair_build_info", (("version", __version__),))] == 1
    # dns-pm01 took VIP2 from the dead dns-pm02: one failover, labelled with its reason.
    assert got[("dnspair_transitions_total", (("reason", "peer_lost"), ("vip", "192.0.2.12")))] == 1
    assert got[("dnspair_transitions_total", (("reason", "peer_lost"), ("vip", "")))] == 1
    ts = got[("dnspair_vip_last_change_timestamp_seconds", (("vip", "192.0.2.12"),))]
    # within the second after the kill, in Unix seconds
    assert wall_now - (p.now - t_fail) <= ts <= wall_now - (p.now - t_fail) + 0.5
    assert "# TYPE dnspair_transitions_total counter" in body


def test_unknown_path_bad_method_bad_request():
    st = build(healthy().e["dns-pm01"], 1.0, 1e9, 1)
    raws = served(st, get("/"), b"POST /status HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
                  b"DELETE /status HTTP/1.1\r\n\r\n", b"HEAD /health HTTP/1.1\r\n\r\n",
                  b"garbage\r\n\r\n")
    codes = [parse(r)[0] for r in raws]
    assert codes == [404, 405, 405, 405, 400]
    assert parse(raws[1])[1]["allow"] == "GET"


def test_oversized_request_head_and_any_body_are_refused():
    st = build(healthy().e["dns-pm01"], 1.0, 1e9, 1)
    big = b"GET /status HTTP/1.1\r\nX-Junk: " + b"a" * 9000 + b"\r\n\r\n"
    body = b"GET /status HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
    chunked = b"GET /status HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert [parse(r)[0] for r in served(st, big, body, chunked)] == [431, 413, 413]


def test_a_slow_client_is_cut_and_never_holds_up_the_loop(monkeypatch):
    """Slow clients (slowloris) hold only their own connection: other requests and other
    loop work go on, and each slow client is dropped after READ_TIMEOUT."""
    monkeypatch.setattr(http, "READ_TIMEOUT", 0.3)
    st = build(healthy().e["dns-pm01"], 1.0, 1e9, 1)

    async def main():
        ep = Endpoint(st)
        srv = await http.serve("127.0.0.1", 0, ep.status)
        port = srv.server.sockets[0].getsockname()[1]
        ticks = 0
        stop = asyncio.Event()

        async def ticker():  # stands in for the heartbeat loop
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.001)
        t = asyncio.create_task(ticker())
        slow = []
        for _ in range(http.MAX_PER_SOURCE):  # as many as one host may hold
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"GET /sta")
            slow.append((r, w))
        before = ticks
        fast = await exchange(port, get("/health"), source="127.0.0.2")  # another host
        during = ticks
        cut = [await asyncio.wait_for(r.read(), 10) for r, _ in slow]
        stop.set()
        await t
        srv.close()
        return before, during, fast, cut
    before, during, fast, cut = asyncio.run(main())
    assert parse(fast)[0] == 200, "a normal client is served while slow ones hang"
    assert during >= before
    assert all(parse(c)[0] == 408 for c in cut)


def test_too_many_clients_are_turned_away_not_queued(monkeypatch):
    monkeypatch.setattr(http, "MAX_CLIENTS", 2)
    monkeypatch.setattr(http, "READ_TIMEOUT", 5.0)
    st = build(healthy().e["dns-pm01"], 1.0, 1e9, 1)

    async def main():
        srv = await http.serve("127.0.0.1", 0, Endpoint(st).status)
        port = srv.server.sockets[0].getsockname()[1]
        hogs = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await asyncio.sleep(0.05)  # let the server accept them
        extra = await exchange(port, get("/health"))
        for _, w in hogs:
            w.close()
        srv.close()
        return extra
    code, headers, body = parse(asyncio.run(main()))
    assert (code, body) == (503, "busy: too many clients at once, try again\n")
    assert headers["retry-after"] == "1"


def test_one_source_gets_at_most_its_share_of_the_slots(monkeypatch):
    """Slow clients from one address take MAX_PER_SOURCE slots; the next one from there is
    turned away, while another address (127.0.0.2) is still served."""
    monkeypatch.setattr(http, "READ_TIMEOUT", 5.0)
    st = build(healthy().e["dns-pm01"], 1.0, 1e9, 1)

    async def main():
        srv = await http.serve("0.0.0.0", 0, Endpoint(st).status)
        port = srv.server.sockets[0].getsockname()[1]
        hogs = [await asyncio.open_connection("127.0.0.1", port) for _ in range(http.MAX_PER_SOURCE)]
        await asyncio.sleep(0.05)
        same = await exchange(port, get("/health"))
        other = await exchange(port, get("/health"), source="127.0.0.2")
        for _, hw in hogs:
            hw.close()
        srv.close()
        return same, other, srv
    same, other, srv = asyncio.run(main())
    assert parse(same)[:3:2] == (503, "busy: too many clients from your address at once, try again\n")
    assert parse(other)[0] == 200


def test_a_port_in_use_is_logged_and_the_daemon_goes_on(caplog):
    async def main():
        first = await http.serve("127.0.0.1", 0, dict)
        port = first.server.sockets[0].getsockname()[1]
        second = await http.serve("127.0.0.1", port, dict)
        first.close()
        return second
    assert asyncio.run(main()) is None
    assert "status endpoint 127.0.0.1:" in caplog.text and "not started" in caplog.text


@pytest.mark.parametrize("path", ["/status", "/health", "/metrics"])
def test_each_path_renders_every_engine_state(path):
    """No state of the pair breaks a renderer (failover, standby, both DNS down, peer gone)."""
    p = healthy()
    steps = [lambda: None, lambda: p.dns.update({"dns-pm01": False}),
             lambda: p.cmd("dns-pm02", "standby"), lambda: p.dns.update({"dns-pm02": False}),
             lambda: p.kill("dns-pm02")]
    for step in steps:
        step()
        p.run(1.0)
        code, _, body = parse(served(build(p.e["dns-pm01"], p.now, 1e9, 1), get(path))[0])
        assert code in (200, 503) and body


def test_metrics_notify_failures_by_kind():
    """The daemon adds the notify runner's counters to the status (daemon.py); each kind is a
    sample of one counter."""
    p = healthy()
    st = build(p.e["dns-pm01"], p.now, 1e9, 1)
    st["notify"] = {"queued": 0, "run": 9, "failed": 2, "timed_out": 1, "dropped": 4, "commands": 1}
    body = http.metrics(st)
    got = _parsed(body)
    assert "# TYPE dnspair_notify_failures_total counter" in body
    for kind, n in (("failed", 2), ("timed_out", 1), ("dropped", 4)):
        assert got[("dnspair_notify_failures_total", (("kind", kind),))] == n
    assert not any(name == "dnspair_notify_failures_total" and ("kind", "run") in labels
                   for name, labels in got)


def test_metrics_dns_failures_only_go_up_through_a_cleanup():
    """A Prometheus counter must not go down: `dnspair cleanup` resets the status' `failures`
    (what waits for cleanup), not the counter, on either node's view of either node."""
    p = healthy()

    def counted(viewer):
        got = _parsed(http.metrics(build(p.e[viewer], p.now, 1e9, 1)))
        return {n: got[("dnspair_dns_failures_total", (("node", n),))] for n in p.names}
    p.dns["dns-pm01"] = False
    p.run(0.3)
    p.dns["dns-pm01"] = True
    p.run(0.5)
    before = {v: counted(v) for v in p.names}
    assert before["dns-pm01"]["dns-pm01"] >= 1 and before["dns-pm02"] == before["dns-pm01"]
    p.cmd("dns-pm01", "cleanup")
    p.run(0.5)
    assert build(p.e["dns-pm01"], p.now, 1e9)["nodes"][0]["dns"]["failures"] == 0
    assert {v: counted(v) for v in p.names} == before, "cleanup leaves the counter alone"
    p.dns["dns-pm01"] = False
    p.run(0.2)
    after = {v: counted(v) for v in p.names}
    for v in p.names:
        assert after[v]["dns-pm01"] > before[v]["dns-pm01"] and after[v]["dns-pm02"] == 0
