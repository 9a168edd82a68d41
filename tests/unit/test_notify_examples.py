"""docs/config.md's webhook and push examples, as written there, run by the notify runner with
the environment a failover gives them, against a local HTTP server (the image has python3,
not curl: the examples must work with what it ships)."""
import asyncio
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from dnspair.core import actions as A
from dnspair.shell import notify, state

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"
HOOK, PUSH = "http://192.0.2.80:8080/dnspair", "https://ntfy.sh/my-dns-pair"


def examples() -> list[str]:
    text = DOC.read_text()
    block = re.search(r"Examples \(`PATH`.*?```yaml\n(.*?)```", text, re.S)
    assert block, "the notify examples block in docs/config.md"
    return yaml.safe_load(block.group(1))["notify"]


@pytest.fixture
def server():
    got: list[tuple[str, dict, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((self.path, dict(self.headers), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", got
    srv.shutdown()
    srv.server_close()


def run(cmd: str, env: dict[str, str]) -> dict:
    async def go():
        n = notify.Notifier((cmd,), timeout=10, limit=10)
        n.start()
        n.put(env)
        await n.drain(15)
        return n.stats
    return asyncio.run(go())


def failover_env() -> dict[str, str]:
    t = A.Transition(7, "failover", 1.0, "active", "peer_dns_failed", 'DNS failed on "dns-pm01"',
                     "192.0.2.11", "dns-pm01", "dns-pm02", 0.042)
    return notify.environment(state.entry(t, "dns-pm02", 1_767_225_600.0), "clst-01", "dns-pm01")


def test_the_webhook_example_posts_every_variable_as_json(server):
    url, got = server
    cmd = next(c for c in examples() if "json.dumps" in c)
    assert "curl" not in cmd and HOOK in cmd
    env = failover_env()
    stats = run(cmd.replace(HOOK, url + "/dnspair"), env)
    assert stats["failed"] == 0 and stats["timed_out"] == 0 and stats["run"] == 1
    (path, headers, body), = got
    assert path == "/dnspair" and headers["Content-Type"] == "application/json"
    doc = json.loads(body)
    want = {k[8:].lower(): v for k, v in env.items() if k.startswith("DNSPAIR_")}
    assert doc == dict(want, dropped="0")
    assert doc["event"] == "failover" and doc["event_id"] == "7" and doc["new_owner"] == "dns-pm02"
    assert doc["reason"] == 'DNS failed on "dns-pm01"', "a quote in the reason survives"


def test_the_push_example_sends_a_title_and_a_line(server):
    url, got = server
    cmd = next(c for c in examples() if PUSH in c)
    assert "curl" not in cmd
    stats = run(cmd.replace(PUSH, url + "/my-dns-pair"), failover_env())
    assert stats["failed"] == 0 and stats["run"] == 1
    (path, headers, body), = got
    assert path == "/my-dns-pair" and headers["Title"] == "dnspair failover"
    assert body.decode() == 'dns-pm02: DNS failed on "dns-pm01" (192.0.2.11)'


def test_a_receiver_that_is_down_is_a_counted_failure():
    cmd = next(c for c in examples() if "json.dumps" in c)
    stats = run(cmd.replace(HOOK, "http://127.0.0.1:9/dnspair"), failover_env())
    assert stats["failed"] == 1
