"""One TCP device connection in process: bytes in through a mock transport, ACKs out, records out
through the real pipeline into an in-memory sink. No sockets; process tests sit beside these."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from gateway.common.stats import SinkStats
from gateway.pipeline.accept import Pipeline
from gateway.pipeline.flow_control import FlowControl
from gateway.pipeline.registry import CodecRegistry
from gateway.pipeline.settings import PipelineSettings
from gateway.transport.settings import ListenerSettings
from gateway.transport.tcp import Listener
from tests.gateway.pipeline.memory_sink import STREAMS, MemorySink, until
from tests.gateway.transport.mock_transport import MockTransport, made
from tests.parser.streams import evb1_ack, evb1_heartbeat, evb1_login

IMEI = "356307042441013"
HEARTBEAT = 4  # the EVB1 type id its ACK echoes


class Port:
    """A TCP listener for EVB1 on the real pipeline; the sink decides when records are written."""

    def __init__(self, sink: MemorySink, flow: FlowControl, **settings: Any) -> None:
        stats = {stream: SinkStats(stream) for stream in STREAMS}
        self.sink = sink
        self.flow = flow
        self.pipeline = Pipeline(PipelineSettings(), dict.fromkeys(STREAMS, sink), flow, stats)
        codec = CodecRegistry.load().create("evb1")
        self.listener = Listener(
            ListenerSettings(codec="evb1", port=0, **settings), codec, self.pipeline, flow
        )


def budget(high_water_bytes: int = 64 << 20, low_water_bytes: int = 32 << 20) -> FlowControl:
    return FlowControl(high_water_bytes, low_water_bytes, time.monotonic)


@pytest_asyncio.fixture
async def port() -> AsyncIterator[Port]:
    port = Port(MemorySink(gated=True), budget())
    port.pipeline.start()
    yield port
    await port.pipeline.close()


def open_all(sink: MemorySink) -> None:
    for gate in sink.gates.values():
        gate.set()


@pytest.mark.asyncio
async def test_a_login_is_answered_at_once_and_a_frame_once_its_records_are_written(
    port: Port,
) -> None:
    conn = port.listener.connection()
    transport = made(conn)
    conn.data_received(evb1_login(IMEI) + evb1_heartbeat(1))
    assert transport.written() == evb1_ack(0, 1)  # the login's ACK does not wait for the sink
    open_all(port.sink)
    await until(lambda: len(transport.out) > 0)
    assert transport.written() == evb1_ack(1, HEARTBEAT)
    raw = [json.loads(r) for r in port.sink.records["raw"]]
    assert [(r["device_id"], r["transport"], r["peer"]) for r in raw] == [
        (IMEI, "tcp", "127.0.0.1:5555")
    ] * 2
    stats = port.listener.stats
    assert (stats.frames, stats.acks, stats.connections_open) == (1, 2, 1)


@pytest.mark.asyncio
async def test_bytes_one_at_a_time_give_the_same_acks_and_records(port: Port) -> None:
    data = evb1_login(IMEI) + b"".join(evb1_heartbeat(seq) for seq in range(1, 4))
    open_all(port.sink)
    conn = port.listener.connection()
    transport = made(conn)
    for i in range(len(data)):
        conn.data_received(data[i : i + 1])
    expected = evb1_ack(0, 1) + b"".join(evb1_ack(seq, HEARTBEAT) for seq in range(1, 4))
    await until(lambda: len(transport.out) == len(expected))
    assert transport.written() == expected
    assert len(port.sink.records["raw"]) == 4


@pytest.mark.asyncio
async def test_data_before_login_closes_without_storing_it(port: Port) -> None:
    conn = port.listener.connection()
    transport = made(conn)
    conn.data_received(evb1_heartbeat(1))
    assert transport.closing and transport.written() == b""
    assert port.listener.stats.rejects["data_before_login"] == 1
    assert port.pipeline.unwritten_bytes == 0


@pytest.mark.asyncio
async def test_a_full_budget_pauses_reading_and_what_was_read_waits_until_resumed() -> None:
    # A budget below one frame's records: the first frame fills it.
    port = Port(MemorySink(gated=True), budget(high_water_bytes=1, low_water_bytes=0))
    port.pipeline.start()
    try:
        conn = port.listener.connection()
        transport = made(conn)
        conn.data_received(evb1_login(IMEI) + evb1_heartbeat(1))
        assert not transport.reading and port.flow.paused
        # Bytes the socket had already read: kept as they are, not fed to the codec.
        conn.data_received(evb1_heartbeat(2))
        assert port.listener.stats.frames == 1
        open_all(port.sink)  # written: the budget frees, every reader resumes
        await until(lambda: len(transport.out) == 3 * len(evb1_ack(0, 1)))
        assert transport.written() == evb1_ack(0, 1) + b"".join(
            evb1_ack(seq, HEARTBEAT) for seq in (1, 2)
        )
        assert port.listener.stats.frames == 2
    finally:
        await port.pipeline.close()


@pytest.mark.asyncio
async def test_a_connection_opened_while_the_budget_is_full_starts_paused_and_resumes_with_it(
    port: Port,
) -> None:
    # The port is the budget's reader for all its connections, those opened while it is full too.
    port.flow.hold("journal", True)
    conn = port.listener.connection()
    transport = made(conn)
    assert not transport.reading and conn.paused
    conn.data_received(evb1_login(IMEI))  # (bytes the socket had already read wait)
    assert transport.written() == b""
    port.flow.hold("journal", False)
    assert transport.reading and not conn.paused
    assert transport.written() == evb1_ack(0, 1)


@pytest.mark.asyncio
async def test_an_idle_logged_in_connection_holds_no_reply_order_outbox_or_read_flags(
    port: Port,
) -> None:
    # Most of a gateway's connections are idle: what only a busy one needs is made on first use.
    conn = port.listener.connection()
    transport = made(conn)
    conn.data_received(evb1_login(IMEI))
    assert transport.written() == evb1_ack(0, 1)
    assert (conn._reply_order, conn._outbox, conn._flow) == (None, None, None)
    assert not hasattr(conn, "__dict__") and not hasattr(conn.handler, "__dict__")
    conn.data_received(evb1_heartbeat(1))  # a frame whose ACK waits for its records
    assert conn._reply_order is not None
    open_all(port.sink)
    await until(lambda: len(transport.out) > 0)
    assert transport.written() == evb1_ack(1, HEARTBEAT)
    assert conn._outbox is None  # written, and let go


@pytest.mark.asyncio
async def test_under_accepted_a_frame_is_acked_while_the_journal_writer_is_stalled() -> None:
    # The ACK leaves with the read that brought the frame: it waits for no journal write, no
    # batch settling, and no memory budget below the high watermark (issue 17).
    port = Port(MemorySink(gated=True), budget(), ack_policy="accepted")
    port.pipeline.start()
    try:
        conn = port.listener.connection()
        transport = made(conn)
        conn.data_received(evb1_login(IMEI) + evb1_heartbeat(1))
        assert transport.written() == evb1_ack(0, 1) + evb1_ack(1, HEARTBEAT)
        await until(lambda: port.sink.writes["raw"] == 1)  # the write holds, unfinished
        conn.data_received(evb1_heartbeat(2))
        assert transport.written().endswith(evb1_ack(2, HEARTBEAT))
        assert port.sink.records["raw"] == [] and port.flow.buffered_bytes > 0
        # Closed, it is not kept for replies until the stalled write settles a batch.
        conn.connection_lost(None)
        assert conn not in port.listener.port.replies._pending
    finally:
        await port.pipeline.close()


@pytest.mark.asyncio
async def test_accepted_sockets_have_keep_alive_and_no_delay() -> None:
    # Set once on the listening socket, which accepted sockets inherit.
    listener = Port(MemorySink(), budget(), host="127.0.0.1").listener
    listener.port.pipeline.start()
    host, bound = await listener.start()
    try:
        reader, writer = await asyncio.open_connection(host, bound)
        writer.write(evb1_login(IMEI))
        ack = evb1_ack(0, 1)
        assert await asyncio.wait_for(reader.readexactly(len(ack)), 5) == ack
        (conn,) = listener.connections
        assert conn.transport is not None
        sock = conn.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        writer.close()
    finally:
        listener.stop_accepting()
        await listener.port.pipeline.close()


@pytest.mark.asyncio
async def test_stop_reading_still_acks_what_was_accepted(port: Port) -> None:
    conn = port.listener.connection()
    transport = made(conn)
    conn.data_received(evb1_login(IMEI) + evb1_heartbeat(1))
    conn.stop_reading()  # shutdown: nothing more is read
    assert not transport.reading
    conn.data_received(evb1_heartbeat(2))  # (bytes already in flight are ignored)
    open_all(port.sink)
    await port.pipeline.flush()
    await until(lambda: len(transport.out) == 2 * len(evb1_ack(0, 1)))
    assert transport.written() == evb1_ack(0, 1) + evb1_ack(1, HEARTBEAT)
    assert len(port.sink.records["raw"]) == 2


@pytest.mark.asyncio
async def test_connections_beyond_the_limit_are_aborted_at_once() -> None:
    port = Port(MemorySink(), budget(), max_connections=1)
    first, second = MockTransport(), MockTransport(("127.0.0.1", 5556))
    made(port.listener.connection(), first)
    made(port.listener.connection(), second)
    assert not first.closing and second.aborted
    assert port.listener.stats.refused["max_connections"] == 1
    assert len(port.listener.connections) == 1


@pytest.mark.asyncio
async def test_a_source_outside_the_allow_list_is_aborted_before_a_byte_is_read() -> None:
    port = Port(MemorySink(), budget(), allowed_networks=["10.0.0.0/8"])
    conn = port.listener.connection()
    transport = made(conn)
    assert transport.aborted and conn.close_reason == "source_not_allowed"
