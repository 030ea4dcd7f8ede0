"""Routes, driven without brokers: a pipeline route keeps the message whatever its codec does;
an MQTT route journals it and acknowledges the source per its ACK policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from gateway.bridge.client import Received
from gateway.bridge.outbox import JournaledMessage, Outbox, decode_message
from gateway.bridge.routes import MqttRoute, PipelineRoute
from gateway.bridge.settings import RouteSettings
from gateway.bridge.stats import RouteStats
from gateway.bridge.window import InFlightWindow
from gateway.common.settings_base import AckPolicy
from gateway.common.tickets import Ticket
from gateway.journal.settings import LocalSinkSettings
from gateway.pipeline.accept import FrameSource, Pipeline
from gateway.pipeline.flow_control import FlowControl
from parser.events import Frame
from parser.records import Reading
from tests.parser.streams import layout_codec


class BrokenCodec:
    """A plug-in codec with a bug: its session raises on some input."""

    def __init__(self) -> None:
        real = layout_codec("evb1")
        self.name, self.transports, self.max_frame_bytes = "buggy", real.transports, 1024

    def session(self) -> Any:
        raise OverflowError("int too large to convert to float")

    def decode(self, payload: bytes) -> tuple[Reading, ...]:
        raise OverflowError("int too large to convert to float")


class Accepted:
    def __init__(self) -> None:
        self.frames: list[tuple[FrameSource, Frame]] = []

    def accept(self, source: FrameSource, frame: Frame, ticket: Ticket[Any] | None) -> int:
        self.frames.append((source, frame))
        return 0


def test_a_codec_that_raises_still_keeps_the_message_as_a_frame_that_did_not_decode() -> None:
    settings = RouteSettings(
        name="r", source="azure", topic="src/{device_id}/t", codec="buggy", ack_policy="accepted"
    )
    pipeline = Accepted()
    route = PipelineRoute(settings, RouteStats("r"), BrokenCodec(), cast(Pipeline, pipeline))
    acked: list[int] = []
    window = InFlightWindow(8, lambda m: acked.append(m.mid), lambda: 1.0)
    message = Received("src/d1/t", b"\x01\x02", 1, False, 7, (), None, 0.0)
    route.forward(window.admit(message, route.stats), {"device_id": "d1"}, "id-7")
    [(_, frame)] = pipeline.frames
    assert (frame.device_id, frame.payload, frame.error_code) == ("d1", b"\x01\x02", "codec_error")
    assert frame.error_detail is not None and "OverflowError" in frame.error_detail
    assert acked == [7] and route.stats.rejected == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("policy", ["accepted", "journaled", "delivered"])
async def test_an_mqtt_route_journals_the_message_and_acknowledges_it_per_its_policy(
    tmp_path: Path, policy: AckPolicy
) -> None:
    settings = RouteSettings(
        name="telemetry",
        source="azure",
        topic="src/{device_id}/t",
        destination="aws",
        destination_topic="aws/in/{device_id}/t",
        ack_policy=policy,
    )
    box = Outbox(
        tmp_path / "bridge",
        "aws",
        LocalSinkSettings(data_dir=tmp_path),
        FlowControl(1 << 20, 1 << 19, lambda: 0.0),
    )
    box.open()
    box.start()
    route = MqttRoute(settings, RouteStats("telemetry"), box)
    acked: list[int] = []
    window = InFlightWindow(8, lambda m: acked.append(m.mid), lambda: 1.0)
    user = (("bridge-msg-id", "upstream-id"), ("bridged-by", "other"), ("k", "v"))
    message = Received("src/d1/t", b"\x00\x01", 1, False, 7, user, "text/plain", 0.0, True)
    route.forward(window.admit(message, route.stats), {"device_id": "d1"}, "upstream-id")
    assert acked == ([7] if policy == "accepted" else [])
    while box.end == 0:
        await box.written.wait()
    assert acked == ([] if policy == "delivered" else [7])
    box.shipped(0)  # the destination confirmed the line at offset 0
    assert acked == [7]
    [line] = (tmp_path / "bridge").glob("aws-*.jsonl")
    journaled = decode_message(line.read_bytes().rstrip(b"\n"))
    assert journaled == JournaledMessage(
        id="upstream-id",
        route="telemetry",
        topic="aws/in/d1/t",
        qos=1,
        retain=True,
        received_ms=journaled.received_ms,
        payload=b"\x00\x01",
        content_type="text/plain",
        user_properties=(("k", "v"),),  # the bridge's own are set again when published
    )
    await box.close(5.0)
