"""Incoming MQTT 5.0 Topic Aliases of one connection (5.0 §3.3.2.3.4, §3.3.4).

A PUBLISH with a Topic Name and a Topic Alias sets (or replaces) the alias; one with an empty
Topic Name uses it. The map holds at most ``maximum`` names, the number this side advertised,
and lives as long as the network connection ([MQTT-3.3.2-7]). A name may be as long as a packet,
so names over ``max_name_chars`` are refused (0x97, an imposed limit): else ``maximum`` names of
a packet's size each would be held for the connection's life.
"""

from __future__ import annotations

import msgspec

from parser.mqtt.errors import ProtocolViolation
from parser.mqtt.packets import Publish, ReasonCode


class TopicAliases:
    """Resolves the aliases of PUBLISHes received on one connection."""

    def __init__(self, maximum: int, max_name_chars: int = 1024) -> None:
        if not 0 <= maximum <= 0xFFFF:
            raise ValueError("topic alias maximum must be in 0..65535")
        self.maximum = maximum
        self.max_name_chars = max_name_chars
        self._names: dict[int, str] = {}

    def resolve(self, publish: Publish) -> Publish:
        """``publish`` with its topic filled in from its alias, recording a new alias."""
        alias = publish.properties.topic_alias
        if alias is None:
            if not publish.topic:
                raise ProtocolViolation("empty topic name without a topic alias")  # §3.3.2.1
            return publish
        if not 0 < alias <= self.maximum:
            # [MQTT-3.3.2-8], [MQTT-3.3.2-9]: DISCONNECT 0x94 (5.0 §3.3.4).
            raise ProtocolViolation(
                f"topic alias {alias}, maximum {self.maximum}", ReasonCode.TOPIC_ALIAS_INVALID
            )
        if publish.topic:
            if len(publish.topic) > self.max_name_chars:
                raise ProtocolViolation(
                    f"topic alias for a name over {self.max_name_chars} characters",
                    ReasonCode.QUOTA_EXCEEDED,
                )
            self._names[alias] = publish.topic
            return publish
        topic = self._names.get(alias)
        if topic is None:
            raise ProtocolViolation(f"topic alias {alias} was never set")  # 5.0 §3.3.2.3.4
        return msgspec.structs.replace(publish, topic=topic)
