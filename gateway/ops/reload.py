"""SIGHUP for the device listeners: each takes its fresh settings (TLS certificates, source and
device allow-lists, codec options) for its new connections; ports cannot change live."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gateway.ops.codecs import listener_codec, route_codecs
from gateway.pipeline.registry import CodecRegistry
from gateway.transport.mqtt.listener import MqttListener
from gateway.transport.mqtt.settings import MqttListenerSettings
from gateway.transport.settings import ListenerSettings
from gateway.transport.tcp import Listener


def prepare_reload(
    registry: CodecRegistry,
    listeners: Sequence[Listener],
    mqtt_listeners: Sequence[MqttListener],
    fresh: Sequence[ListenerSettings],
    fresh_mqtt: Sequence[MqttListenerSettings],
) -> Callable[[], None]:
    """Match each running listener with its fresh settings (by address; by the bound port for
    one configured on port 0; else it keeps its own) and make its codecs. Returns the function
    that applies them all together; raises ConfigError, before anything changed."""
    by_address = {(ls.codec, ls.host, ls.port): ls for ls in fresh}
    changes = []
    for listener in listeners:
        old = listener.settings
        ls = by_address.get((old.codec, old.host, old.port)) or by_address.get(
            (old.codec, old.host, listener.bound_port), old
        )
        changes.append((listener, ls, listener_codec(registry, ls)))
    by_port = {(ms.host, ms.port): ms for ms in fresh_mqtt}
    mqtt_changes = []
    for mqtt in mqtt_listeners:
        old_ms = mqtt.settings
        ms = by_port.get((old_ms.host, old_ms.port)) or by_port.get(
            (old_ms.host, mqtt.bound_port), old_ms
        )
        mqtt_changes.append(mqtt.prepare_reload(ms, route_codecs(registry, ms)))

    def apply() -> None:
        for listener, ls, codec in changes:
            listener.reload(ls, codec)
        for apply_mqtt in mqtt_changes:
            apply_mqtt()

    return apply
