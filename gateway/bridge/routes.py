"""Routes: where a source message goes — into the pipeline, or republished to a destination.

Each message gets an id for downstream deduplication. What stays the same when a broker delivers
a message again is its source, topic and bytes (the packet id is reused for other messages, and
the arrival time differs), so the id is a hash of those three: every redelivery and every
bridge-caused duplicate carries the same id. The flip side, said plainly: two messages with the
same bytes on the same topic share an id — for telematics frames, which carry a sequence number
or a timestamp, that is the same frame sent twice. An id already set upstream (another bridge's
``bridge-msg-id``) is kept.

In the pipeline the id travels in the raw record's ``peer`` (``<source>;bridge-msg-id=<id>``);
on MQTT 5 destinations as the user property ``bridge-msg-id``, next to ``bridged-by``, the mark
by which a source recognises the bridge's own copies (loop prevention).

Either way the message is journaled before it goes on: a pipeline route's frame by the pipeline,
an MQTT route's message in its destination's series (``gateway.bridge.outbox``), from which the
destination's shipper publishes it. The route's ``ack_policy`` says when the source hears back:
``accepted`` at once, ``journaled`` once a journal fsync covers the message, ``delivered`` once
its destination confirmed it (the pipeline's remote targets, or the MQTT endpoint's PUBACK).
"""

from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod

from gateway.bridge.client import Received
from gateway.bridge.outbox import JournaledMessage, Outbox, encode_message
from gateway.bridge.settings import DEVICE_ID, RouteSettings
from gateway.bridge.stats import RouteStats
from gateway.bridge.window import Delivery
from gateway.common.tickets import Outcome, Ticket
from gateway.pipeline.accept import FrameSource, Pipeline
from parser.codec import Codec
from parser.events import Action, Frame, Reject
from parser.messages import message_frame
from parser.topics import TopicTemplate

TRANSPORT = "mqtt-bridge"
MSG_ID_PROPERTY = "bridge-msg-id"
BRIDGED_BY_PROPERTY = "bridged-by"


def message_id(source: str, message: Received) -> str:
    """The dedup id of ``message`` (see the module docstring)."""
    for key, value in message.user_properties:
        if key == MSG_ID_PROPERTY:
            return value
    digest = hashlib.blake2b(digest_size=16)
    for part in (source.encode(), message.topic.encode()):
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    digest.update(message.payload)
    return digest.hexdigest()


class Route(ABC):
    """A route's matching half; subclasses forward."""

    def __init__(self, settings: RouteSettings, stats: RouteStats) -> None:
        self.settings = settings
        self.stats = stats
        self.template = TopicTemplate.parse(settings.topic)
        # Pipeline routes wait for a durable write before the source is acknowledged, and a
        # write that is given up on (dead-lettered) never reports back: hence a deadline.
        self.has_deadline = False

    @abstractmethod
    def forward(self, delivery: Delivery, values: dict[str, str], msg_id: str) -> None:
        """Hand the message on; ``delivery.delivered()`` once its ACK policy is met."""


class PipelineRoute(Route):
    """Each message is one frame of ``codec`` from the ``{device_id}`` of its topic."""

    def __init__(
        self,
        settings: RouteSettings,
        stats: RouteStats,
        codec: Codec,
        pipeline: Pipeline,
    ) -> None:
        super().__init__(settings, stats)
        self._codec = codec
        self._pipeline = pipeline
        self._waits = settings.ack_policy != "accepted"
        self._remote = settings.ack_policy == "delivered"
        self.has_deadline = self._waits

    def forward(self, delivery: Delivery, values: dict[str, str], msg_id: str) -> None:
        device_id = values[DEVICE_ID]
        payload = delivery.message.payload
        try:
            frame = message_frame(self._codec, device_id, payload)
        except Exception as exc:
            # A codec bug (a plug-in's, say) must not stop the bridge on every redelivery of
            # this message: it is kept like any frame that does not decode.
            frame = Reject("codec_error", f"{type(exc).__name__}: {exc}", Action.RESYNC)
        if isinstance(frame, Reject):
            # Not one frame: kept anyway as a raw record plus an error record with the reason
            # (the pipeline's path for frames that do not decode), so that acknowledging the
            # message loses nothing — it can be re-parsed after a codec fix.
            self.stats.rejected += 1
            frame = Frame(device_id, payload, b"", (), frame.reason, frame.detail)
        peer = f"{self.settings.source};{MSG_ID_PROPERTY}={msg_id}"
        source = FrameSource(self._codec.name, TRANSPORT, peer, self._remote)
        self._pipeline.accept(source, frame, Ticket(self, delivery) if self._waits else None)
        self.stats.forwarded += 1
        if not self._waits:
            delivery.delivered()

    def settled(self, delivery: Delivery, outcome: Outcome) -> None:
        """The message's frame is written (its ticket's finalizer); a lost one is left to the
        delivery deadline, which reconnects to have it redelivered."""
        if outcome is Outcome.WRITTEN:
            delivery.delivered()


class MqttRoute(Route):
    """Journal the message for ``destination_topic``, where its destination's shipper
    publishes it at the QoS it arrived with."""

    def __init__(self, settings: RouteSettings, stats: RouteStats, outbox: Outbox) -> None:
        super().__init__(settings, stats)
        assert settings.destination_topic is not None  # checked by RouteSettings
        self._out = TopicTemplate.parse(settings.destination_topic)
        self._outbox = outbox
        self._policy = settings.ack_policy

    def forward(self, delivery: Delivery, values: dict[str, str], msg_id: str) -> None:
        message = delivery.message
        kept = tuple(
            (k, v)
            for k, v in message.user_properties
            if k not in (MSG_ID_PROPERTY, BRIDGED_BY_PROPERTY)
        )
        line = encode_message(
            JournaledMessage(
                msg_id,
                self.settings.name,
                self._out.format(values),
                message.qos,
                message.retain,
                time.time_ns() // 1_000_000,
                message.payload,
                message.content_type,
                kept,
            )
        )
        policy = self._policy
        self._outbox.append(
            line,
            delivery if policy == "journaled" else None,
            delivery if policy == "delivered" else None,
        )
        self.stats.forwarded += 1
        if policy == "accepted":
            delivery.delivered()


def is_own_copy(message: Received, bridge_name: str) -> bool:
    """Whether ``message`` is one this bridge published (it carries our ``bridged-by``)."""
    return (BRIDGED_BY_PROPERTY, bridge_name) in message.user_properties


def pick(routes: list[Route], topic: str) -> tuple[Route, dict[str, str]] | None:
    """The first route whose template fits ``topic``, with the template's values."""
    for route in routes:
        values = route.template.match(topic)
        if values is not None:
            return route, values
    return None
