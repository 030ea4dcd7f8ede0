"""Load generation for bench/ingest.py: ACK-clocked floods, paced latency probes, idle sockets.

Frames are pre-encoded; every connection first sends an EVB1 login (its ACK is not counted),
then keeps ``window`` frames un-ACKed, refilling as ACKs (11 bytes each) come back.
"""

from __future__ import annotations

import asyncio
import binascii
import itertools
import socket
import struct
import time
from collections import deque
from collections.abc import Callable

ACK_BYTES = 11


def evb1_frame(type_id: int, seq: int, body: bytes) -> bytes:
    """An EVB1 frame (shared/protocols/evb1.md): magic, version 1, type, seq, length, CRC."""
    header = bytes([1, type_id]) + struct.pack(">HH", seq, len(body)) + body
    return b"EV" + header + struct.pack(">H", binascii.crc_hqx(header, 0xFFFF))


def login_frame(index: int) -> bytes:
    return evb1_frame(1, 0, f"{861000000000000 + index:015d}".encode() + b"\x01\x00")


class _Flood(asyncio.Protocol):
    def __init__(self, frames: list[bytes], window: int, batch: int, counter: list[int]) -> None:
        self.frames = itertools.cycle(frames)
        self.window = window
        self.batch = batch
        self.counter = counter
        self.pending_bytes = 0
        self.owed = 0
        self.login_acked = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        _no_delay(transport)

    def start(self, index: int) -> None:
        assert self.transport is not None
        self.transport.write(login_frame(index))
        self._send(self.window)

    def _send(self, count: int) -> None:
        assert self.transport is not None
        self.owed += count
        while self.owed >= self.batch:
            self.owed -= self.batch
            if self.batch == 1:
                self.transport.write(next(self.frames))
            else:
                self.transport.write(b"".join(next(self.frames) for _ in range(self.batch)))

    def data_received(self, data: bytes) -> None:
        self.pending_bytes += len(data)
        acks, self.pending_bytes = divmod(self.pending_bytes, ACK_BYTES)
        if not self.login_acked and acks:
            self.login_acked = True
            acks -= 1
        self.counter[0] += acks
        if acks:
            self._send(acks)


async def _connect_all(
    port: int, count: int, factory: Callable[[], asyncio.Protocol]
) -> list[asyncio.Protocol]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(256)

    async def one() -> asyncio.Protocol:
        async with gate:
            _, proto = await loop.create_connection(factory, "127.0.0.1", port)
            return proto

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def blast(
    port: int,
    frames: list[bytes],
    connections: int,
    window: int,
    batch: int,
    warmup_s: float,
    seconds: float,
    mark: Callable[[], None],
) -> tuple[int, float]:
    """Frames ACKed during ``seconds`` after ``warmup_s``, and the exact window length."""
    counter = [0]
    protos = await _connect_all(port, connections, lambda: _Flood(frames, window, batch, counter))
    for i, proto in enumerate(protos):
        assert isinstance(proto, _Flood)
        proto.start(i)
    await asyncio.sleep(warmup_s)
    mark()
    start, acked0 = time.monotonic(), counter[0]
    await asyncio.sleep(seconds)
    wall, acked = time.monotonic() - start, counter[0] - acked0
    for proto in protos:
        assert isinstance(proto, _Flood) and proto.transport is not None
        proto.transport.abort()
    return acked, wall


def _no_delay(transport: asyncio.BaseTransport) -> None:
    """Each write leaves as its own segment, as a device's frame does."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Probe(asyncio.Protocol):
    """Paced sender: ACKs come back in frame order per connection, so a FIFO of send times
    matches them (true for the gateway and the baseline alike)."""

    def __init__(self, samples: list[float]) -> None:
        self.sent: deque[float] = deque()
        self.samples = samples
        self.pending_bytes = 0
        self.recording = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        _no_delay(transport)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.pending_bytes += len(data)
        acks, self.pending_bytes = divmod(self.pending_bytes, ACK_BYTES)
        for _ in range(acks):
            if self.sent:
                sent = self.sent.popleft()
                if self.recording and sent > 0:
                    self.samples.append(now - sent)


async def ack_latencies(
    port: int,
    frames: list[bytes],
    connections: int,
    rate: float,
    seconds: float,
    mark: Callable[[], None] = lambda: None,
) -> list[float]:
    """Send ``rate`` frames/s, one per write, round-robin; latencies of the last ``seconds``
    (and of the ACKs that come in the half second after). ``mark`` is called when the recorded
    window opens and when it closes, before the sockets do."""
    samples: list[float] = []
    protos = await _connect_all(port, connections, lambda: _Probe(samples))
    probes = [p for p in protos if isinstance(p, _Probe)]
    for i, probe in enumerate(probes):
        assert probe.transport is not None
        probe.sent.append(0.0)  # the login's ACK: not a sample
        probe.transport.write(login_frame(i))
    await asyncio.sleep(0.5)
    ring, frame_iter = itertools.cycle(probes), itertools.cycle(frames)
    tick = 0.001
    start = time.monotonic()
    warmup_end, end = start + 1.0, start + 1.0 + seconds
    credit, last = 0.0, start
    recording = False
    while (now := time.monotonic()) < end:
        if not recording and now >= warmup_end:
            recording = True
            mark()
            for probe in probes:
                probe.recording = True
        # By the time elapsed, not the tick asked for: a sleep overshoots, and credit per tick
        # sent ~15 % below ``rate``.
        credit += rate * (now - last)
        last = now
        while credit >= 1:
            credit -= 1
            probe = next(ring)
            assert probe.transport is not None
            probe.sent.append(time.monotonic())
            probe.transport.write(next(frame_iter))
        await asyncio.sleep(tick)
    await asyncio.sleep(0.5)
    mark()
    for probe in probes:
        assert probe.transport is not None
        probe.transport.abort()
    return samples


async def idle_connections(
    port: int, count: int, logins: list[bytes], rss_bytes: Callable[[], int]
) -> float:
    """Server RSS growth per connection once ``count`` connections are open and idle."""
    before = rss_bytes()
    gate = asyncio.Semaphore(256)
    writers = []

    async def one(i: int) -> None:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            if logins:
                writer.write(logins[i])
                await reader.readexactly(ACK_BYTES)
            writers.append(writer)

    await asyncio.gather(*(one(i) for i in range(count)))
    await asyncio.sleep(1.0)
    after = rss_bytes()
    for writer in writers:
        writer.transport.abort()
    return (after - before) / count
