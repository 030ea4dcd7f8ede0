"""The codecs the device listeners' settings call for, made by the codec registry."""

from __future__ import annotations

import time

from gateway.common.settings_base import ConfigError
from gateway.pipeline.registry import CodecRegistry, UnknownCodecError
from gateway.transport.mqtt.settings import MqttListenerSettings
from gateway.transport.settings import ListenerSettings
from parser.codec import Codec, CodecOptions


def _wall_clock_ms() -> int:
    """The clock codecs read for replies that carry the time (GT06 0x8A)."""
    return time.time_ns() // 1_000_000


def listener_codec(registry: CodecRegistry, ls: ListenerSettings) -> Codec:
    """The codec of a TCP listener, with its options; ConfigError if the codec is unknown."""
    options = CodecOptions(
        max_frame_bytes=ls.max_frame_bytes,
        timezone=ls.timezone,
        allowed_devices=None if ls.allowed_devices is None else frozenset(ls.allowed_devices),
        variant=ls.variant,
        clock_ms=_wall_clock_ms,
    )
    try:
        return registry.create(ls.codec, options)
    except UnknownCodecError as exc:
        raise ConfigError([f"listeners: {exc}"]) from None


def route_codecs(registry: CodecRegistry, ms: MqttListenerSettings) -> dict[str, Codec]:
    """The codec of each route of an MQTT listener, by name; ConfigError if one is unknown."""
    try:
        return {r.codec: registry.create(r.codec) for r in ms.routes}
    except UnknownCodecError as exc:
        raise ConfigError([f"mqtt_listeners: {exc}"]) from None
