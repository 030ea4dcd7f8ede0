"""Baseline for bench/ingest.py: the least a server can do for a request/ACK frame protocol.

A uvloop ``Protocol`` that cuts EVB1 frames by their length field and writes a fixed 11-byte
ACK per frame: no CRC, no decode, no records, no sink. Prints the same ``ready`` line as the
gateway so the bench can drive both the same way.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import uvloop

ACK = bytes.fromhex("4556018000010001020000")
HEADER = 8


class SinkProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.rest = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.rest + data if self.rest else data
        off, end, acks = 0, len(buf), 0
        while end - off >= HEADER:
            size = HEADER + (buf[off + 6] << 8 | buf[off + 7]) + 2
            if end - off < size:
                break
            off += size
            acks += 1
        self.rest = buf[off:]
        if acks and self.transport is not None:
            self.transport.write(ACK * acks if acks > 1 else ACK)


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(SinkProtocol, "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(
        json.dumps({"event": "ready", "listeners": [{"codec": "evb1", "port": port}]}), flush=True
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    uvloop.run(main())
    sys.exit(0)
