"""A pipeline route, driven without brokers: whatever its codec does, the message is kept."""

from __future__ import annotations

from typing import Any, cast

from gateway.bridge.client import Received
from gateway.bridge.routes import PipelineRoute
from gateway.bridge.settings import RouteSettings
from gateway.bridge.stats import RouteStats
from gateway.bridge.window import InFlightWindow
from gateway.common.tickets import Ticket
from gateway.pipeline.accept import FrameSource, Pipeline
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
