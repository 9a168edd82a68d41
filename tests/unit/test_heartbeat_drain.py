"""Heartbeats.drain over real UDP sockets on loopback: what is queued is heard at once, in
order, before the loop gets to it; an empty socket or a queued ICMP error is not an error."""
import asyncio
import logging
import socket

from dnspair.shell.heartbeat import Heartbeats


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_drain_hears_what_is_queued_in_order_and_nothing_twice():
    async def main():
        port = _free_port()
        heard: list = []
        hb = Heartbeats(("127.0.0.1",), ("127.0.0.2",), port, lambda k, d, src: heard.append((k, d, src)))
        await hb.open()
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.2", port))
        peer.connect(("127.0.0.1", port))
        try:
            hb.drain()   # nothing queued: no datagram, no exception
            assert heard == []
            for n in range(3):
                peer.send(b"hb%d" % n)
            # No await in between: the loop has not read them; drain must.
            hb.drain()
            assert heard == [(0, b"hb0", "127.0.0.2"), (0, b"hb1", "127.0.0.2"), (0, b"hb2", "127.0.0.2")]
            hb.drain()
            await asyncio.sleep(0.05)   # and the loop finds nothing left to deliver again
            assert len(heard) == 3
        finally:
            peer.close()
            hb.close()
    asyncio.run(main())


def test_drain_takes_a_queued_refusal_and_still_hears_the_datagram_behind_it():
    async def main():
        port = _free_port()
        heard: list = []
        hb = Heartbeats(("127.0.0.1",), ("127.0.0.2",), port, lambda k, d, src: heard.append(d))
        await hb.open()
        hb.send(b"to nobody")   # nothing bound at the peer: ECONNREFUSED is queued on our socket
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            peer.bind(("127.0.0.2", port))
            peer.connect(("127.0.0.1", port))
            peer.send(b"hb")
            hb.drain()
            assert heard == [b"hb"]
            hb.drain()
            assert heard == [b"hb"]
        finally:
            peer.close()
            hb.close()
    asyncio.run(main())


def test_drain_after_close_reads_nothing_and_returns(caplog):
    async def main():
        heard: list = []
        hb = Heartbeats(("127.0.0.1",), ("127.0.0.2",), _free_port(), lambda k, d, src: heard.append(d))
        await hb.open()
        hb.close()
        await asyncio.sleep(0)   # the transports close their sockets
        with caplog.at_level(logging.DEBUG, logger="dnspair"):
            hb.drain()           # a late timer after the stop: no read, no loop over a dead fd
        assert heard == []
        assert not [r for r in caplog.records if "heartbeat link" in r.getMessage()]
    asyncio.run(main())
