"""The DNS prober over a real UDP socket, against a stand-in bind that answers when told."""
import asyncio
import socket

import dns.message

from dnspair.core.config import DnsCheck
from dnspair.shell.dnsprobe import Prober


class SlowBind(asyncio.DatagramProtocol):
    """Keeps each query; `answer(i)` replies to the i-th one received."""

    def __init__(self):
        self.queries: list = []

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.queries.append((data, addr))

    def answer(self, i):
        data, addr = self.queries[i]
        self.transport.sendto(dns.message.make_response(dns.message.from_wire(data)).to_wire(), addr)


def test_an_answer_settles_its_query_and_earlier_ones_and_later_ones_stay_out():
    async def main():
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        _, bind = await loop.create_datagram_endpoint(SlowBind, sock=sock)
        results = []
        p = Prober(DnsCheck(server="127.0.0.1", port=sock.getsockname()[1]), results.append)
        await p.open()
        for _ in range(3):
            p.start()
        while len(bind.queries) < 3:
            await asyncio.sleep(0.005)
        bind.answer(1)          # the second query: settles the first two, not the third
        while not results:
            await asyncio.sleep(0.005)
        assert results[0].ok and len(p.pending) == 1
        bind.answer(0)          # a late answer to a settled query counts for nothing
        bind.answer(2)          # the third is still out: its answer counts
        while len(results) < 2:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        assert len(results) == 2 and results[1].ok and not p.pending
        p.close()
        bind.transport.close()
    asyncio.run(asyncio.wait_for(main(), 5))
