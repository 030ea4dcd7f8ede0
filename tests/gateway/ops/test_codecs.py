"""The codecs the listeners' settings call for: each listener's options reach its codec."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.common.settings_base import ConfigError
from gateway.ops.codecs import listener_codec, route_codecs
from gateway.pipeline.registry import CodecRegistry, CodecSource
from gateway.transport.mqtt.settings import MqttListenerSettings, MqttRoute
from gateway.transport.settings import ListenerSettings
from parser.codec import CodecOptions


def recording_registry(made: list[tuple[str, CodecOptions]]) -> CodecRegistry:
    def factory(name: str) -> Any:
        def create(options: CodecOptions) -> Any:
            made.append((name, options))
            return name

        return create

    return CodecRegistry({n: CodecSource(factory(n), "test") for n in ("gt06", "evb1")})


def test_a_listener_codec_gets_the_listener_options_and_a_wall_clock() -> None:
    made: list[tuple[str, CodecOptions]] = []
    ls = ListenerSettings(
        codec="gt06",
        port=5023,
        max_frame_bytes=512,
        timezone="Asia/Kolkata",
        variant="trx16i",
        allowed_devices=["1", "2"],
    )
    listener_codec(recording_registry(made), ls)
    [(name, options)] = made
    assert name == "gt06"
    assert (options.max_frame_bytes, options.timezone, options.variant) == (
        512,
        "Asia/Kolkata",
        "trx16i",
    )
    assert options.allowed_devices == frozenset({"1", "2"})
    assert options.clock_ms is not None and options.clock_ms() > 1_700_000_000_000


def test_each_mqtt_route_gets_its_codec_by_name() -> None:
    made: list[tuple[str, CodecOptions]] = []
    ms = MqttListenerSettings(routes=[MqttRoute(), MqttRoute(topic="x/{device_id}", codec="gt06")])
    codecs = route_codecs(recording_registry(made), ms)
    assert list(codecs) == ["evb1", "gt06"]
    assert [name for name, _ in made] == ["evb1", "gt06"]


def test_an_unknown_codec_is_a_config_error_naming_the_section() -> None:
    registry = recording_registry([])
    with pytest.raises(ConfigError, match=r"^listeners: unknown codec 'nope'"):
        listener_codec(registry, ListenerSettings(codec="nope", port=1))
    ms = MqttListenerSettings(routes=[MqttRoute(codec="nope")])
    with pytest.raises(ConfigError, match=r"^mqtt_listeners: unknown codec 'nope'"):
        route_codecs(registry, ms)
