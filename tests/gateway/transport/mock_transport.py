"""A transport without a socket (uvicorn's ``MockTransport``): a protocol under test gets bytes
from the test and writes its replies here; pauses, closes and aborts are recorded."""

from __future__ import annotations

import asyncio
from typing import Protocol, cast


class MockTransport:
    def __init__(self, peer: tuple[str, int] = ("127.0.0.1", 5555)) -> None:
        self.peer = peer
        self.out = bytearray()
        self.closing = False
        self.aborted = False
        self.reading = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.peer if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.out += data

    def written(self) -> bytes:
        """What the protocol wrote since the last call."""
        data = bytes(self.out)
        self.out.clear()
        return data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


class AsyncioProtocol(Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...


def made(protocol: AsyncioProtocol, transport: MockTransport | None = None) -> MockTransport:
    """Connect ``protocol`` to a new mock transport (or ``transport``), as the loop would."""
    transport = MockTransport() if transport is None else transport
    protocol.connection_made(cast(asyncio.Transport, transport))
    return transport
