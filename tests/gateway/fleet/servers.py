"""Small gateways for fleet tests: our codec sessions on 127.0.0.1, misbehaving on demand."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import cast

from gateway.pipeline.registry import CodecRegistry
from parser.events import Frame, Login, Reject

REGISTRY = CodecRegistry.load()


@dataclass
class Policy:
    drop_first_ack: bool = False  # withhold the reply to each device's first data frame
    close_first_connection_after: int | None = None  # frames, on each device's first connection


@dataclass
class AckServer:
    codec: str
    policy: Policy = field(default_factory=Policy)
    acked: set[tuple[str, bytes]] = field(default_factory=set)  # (device id, payload) replied
    received: list[tuple[str, bytes]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    connections: int = 0
    _dropped: set[str] = field(default_factory=set)
    _closed_once: set[str] = field(default_factory=set)
    _server: asyncio.Server | None = None
    _transports: list[asyncio.Transport] = field(default_factory=list)

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), "127.0.0.1", 0)
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for transport in self._transports:
                transport.abort()
            await self._server.wait_closed()


class _Connection(asyncio.Protocol):
    def __init__(self, server: AckServer) -> None:
        self.server = server
        self.session = REGISTRY.create(server.codec).session()
        self.frames = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.server.connections += 1
        self.server._transports.append(self.transport)

    def data_received(self, data: bytes) -> None:
        server, policy, transport = self.server, self.server.policy, self.transport
        assert transport is not None
        for event in self.session.feed(data):
            if isinstance(event, Reject):
                server.rejects.append(event)
                continue
            if isinstance(event, Login):
                transport.write(event.reply)
                continue
            assert isinstance(event, Frame) and event.device_id is not None
            device = event.device_id
            server.received.append((device, event.payload))
            self.frames += 1
            limit = policy.close_first_connection_after
            if limit is not None and self.frames >= limit and device not in server._closed_once:
                server._closed_once.add(device)
                transport.close()  # the frame that reached the limit is never ACKed
                return
            if not event.reply:
                continue
            if policy.drop_first_ack and device not in server._dropped:
                server._dropped.add(device)
                continue
            server.acked.add((device, event.payload))
            transport.write(event.reply)
