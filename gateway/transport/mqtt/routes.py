"""Topic routing and topic rights for one MQTT listener: which codec a topic's payload is, whose
identity a topic names, and which command topic a device may subscribe to.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.transport.mqtt.settings import DEVICE_ID, MqttListenerSettings
from parser.codec import Codec
from parser.topics import TopicTemplate

# Devices publish on a handful of topics each; a connection remembers this many resolutions,
# of topics up to this long (a topic can be as long as a packet: eight of 64 KiB would be kept
# for the connection's life, outside the memory budget; device topics are far shorter).
TOPIC_CACHE_ENTRIES = 8
TOPIC_CACHE_MAX_CHARS = 1024


@dataclass(frozen=True, slots=True)
class Route:
    template: TopicTemplate
    codec: Codec


@dataclass(frozen=True, slots=True)
class Resolved:
    """A topic's route and the device id it names (``None``: the template names none)."""

    route: Route
    topic_device_id: str | None


class Router:
    """The listener's routes, first match wins, and its command topic template."""

    def __init__(self, settings: MqttListenerSettings, codecs: dict[str, Codec]) -> None:
        self.routes = tuple(
            Route(TopicTemplate.parse(r.topic), codecs[r.codec]) for r in settings.routes
        )
        self.command = TopicTemplate.parse(settings.command_topic)

    @property
    def codec_names(self) -> list[str]:
        return sorted({route.codec.name for route in self.routes})

    def resolve(self, topic: str) -> Resolved | None:
        for route in self.routes:
            values = route.template.match(topic)
            if values is not None:
                return Resolved(route, values.get(DEVICE_ID))
        return None

    def command_device(self, topic_filter: str) -> str | None:
        """The device whose command topic ``topic_filter`` is exactly (no wildcards), else None."""
        if "+" in topic_filter or "#" in topic_filter:
            return None
        values = self.command.match(topic_filter)
        if values is None or len(values) != 1:
            return None
        return values[DEVICE_ID]


class TopicCache:
    """A connection's last few topic resolutions: a device repeats its topics, so most messages
    skip the template matching."""

    __slots__ = ("_entries", "router")

    def __init__(self, router: Router) -> None:
        self.router = router
        self._entries: dict[str, Resolved | None] = {}

    def resolve(self, topic: str) -> Resolved | None:
        try:
            return self._entries[topic]
        except KeyError:
            pass
        resolved = self.router.resolve(topic)
        if len(topic) > TOPIC_CACHE_MAX_CHARS:
            return resolved
        if len(self._entries) >= TOPIC_CACHE_ENTRIES:
            self._entries.pop(next(iter(self._entries)))
        self._entries[topic] = resolved
        return resolved
