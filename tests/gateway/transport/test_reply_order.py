"""Replies leave in the order their frames arrived, whatever order the stream writers finish in.

In process: one TCP connection over a fake transport (bytes in, replies out) on the real
pipeline, whose sink lets the test decide when each stream's batch is written. Then through the
real gateway process on loopback.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.common.stats import SinkStats
from gateway.pipeline.accept import Pipeline
from gateway.pipeline.flow_control import FlowControl
from gateway.pipeline.registry import CodecRegistry
from gateway.pipeline.settings import PipelineSettings
from gateway.transport.reply_order import ReplyOrder
from gateway.transport.settings import ListenerSettings
from gateway.transport.tcp import Listener
from tests.gateway.devices import DeviceSocket
from tests.gateway.gatewayproc import GatewayProcess, read_records
from tests.gateway.pipeline.memory_sink import STREAMS, MemorySink, until
from tests.gateway.transport.mock_transport import MockTransport
from tests.parser.streams import evb1_ack, evb1_frame, evb1_heartbeat, evb1_login

IMEI = "356307042441013"
UNKNOWN_TYPE = 0x7E  # frames (good CRC) but does not decode: raw/ and errors/, still ACKed
EVB1_ACK_BYTES = 11


def evb1_undecodable(seq: int) -> bytes:
    return evb1_frame(UNKNOWN_TYPE, seq, b"\x00\x01")


class Replies:
    """What a ReplyOrder releases, in release order."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.lost = 0

    def send_reply(self, reply: bytes, accepted_at: float, count: int = 1) -> None:
        self.sent.append(reply)

    def frame_lost(self) -> None:
        self.lost += 1


@given(st.permutations(range(12)), st.sets(st.integers(0, 11)))
def test_replies_leave_in_arrival_order_whatever_order_frames_finish_in(
    finish: list[int], immediate: set[int]
) -> None:
    # Frames 0..11 arrive in order; those in `immediate` are answered at once (a login, policy
    # `accepted`), the others when written, in the order `finish`.
    replies = Replies()
    order = ReplyOrder(replies)
    numbers = {}
    for frame in range(12):
        if frame in immediate:
            order.now(b"%d" % frame, 0.0)
        else:
            numbers[frame] = order.reserve()
    for frame in finish:
        if frame in numbers:
            order.release(numbers[frame], b"%d" % frame, 0.0)
            # Released: exactly the frames before the first one not yet written.
            pending = [f for f in numbers if f not in finish[: finish.index(frame) + 1]]
            first_pending = min(pending, default=12)
            assert replies.sent == [b"%d" % f for f in range(first_pending)]
    assert replies.sent == [b"%d" % f for f in range(12)]
    assert replies.lost == 0


async def connected() -> tuple[MemorySink, Pipeline, MockTransport, Listener]:
    sink = MemorySink(gated=True)
    settings = PipelineSettings()
    flow = FlowControl(settings.high_water_bytes, settings.low_water_bytes, time.monotonic)
    stats = {stream: SinkStats(stream) for stream in STREAMS}
    pipeline = Pipeline(settings, dict.fromkeys(STREAMS, sink), flow, stats)
    pipeline.start()
    codec = CodecRegistry.load().create("evb1")
    listener = Listener(ListenerSettings(codec="evb1", port=0), codec, pipeline, flow)
    transport = MockTransport()
    listener.connection().connection_made(cast(asyncio.Transport, transport))
    return sink, pipeline, transport, listener


@pytest.mark.asyncio
async def test_a_frame_written_early_waits_for_the_ack_of_the_frame_before_it() -> None:
    sink, pipeline, transport, listener = await connected()
    try:
        (conn,) = listener.connections
        # The login's reply does not wait for the sink; frame 1 does not decode (raw/ and
        # errors/), frame 2 does (raw/ and parsed/). Two reads: each read's frames share a
        # ticket, the order between tickets is what is tested here.
        conn.data_received(evb1_login(IMEI) + evb1_undecodable(1))
        conn.data_received(evb1_heartbeat(2))
        assert bytes(transport.out) == evb1_ack(0, 1)
        sink.gates["raw"].set()
        sink.gates["parsed"].set()
        await until(lambda: len(sink.records["raw"]) == 3 and len(sink.records["parsed"]) == 2)
        await asyncio.sleep(0.05)  # room for a wrong ACK to be written
        assert bytes(transport.out) == evb1_ack(0, 1)  # frame 2 is written, frame 1 is not
        sink.gates["errors"].set()
        await until(lambda: len(transport.out) == 3 * EVB1_ACK_BYTES)
        assert bytes(transport.out) == evb1_ack(0, 1) + evb1_ack(1, UNKNOWN_TYPE) + evb1_ack(2, 4)
        assert not transport.closing
    finally:
        await pipeline.close()


