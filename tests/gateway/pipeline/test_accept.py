"""The pipeline alone: frames in, records out through an in-memory sink, tickets settled.

No sockets and no files: ``accept`` gets the events a codec session yields, and a finalizer
records what each frame's ticket reports.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from gateway.common.stats import SinkStats
from gateway.common.tickets import Outcome, Ticket
from gateway.pipeline.accept import FrameSource, Pipeline
from gateway.pipeline.flow_control import FlowControl
from gateway.pipeline.registry import CodecRegistry
from gateway.pipeline.settings import PipelineSettings
from parser.events import Frame, Login
from tests.gateway.pipeline.memory_sink import STREAMS, MemorySink, until
from tests.parser.streams import evb1_frame, evb1_heartbeat, evb1_login

IMEI = "356307042441013"
SOURCE = FrameSource("evb1", "tcp", "127.0.0.1:5555")
UNKNOWN_TYPE = 0x7E  # frames (good CRC) but does not decode


class Settled:
    """A finalizer that records each frame's outcome, and a batch observer counting batches."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[str, Outcome]] = []
        self.batches = 0

    def settled(self, note: str, outcome: Outcome) -> None:
        self.outcomes.append((note, outcome))

    def batch_settled(self) -> None:
        self.batches += 1


class Harness:
    def __init__(self, sink: MemorySink) -> None:
        settings = PipelineSettings()
        self.sink = sink
        self.flow = FlowControl(settings.high_water_bytes, settings.low_water_bytes, time.monotonic)
        self.stats = {stream: SinkStats(stream) for stream in STREAMS}
        self.pipeline = Pipeline(settings, dict.fromkeys(STREAMS, sink), self.flow, self.stats)
        self.settled = Settled()
        self.pipeline.on_batch_settled(self.settled)

    def accept(self, event: Frame | Login, note: str | None) -> int:
        ticket = None if note is None else Ticket(self.settled, note)
        return self.pipeline.accept(SOURCE, event, ticket)


def events(data: bytes) -> list[Frame | Login]:
    """What an EVB1 session yields for ``data`` (a login first)."""
    session = CodecRegistry.load().create("evb1").session()
    found = session.feed(evb1_login(IMEI) + data)
    assert all(isinstance(e, Frame | Login) for e in found)
    return [e for e in found if isinstance(e, Frame | Login)]


@pytest_asyncio.fixture
async def gated() -> AsyncIterator[Harness]:
    harness = Harness(MemorySink(gated=True))
    harness.pipeline.start()
    yield harness
    await harness.pipeline.close()


@pytest.mark.asyncio
async def test_a_frames_records_reach_their_streams_and_its_ticket_settles_once_written(
    gated: Harness,
) -> None:
    login, frame = events(evb1_heartbeat(1))
    gated.accept(login, None)
    parsed = gated.accept(frame, "frame 1")
    assert parsed >= 1 and gated.pipeline.unwritten_bytes > 0
    gated.sink.gates["raw"].set()
    await until(lambda: len(gated.sink.records["raw"]) == 2)
    assert gated.settled.outcomes == []  # its parsed records are not written yet
    gated.sink.gates["parsed"].set()
    await until(lambda: gated.settled.outcomes != [])
    assert gated.settled.outcomes == [("frame 1", Outcome.WRITTEN)]
    raw = [json.loads(r) for r in gated.sink.records["raw"]]
    assert [r["device_id"] for r in raw] == [IMEI, IMEI]
    # Every parsed record names its raw record (the login has one too).
    raw_ids = {json.loads(r)["raw_id"] for r in gated.sink.records["parsed"]}
    assert raw_ids == {raw[0]["id"], raw[1]["id"]}
    assert set(gated.sink.keys["raw"]) == {IMEI}  # partition key = device id
    # Everything written: the memory budget is back to zero.
    assert gated.pipeline.unwritten_bytes == 0 and gated.flow.buffered_bytes == 0


@pytest.mark.asyncio
async def test_tickets_settle_in_the_order_frames_were_accepted(gated: Harness) -> None:
    login, *frames = events(b"".join(evb1_heartbeat(seq) for seq in range(1, 6)))
    gated.accept(login, None)
    for seq, frame in enumerate(frames, 1):
        gated.accept(frame, f"frame {seq}")
    for gate in gated.sink.gates.values():
        gate.set()
    await until(lambda: len(gated.settled.outcomes) == 5)
    assert gated.settled.outcomes == [(f"frame {n}", Outcome.WRITTEN) for n in range(1, 6)]
    assert gated.settled.batches >= 1


