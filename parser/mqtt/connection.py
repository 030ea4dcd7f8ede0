"""The server side of one MQTT connection, sans I/O: bytes in, packets out, reply bytes built.

The listener feeds whatever it read; ``feed`` returns the packets that completed and keeps the
partial tail. Hostile bytes raise :class:`parser.mqtt.errors.MqttError` whose ``reply`` the
listener writes before closing. The clock is the listener's: it enforces ``keep_alive_s`` x 1.5
itself ([MQTT-3.1.2-24]).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import msgspec

from parser.mqtt.aliases import TopicAliases
from parser.mqtt.decode import (
    check_flags,
    decode_connect,
    decode_packet,
    decode_publish,
    read_protocol,
)
from parser.mqtt.encode import (
    disconnect_bytes,
    encode,
    encode_ack,
    encode_pubacks,
    suback_bytes,
    unsuback_bytes,
)
from parser.mqtt.errors import MqttError, ProtocolViolation
from parser.mqtt.framing import MAX_PACKET_BYTES, PacketFramer
from parser.mqtt.packets import (
    MQTT_5,
    MQTT_311,
    NO_PROPERTIES,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    Properties,
    ReasonCode,
    allowed_reason,
)
from parser.mqtt.wire import read_varint

# 256 KiB: Azure IoT Hub's device-to-cloud message limit, so whatever a device could send its
# old cloud fits; telemetry frames are far smaller. 5.0 lets us advertise it in CONNACK.
DEFAULT_MAX_PACKET_BYTES = 256 * 1024

# Packets only a server sends (the direction column of 3.1.1 §2.2.1, 5.0 §2.1.2).
_SERVER_ONLY = frozenset(
    {PacketType.CONNACK, PacketType.SUBACK, PacketType.UNSUBACK, PacketType.PINGRESP}
)


class _State(Enum):
    AWAIT_CONNECT = "await connect"
    OPEN = "open"
    DISCONNECTED = "disconnected"  # the client sent DISCONNECT; it must close ([MQTT-3.14.4-1])


_PUBLISH = int(PacketType.PUBLISH)
_OPEN = _State.OPEN


def declared_level(rest: bytes) -> int | None:
    """The protocol level ``rest`` declares if it starts a CONNECT of MQTT ("MQTT", or 3.1's
    "MQIsdp") and enough of it is there; None otherwise."""
    if not rest or rest[0] >> 4 != PacketType.CONNECT:
        return None
    try:
        length, body = read_varint(rest, 1, len(rest))
        if length < 0:
            return None
        name, level, _ = read_protocol(rest, body, len(rest))
    except MqttError:
        return None
    return level if name in ("MQTT", "MQIsdp") else None


class MqttServerConnection(PacketFramer):
    """One client connection, server side, MQTT 3.1.1 or 5.0 (chosen by the client's CONNECT).

    The limits are what this server promises in a 5.0 CONNACK (``connack`` adds them):
    ``max_packet_bytes`` (Maximum Packet Size, whole packet incl. fixed header; bigger → 0x95),
    ``receive_maximum`` (unacknowledged QoS 1/2 PUBLISHes; more → 0x93),
    ``topic_alias_maximum`` (0 = no aliases), ``maximum_qos`` (above → 0x9B) and
    ``retain_available`` (retained PUBLISH → 0x9A when False). 3.1.1 cannot advertise them;
    there only ``max_packet_bytes`` applies (close without reply). With
    ``enforce_receive_maximum=False`` the Receive Maximum is only advertised: a server whose
    backpressure does not rely on it may tolerate clients that exceed it (many do).

    The in-flight window is released by the reply helpers: ``puback`` and ``pubcomp`` (and a
    ``pubrec`` with an error code) end an exchange, so build acknowledgements with them.
    Before the CONNECT, the helpers write 3.1.1.
    """

    def __init__(
        self,
        *,
        max_packet_bytes: int = DEFAULT_MAX_PACKET_BYTES,
        receive_maximum: int = 65535,
        topic_alias_maximum: int = 0,
        maximum_qos: int = 2,
        retain_available: bool = True,
        enforce_receive_maximum: bool = True,
    ) -> None:
        super().__init__(max_packet_bytes)
        if not 0 < receive_maximum <= 0xFFFF:
            raise ValueError("receive_maximum must be in 1..65535")  # 5.0 §3.2.2.3.3
        if maximum_qos not in (0, 1, 2):
            raise ValueError("maximum_qos must be 0, 1 or 2")
        self.receive_maximum = receive_maximum
        self.enforce_receive_maximum = enforce_receive_maximum
        self.maximum_qos = maximum_qos
        self.retain_available = retain_available
        self._aliases = TopicAliases(topic_alias_maximum)
        self._state = _State.AWAIT_CONNECT
        # Of the CONNECT, only what later packets are checked against is kept: the caller gets
        # the packet from ``feed`` and keeps what it needs. Kept whole, a 64 KiB CONNECT of
        # empty user properties held ~0.9 MiB of objects for the connection's life.
        self._connected = False
        self._session_expiry_set = False  # 5.0 §3.14.2.2.2
        self._level = MQTT_311
        self._v5 = False
        self._keep_alive_s: int | None = None
        self._in_flight: set[int] = set()  # QoS 1/2 packet ids not yet acknowledged (5.0)

    @property
    def protocol_level(self) -> int | None:
        """4 (3.1.1) or 5 (5.0) once the CONNECT arrived, else None."""
        return self._level if self._connected else None

    @property
    def keep_alive_s(self) -> int | None:
        """Keep-alive in force (0 = off): the CONNECT's, or a 5.0 Server Keep Alive sent in
        ``connack``. None before the CONNECT."""
        return self._keep_alive_s

    def _read_packet(self, data: bytes, header: int, start: int, end: int) -> Packet:
        # Plain ints and a module global: an Enum attribute costs ~70 ns a lookup on 3.11.
        if header >> 4 != _PUBLISH or self._state is not _OPEN:
            return self._read_other(data, header, start, end)
        publish = decode_publish(data, header, start, end, self._v5)
        if not self._v5:
            return publish
        if publish.qos > self.maximum_qos:
            raise ProtocolViolation(f"QoS {publish.qos}", ReasonCode.QOS_NOT_SUPPORTED)
        if publish.retain and not self.retain_available:  # 5.0 §3.2.2.3.5
            raise ProtocolViolation("retained PUBLISH", ReasonCode.RETAIN_NOT_SUPPORTED)
        if publish.properties is not NO_PROPERTIES or not publish.topic:
            if publish.properties.subscription_identifiers:
                raise ProtocolViolation("subscription identifier from a client")  # [MQTT-3.3.4-6]
            publish = self._aliases.resolve(publish)
        if publish.qos and self.enforce_receive_maximum:
            in_flight = self._in_flight
            in_flight.add(publish.packet_id)
            if len(in_flight) > self.receive_maximum:  # 5.0 §3.3.4, Flow Control §4.9
                raise ProtocolViolation(
                    f"more than {self.receive_maximum} unacknowledged PUBLISHes",
                    ReasonCode.RECEIVE_MAXIMUM_EXCEEDED,
                )
        return publish

    def _read_other(self, data: bytes, header: int, start: int, end: int) -> Packet:
        packet_type = header >> 4
        if self._state is _State.AWAIT_CONNECT:
            if packet_type != PacketType.CONNECT:
                raise ProtocolViolation("the first packet must be CONNECT")  # [MQTT-3.1.0-1]
            check_flags(header)
            return self._accept_connect(decode_connect(data, header, start, end, False))
        if self._state is _State.DISCONNECTED:
            raise ProtocolViolation("packet after DISCONNECT")  # [MQTT-3.14.4-1]
        if packet_type == PacketType.CONNECT:
            raise ProtocolViolation("second CONNECT")  # [MQTT-3.1.0-2]
        if packet_type in _SERVER_ONLY:
            raise ProtocolViolation(f"{PacketType(packet_type).name} from a client")
        packet = decode_packet(data, header, start, end, self._v5)
        if isinstance(packet, Auth):
            # 5.0 §4.12: AUTH needs the Authentication Method of the CONNECT, which we refuse.
            raise ProtocolViolation("AUTH without enhanced authentication")
        if isinstance(packet, Disconnect):
            expiry = packet.properties.session_expiry_interval
            if expiry and not self._session_expiry_set:
                raise ProtocolViolation("session expiry set at DISCONNECT")  # 5.0 §3.14.2.2.2
            self._state = _State.DISCONNECTED
        return packet

    def _accept_connect(self, packet: Connect) -> Connect:
        will = packet.will
        if packet.properties.authentication_method is not None:
            raise ProtocolViolation(  # 5.0 §4.12: no enhanced authentication here
                "enhanced authentication is not offered", ReasonCode.BAD_AUTHENTICATION_METHOD
            )
        if will is not None and packet.protocol_level == MQTT_5:
            if will.qos > self.maximum_qos:  # [MQTT-3.2.2-12]
                raise ProtocolViolation(f"will QoS {will.qos}", ReasonCode.QOS_NOT_SUPPORTED)
            if will.retain and not self.retain_available:  # [MQTT-3.2.2-13]
                raise ProtocolViolation("retained will", ReasonCode.RETAIN_NOT_SUPPORTED)
        self._connected = True
        self._session_expiry_set = bool(packet.properties.session_expiry_interval)
        self._level = packet.protocol_level
        self._v5 = self._level == MQTT_5
        self._keep_alive_s = packet.keep_alive_s
        self._state = _State.OPEN
        return packet

    def _error_reply(self, error: MqttError, rest: bytes) -> bytes:
        code = error.reason_code
        if self._state is not _State.AWAIT_CONNECT:
            # 5.0 §4.13: SHOULD send DISCONNECT with the code; 3.1.1 §4.8 just closes.
            return self.disconnect(allowed_reason(PacketType.DISCONNECT, code))
        level = declared_level(rest)
        if level is None or code == ReasonCode.PACKET_TOO_LARGE:
            # Not a CONNECT of MQTT at all ([MQTT-3.1.0-1]): say nothing. An oversize CONNECT is
            # refused from its header, before its version may have arrived: just close, so the
            # answer never depends on how the bytes were split.
            return b""
        if level >= MQTT_5:
            # 5.0 §4.13: MAY send a CONNACK with the code; 0x84 to any later level too.
            return encode(ConnAck(False, allowed_reason(PacketType.CONNACK, code)), MQTT_5)
        # 3.1.1 (and 3.1) owe a CONNACK only for these ([MQTT-3.1.2-2], [MQTT-3.1.3-9]).
        if code in (
            ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
            ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
        ):
            return encode(ConnAck(False, code), MQTT_311)
        return b""

    def connack(
        self,
        session_present: bool = False,
        reason_code: ReasonCode = ReasonCode.SUCCESS,
        properties: Properties = NO_PROPERTIES,
    ) -> bytes:
        """CONNACK bytes. In 5.0 a success carries this connection's limits (they replace any
        given in ``properties``), and a ``server_keep_alive`` there replaces ``keep_alive_s``
        ([MQTT-3.2.2-21]). 3.1.1 gets the matching return code. ``session_present`` is sent
        only on success ([MQTT-3.2.2-4])."""
        if self._v5 and reason_code == ReasonCode.SUCCESS:
            properties = msgspec.structs.replace(properties, **self._limits())
            if properties.server_keep_alive is not None:
                self._keep_alive_s = properties.server_keep_alive
        return encode(ConnAck(session_present, reason_code, properties), self._level)

    def _limits(self) -> dict[str, int]:
        """The 5.0 CONNACK properties that tell the client our limits (absent = spec default,
        5.0 §3.2.2.3)."""
        limits = {}
        if self.max_packet_bytes < MAX_PACKET_BYTES:
            limits["maximum_packet_size"] = self.max_packet_bytes
        if self.receive_maximum < 0xFFFF:
            limits["receive_maximum"] = self.receive_maximum
        if self._aliases.maximum:
            limits["topic_alias_maximum"] = self._aliases.maximum
        if self.maximum_qos < 2:
            limits["maximum_qos"] = self.maximum_qos
        if not self.retain_available:
            limits["retain_available"] = 0
        return limits

    def puback(self, packet_id: int, reason_code: ReasonCode = ReasonCode.SUCCESS) -> bytes:
        """PUBACK bytes (4 in the usual case); releases the in-flight slot of ``packet_id``."""
        self._in_flight.discard(packet_id)
        return encode_ack(PacketType.PUBACK, packet_id, reason_code, NO_PROPERTIES, self._level)

    def pubacks(self, packet_ids: Sequence[int]) -> bytes:
        """Success PUBACKs for ``packet_ids`` in one buffer (for all the QoS 1 PUBLISHes of a
        read: one write); releases their in-flight slots. Cheaper than joining ``puback``."""
        self._in_flight.difference_update(packet_ids)
        return encode_pubacks(packet_ids)

    def pubrec(self, packet_id: int, reason_code: ReasonCode = ReasonCode.SUCCESS) -> bytes:
        """PUBREC bytes; an error code (>= 0x80) ends the QoS 2 exchange and frees the slot
        (5.0 §4.3.3)."""
        if reason_code >= 0x80:
            self._in_flight.discard(packet_id)
        return encode_ack(PacketType.PUBREC, packet_id, reason_code, NO_PROPERTIES, self._level)

    def pubcomp(self, packet_id: int, reason_code: ReasonCode = ReasonCode.SUCCESS) -> bytes:
        """PUBCOMP bytes (answer to PUBREL; 0x92 when the id is unknown); frees the slot."""
        self._in_flight.discard(packet_id)
        return encode_ack(PacketType.PUBCOMP, packet_id, reason_code, NO_PROPERTIES, self._level)

    def suback(self, packet_id: int, reason_codes: Sequence[ReasonCode]) -> bytes:
        """SUBACK bytes, one code per filter; 3.1.1 gets 0x80 for every error code."""
        return suback_bytes(packet_id, reason_codes, NO_PROPERTIES, self._v5)

    def unsuback(self, packet_id: int, reason_codes: Sequence[ReasonCode] = ()) -> bytes:
        """UNSUBACK bytes; 5.0 needs one code per filter, 3.1.1 sends none."""
        return unsuback_bytes(packet_id, reason_codes, NO_PROPERTIES, self._v5)

    def pingresp(self) -> bytes:
        """PINGRESP bytes."""
        return b"\xd0\x00"

    def disconnect(self, reason_code: ReasonCode = ReasonCode.NORMAL_DISCONNECTION) -> bytes:
        """A 5.0 DISCONNECT with ``reason_code`` (e.g. 0x8D keep-alive timeout, 0x8B shutting
        down); ``b""`` in 3.1.1, where a server just closes."""
        return disconnect_bytes(reason_code, NO_PROPERTIES, True) if self._v5 else b""