@pytest.mark.asyncio
async def test_the_frames_of_one_read_are_acked_together_in_order_once_all_are_written() -> None:
    sink, pipeline, transport, listener = await connected()
    try:
        (conn,) = listener.connections
        # One read: a login (answered at once), a frame, a second login (answered at once, but
        # after the frame before it), a frame that does not decode (waits for errors/) and one
        # that does.
        conn.data_received(
            evb1_login(IMEI)
            + evb1_heartbeat(1)
            + evb1_login(IMEI, seq=2)
            + evb1_undecodable(3)
            + evb1_heartbeat(4)
        )
        assert bytes(transport.out) == evb1_ack(0, 1)
        sink.gates["raw"].set()
        sink.gates["parsed"].set()
        # Frame 1 is written: its ACK and the second login's leave; 3 and 4 share a ticket.
        await until(lambda: len(transport.out) == 3 * EVB1_ACK_BYTES)
        await asyncio.sleep(0.05)  # room for a wrong ACK to be written
        assert len(transport.out) == 3 * EVB1_ACK_BYTES
        sink.gates["errors"].set()
        await until(lambda: len(transport.out) == 5 * EVB1_ACK_BYTES)
        assert bytes(transport.out) == (
            evb1_ack(0, 1)
            + evb1_ack(1, 4)
            + evb1_ack(2, 1)
            + evb1_ack(3, UNKNOWN_TYPE)
            + evb1_ack(4, 4)
        )
        # Each frame's acknowledgement is counted, and its latency observed, once.
        assert listener.stats.acks == 5
        assert sum(listener.stats.ack_latency.counts) == 5
    finally:
        await pipeline.close()


@pytest.mark.asyncio
async def test_a_frame_the_sink_gave_up_on_closes_the_connection_after_the_acks_before_it() -> None:
    sink, pipeline, transport, listener = await connected()
    try:
        (conn,) = listener.connections
        sink.gates["raw"].set()
        sink.gates["parsed"].set()
        conn.data_received(evb1_login(IMEI) + evb1_heartbeat(1))
        await until(lambda: len(transport.out) == 2 * EVB1_ACK_BYTES)
        # Frame 2's error record is dead-lettered: frame 3, written, may not be ACKed before
        # it, and frame 2 never will be. The device must reconnect and resend both.
        sink.lose.add("errors")
        conn.data_received(evb1_undecodable(2) + evb1_heartbeat(3))
        await until(lambda: len(sink.records["parsed"]) == 2)
        sink.gates["errors"].set()
        await until(lambda: transport.closing)
        assert bytes(transport.out) == evb1_ack(0, 1) + evb1_ack(1, 4)
        assert conn.close_reason == "frame_lost"
        assert listener.stats.refused["frame_lost"] == 1
    finally:
        await pipeline.close()


def test_acks_leave_in_frame_order_when_decode_errors_alternate_with_good_frames(
    tmp_path: Path,
) -> None:
    gw = GatewayProcess(tmp_path / "data", codecs=("evb1",))
    frames = 200
    try:
        dev = DeviceSocket(gw.ports["evb1"], timeout=20)
        dev.send(evb1_login(IMEI))
        assert dev.recv_exact(EVB1_ACK_BYTES) == evb1_ack(0, 1)
        # Several rounds, each one read's worth: frames finishing out of order (a frame that
        # did not decode also waits for errors/) must still be ACKed in the order sent.
        expected = b""
        for start in range(1, frames, 20):
            burst = b""
            for seq in range(start, start + 20):
                good = seq % 2 == 0
                burst += evb1_heartbeat(seq) if good else evb1_undecodable(seq)
                expected += evb1_ack(seq, 4 if good else UNKNOWN_TYPE)
            dev.send(burst)
        assert dev.recv_exact(len(expected)) == expected
        dev.close()
    finally:
        assert gw.stop() == 0
    assert len(read_records(gw.data_dir, "errors")) == frames // 2
