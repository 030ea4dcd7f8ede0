"""The client side of one MQTT connection, sans I/O, for the device simulator and the benches.

It reads what a server sends with the same packet readers as the server side; the client writes
its packets with :func:`parser.mqtt.encode.encode` / ``encode_publish``.
"""

from __future__ import annotations

from parser.mqtt.aliases import TopicAliases
from parser.mqtt.connection import DEFAULT_MAX_PACKET_BYTES
from parser.mqtt.decode import decode_packet
from parser.mqtt.encode import disconnect_bytes
from parser.mqtt.errors import MqttError, ProtocolViolation
from parser.mqtt.framing import PacketFramer
from parser.mqtt.packets import (
    MQTT_5,
    MQTT_311,
    NO_PROPERTIES,
    ConnAck,
    Packet,
    PacketType,
    Publish,
    allowed_reason,
)

# Packets only a client sends (the direction column of 3.1.1 §2.2.1, 5.0 §2.1.2).
_CLIENT_ONLY = frozenset(
    {PacketType.CONNECT, PacketType.SUBSCRIBE, PacketType.UNSUBSCRIBE, PacketType.PINGREQ}
)


class MqttClientConnection(PacketFramer):
    """Parses a server's packets: CONNACK first and once, then PUBLISH, PUBACK, PUBREC, PUBREL,
    PUBCOMP, SUBACK, UNSUBACK, PINGRESP, DISCONNECT (and AUTH in 5.0).

    ``protocol_level`` is the one the client put in its CONNECT; ``topic_alias_maximum`` is
    what it advertised there (server aliases above it are a protocol error, 0x94).
    """

    def __init__(
        self,
        protocol_level: int,
        *,
        max_packet_bytes: int = DEFAULT_MAX_PACKET_BYTES,
        topic_alias_maximum: int = 0,
    ) -> None:
        super().__init__(max_packet_bytes)
        if protocol_level not in (MQTT_311, MQTT_5):
            raise ValueError(f"protocol level {protocol_level}")
        self.protocol_level = protocol_level
        self._v5 = protocol_level == MQTT_5
        self._aliases = TopicAliases(topic_alias_maximum)
        self._connack: ConnAck | None = None

    @property
    def connack(self) -> ConnAck | None:
        """The server's CONNACK once received."""
        return self._connack

    def _read_packet(self, data: bytes, header: int, start: int, end: int) -> Packet:
        packet_type = header >> 4
        if packet_type in _CLIENT_ONLY:
            raise ProtocolViolation(f"{PacketType(packet_type).name} from a server")
        if (packet_type == PacketType.CONNACK) == (self._connack is not None):
            # [MQTT-3.2.0-1]: the server's first packet is CONNACK, and there is only one.
            raise ProtocolViolation("CONNACK must come first and once")
        packet = decode_packet(data, header, start, end, self._v5)
        if isinstance(packet, ConnAck):
            self._connack = packet
        elif isinstance(packet, Publish) and self._v5:
            packet = self._aliases.resolve(packet)
        return packet

    def _error_reply(self, error: MqttError, rest: bytes) -> bytes:
        # 5.0 §4.13: DISCONNECT with the code once connected; 3.1.1 §4.8 just closes.
        if not self._v5 or self._connack is None:
            return b""
        code = allowed_reason(PacketType.DISCONNECT, error.reason_code)
        return disconnect_bytes(code, NO_PROPERTIES, True)