@pytest.mark.asyncio
async def test_a_write_takes_everything_that_arrived_while_the_previous_one_was_written(
    gated: Harness,
) -> None:
    """Group commit with the default bounds: a stream writes one batch per round trip through
    the loop, so one write must take what a busy loop turn brings in, here the frames of 50
    MQTT clients with 64 in flight each. Written 500 at a time (issue 17), ``accepted``, whose
    ACKs do not wait for the journal, outran it, filled the memory budget and paused readers."""
    login, *frames = events(b"".join(evb1_heartbeat(seq) for seq in range(1, 50 * 64 + 1)))
    gated.accept(login, None)
    await until(lambda: gated.sink.writes["raw"] == 1)  # the login's, held at the gate
    for frame in frames:
        gated.accept(frame, None)
    gated.sink.gates["raw"].set()
    await until(lambda: len(gated.sink.records["raw"]) == 1 + len(frames))
    assert gated.sink.writes["raw"] == 2
    assert not gated.flow.paused


@pytest.mark.asyncio
async def test_a_frame_that_does_not_decode_waits_for_its_error_record(gated: Harness) -> None:
    login, frame = events(evb1_frame(UNKNOWN_TYPE, 1, b"\x00\x01"))
    assert isinstance(frame, Frame) and frame.error_code is not None
    gated.accept(login, None)
    assert gated.accept(frame, "undecodable") == 0
    gated.sink.gates["raw"].set()
    gated.sink.gates["parsed"].set()
    await until(lambda: len(gated.sink.records["raw"]) == 2)
    assert gated.settled.outcomes == []
    gated.sink.gates["errors"].set()
    await until(lambda: gated.settled.outcomes != [])
    assert gated.settled.outcomes == [("undecodable", Outcome.WRITTEN)]
    (error,) = (json.loads(r) for r in gated.sink.records["errors"])
    assert error["device_id"] == IMEI and error["reason"] == frame.error_code


@pytest.mark.asyncio
async def test_a_record_lost_to_the_sink_settles_its_frame_as_lost_and_only_that_frame(
    gated: Harness,
) -> None:
    login, good, bad = events(evb1_heartbeat(1) + evb1_frame(UNKNOWN_TYPE, 2, b"\x00\x01"))
    gated.sink.lose.add("errors")
    gated.accept(login, None)
    gated.accept(good, "good")
    gated.accept(bad, "bad")
    for gate in gated.sink.gates.values():
        gate.set()
    await until(lambda: len(gated.settled.outcomes) == 2)
    assert sorted(gated.settled.outcomes) == [("bad", Outcome.LOST), ("good", Outcome.WRITTEN)]
    assert gated.stats["errors"].dead_letters == 1
    # Settled once: the frame's raw record, written after, reports nothing more.
    await until(lambda: len(gated.sink.records["raw"]) == 3)
    assert len(gated.settled.outcomes) == 2


@pytest.mark.asyncio
async def test_a_failed_write_is_retried_and_the_frame_settles_only_once_it_succeeds(
    gated: Harness,
) -> None:
    login, frame = events(evb1_heartbeat(1))
    gated.sink.fail = 1  # the first batch written (the raw one) fails once
    gated.sink.gates["raw"].set()
    gated.accept(login, None)
    gated.accept(frame, "frame 1")
    await until(lambda: gated.stats["raw"].errors == 1)
    assert gated.pipeline.failing_for_s() > 0
    gated.sink.gates["parsed"].set()
    await until(lambda: gated.settled.outcomes != [])
    assert gated.settled.outcomes == [("frame 1", Outcome.WRITTEN)]
    assert len(gated.sink.records["raw"]) == 2 and gated.pipeline.failing_for_s() == 0


@pytest.mark.asyncio
async def test_flush_returns_once_everything_accepted_is_written() -> None:
    harness = Harness(MemorySink())
    harness.pipeline.start()
    try:
        for event in events(b"".join(evb1_heartbeat(seq) for seq in range(1, 4))):
            harness.accept(event, None)  # (ACK policy accepted: nobody waits)
        await harness.pipeline.flush()
        assert len(harness.sink.records["raw"]) == 4 and harness.pipeline.unwritten_bytes == 0
    finally:
        await harness.pipeline.close()
