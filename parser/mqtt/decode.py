"""Packet bodies to packets, for both sides and both protocol levels.

Each reader gets the packet's bytes, its first byte (type and flags) and the body's ``[start, end)``
(the framer has checked the length), and checks what the spec says about that packet alone:
reserved bits, field ranges, properties allowed on it. What depends on the connection (CONNECT
first, in-flight window, topic aliases, who may send what) is the connection's job.
"""

from __future__ import annotations

from collections.abc import Callable

from parser.mqtt.errors import MalformedPacket, ProtocolViolation
from parser.mqtt.packets import (
    MQTT_5,
    MQTT_311,
    NO_PROPERTIES,
    REASON_CODES_BY_PACKET,
    Auth,
    ConnAck,
    Connect,
    ConnectReturnCode,
    Disconnect,
    Packet,
    PacketType,
    PingReq,
    PingResp,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
    reason_from_return_code,
)
from parser.mqtt.properties import WILL, read_properties
from parser.mqtt.wire import (
    read_binary,
    read_byte,
    read_string,
    read_u16,
    topic_filter,
    topic_name,
)

Reader = Callable[[bytes, int, int, int, bool], Packet]

# Fixed-header flags of every packet but PUBLISH ([MQTT-2.2.2-1], 5.0 §2.1.3): 0b0010 for
# PUBREL, SUBSCRIBE and UNSUBSCRIBE ([MQTT-3.6.1-1], [MQTT-3.8.1-1], [MQTT-3.10.1-1]).
REQUIRED_FLAGS: dict[int, int] = {
    PacketType.PUBREL: 2,
    PacketType.SUBSCRIBE: 2,
    PacketType.UNSUBSCRIBE: 2,
}


def _packet_id(data: bytes, pos: int, end: int) -> tuple[int, int]:
    packet_id, pos = read_u16(data, pos, end)
    if not packet_id:
        raise MalformedPacket("packet identifier 0")  # [MQTT-2.3.1-1]
    return packet_id, pos


def _reason(value: int, packet_type: PacketType) -> ReasonCode:
    if value not in REASON_CODES_BY_PACKET[packet_type]:
        raise MalformedPacket(f"reason code 0x{value:02X} is not valid in {packet_type.name}")
    return ReasonCode(value)


def _end_of(pos: int, end: int, what: str) -> None:
    if pos != end:
        raise MalformedPacket(f"{end - pos} bytes left over after the {what}")


def read_protocol(data: bytes, start: int, end: int) -> tuple[str, int, int]:
    """The protocol name and level a CONNECT starts with, and the offset after them."""
    name, pos = read_string(data, start, end)
    level, pos = read_byte(data, pos, end)
    return name, level, pos


def decode_connect(data: bytes, header: int, start: int, end: int, v5: bool) -> Connect:
    """CONNECT (3.1.1 §3.1, 5.0 §3.1); ``v5`` is ignored, the packet says its own level."""
    name, level, pos = read_protocol(data, start, end)
    if name not in ("MQTT", "MQIsdp"):
        # 3.1.1 [MQTT-3.1.2-1], 5.0 §3.1.2.1: not MQTT, do not go on by this spec.
        raise ProtocolViolation(f"protocol {name!r}", ReasonCode.UNSUPPORTED_PROTOCOL_VERSION)
    if name != "MQTT" or level not in (MQTT_311, MQTT_5):  # [MQTT-3.1.2-2]; MQIsdp is 3.1
        raise ProtocolViolation(
            f"protocol {name!r} level {level}", ReasonCode.UNSUPPORTED_PROTOCOL_VERSION
        )
    v5 = level == MQTT_5
    connect_flags, pos = read_byte(data, pos, end)
    if connect_flags & 0x01:
        raise MalformedPacket("CONNECT reserved flag set")  # [MQTT-3.1.2-3]
    has_will = bool(connect_flags & 0x04)
    will_qos = (connect_flags >> 3) & 3
    will_retain = bool(connect_flags & 0x20)
    if will_qos == 3 or (not has_will and (will_qos or will_retain)):
        # 3.1.1 [MQTT-3.1.2-13..15], 5.0 [MQTT-3.1.2-11..13]
        raise MalformedPacket(f"will flags 0x{connect_flags:02X} are inconsistent")
    has_password = bool(connect_flags & 0x40)
    has_username = bool(connect_flags & 0x80)
    if has_password and not has_username and not v5:
        raise MalformedPacket("password without user name")  # 3.1.1 [MQTT-3.1.2-22]
    keep_alive_s, pos = read_u16(data, pos, end)
    properties = NO_PROPERTIES
    if v5:
        properties, pos = read_properties(data, pos, end, PacketType.CONNECT)
        if properties.authentication_data is not None and not properties.authentication_method:
            raise ProtocolViolation("authentication data without a method")  # §3.1.2.11.10
    client_id, pos = read_string(data, pos, end)
    clean_start = bool(connect_flags & 0x02)
    if not client_id and not clean_start and not v5:
        raise ProtocolViolation(
            "empty client id needs a clean session", ReasonCode.CLIENT_IDENTIFIER_NOT_VALID
        )  # 3.1.1 [MQTT-3.1.3-8]
    will = None
    if has_will:
        will_properties = NO_PROPERTIES
        if v5:
            will_properties, pos = read_properties(data, pos, end, WILL)
        raw_topic, pos = read_binary(data, pos, end)
        will_topic = topic_name(raw_topic)
        if not will_topic:
            raise ProtocolViolation("empty will topic", ReasonCode.TOPIC_NAME_INVALID)
        will_payload, pos = read_binary(data, pos, end)
        will = Will(will_topic, will_payload, will_qos, will_retain, will_properties)
    username = password = None
    if has_username:
        username, pos = read_string(data, pos, end)
    if has_password:
        password, pos = read_binary(data, pos, end)
    _end_of(pos, end, "CONNECT payload")
    return Connect(
        level, client_id, clean_start, keep_alive_s, username, password, will, properties
    )


def decode_publish(data: bytes, header: int, start: int, end: int, v5: bool) -> Publish:
    """PUBLISH: the hot path, so its fields are read inline (each call costs ~60 ns)."""
    qos = (header >> 1) & 3
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3")  # [MQTT-3.3.1-4]
    if header & 0x08 and not qos:
        raise MalformedPacket("DUP set on a QoS 0 PUBLISH")  # [MQTT-3.3.1-2]
    pos = start + 2
    if pos > end:
        raise MalformedPacket("truncated topic name")
    stop = pos + ((data[start] << 8) | data[start + 1])
    if stop > end:
        raise MalformedPacket("topic name runs past the packet")
    raw = data[pos:stop]
    try:
        topic = raw.decode()
    except UnicodeDecodeError:
        topic = ""
    if not topic or "+" in topic or "#" in topic or "\x00" in topic:
        # The rare case: let the one topic check say what is wrong (or accept an empty one).
        topic = topic_name(raw)
        if not topic and not v5:
            raise ProtocolViolation("empty topic name", ReasonCode.TOPIC_NAME_INVALID)  # 4.7.3
    packet_id = 0
    pos = stop
    if qos:
        pos += 2
        if pos > end:
            raise MalformedPacket("truncated packet identifier")
        packet_id = (data[stop] << 8) | data[stop + 1]
        if not packet_id:
            raise MalformedPacket("packet identifier 0")  # [MQTT-2.3.1-1]
    properties = NO_PROPERTIES
    if v5:
        if pos < end and data[pos] == 0:
            pos += 1
        else:
            properties, pos = read_properties(data, pos, end, PacketType.PUBLISH)
    return Publish(
        topic, data[pos:end], qos, header & 1 != 0, header & 8 != 0, packet_id, properties
    )


_ACKS: dict[int, type[PubAck | PubRec | PubRel | PubComp]] = {
    PacketType.PUBACK: PubAck,
    PacketType.PUBREC: PubRec,
    PacketType.PUBREL: PubRel,
    PacketType.PUBCOMP: PubComp,
}


def _decode_ack(
    packet_type: PacketType, data: bytes, start: int, end: int, v5: bool
) -> tuple[int, ReasonCode, Properties]:
    """Packet id, then in 5.0 an optional reason code and properties (5.0 §3.4.2.1: both may
    be left out when the code is 0 and there are no properties)."""
    packet_id, pos = _packet_id(data, start, end)
    reason = ReasonCode.SUCCESS
    properties = NO_PROPERTIES
    if v5 and pos < end:
        reason = _reason(data[pos], packet_type)
        pos += 1
        if pos < end:
            properties, pos = read_properties(data, pos, end, packet_type)
    _end_of(pos, end, packet_type.name)
    return packet_id, reason, properties


def decode_pub_ack(data: bytes, header: int, start: int, end: int, v5: bool) -> Packet:
    """PUBACK, PUBREC, PUBREL or PUBCOMP."""
    packet_type = PacketType(header >> 4)
    return _ACKS[packet_type](*_decode_ack(packet_type, data, start, end, v5))


def decode_connack(data: bytes, header: int, start: int, end: int, v5: bool) -> ConnAck:
    ack_flags, pos = read_byte(data, start, end)
    if ack_flags & 0xFE:
        raise MalformedPacket("CONNACK reserved flags set")  # [MQTT-3.2.2-1]
    code, pos = read_byte(data, pos, end)
    properties = NO_PROPERTIES
    if v5:
        reason = _reason(code, PacketType.CONNACK)
        properties, pos = read_properties(data, pos, end, PacketType.CONNACK)
    elif code <= ConnectReturnCode.NOT_AUTHORIZED:
        reason = reason_from_return_code(ConnectReturnCode(code))
    else:
        raise MalformedPacket(f"CONNACK return code {code}")  # 3.1.1 §3.2.2.3: 6-255 reserved
    _end_of(pos, end, "CONNACK")
    if ack_flags and reason:
        # 3.1.1 [MQTT-3.2.2-4], 5.0 [MQTT-3.2.2-6]
        raise ProtocolViolation("session present on a refusal")
    return ConnAck(bool(ack_flags), reason, properties)


def decode_subscribe(data: bytes, header: int, start: int, end: int, v5: bool) -> Subscribe:
    packet_id, pos = _packet_id(data, start, end)
    properties = NO_PROPERTIES
    if v5:
        properties, pos = read_properties(data, pos, end, PacketType.SUBSCRIBE)
    subscriptions = []
    while pos < end:
        text, pos = topic_filter(data, pos, end, v5)
        options, pos = read_byte(data, pos, end)
        qos = options & 3
        if qos == 3:
            raise MalformedPacket("subscription with QoS 3")  # [MQTT-3.8.3-4] / 5.0 §3.8.3.1
        if not v5:
            if options & 0xFC:
                raise MalformedPacket("reserved subscription option bits set")  # [MQTT-3-8.3-4]
            subscriptions.append(Subscription(text, qos))
            continue
        if options & 0xC0:
            raise MalformedPacket("reserved subscription option bits set")  # [MQTT-3.8.3-5]
        no_local = bool(options & 0x04)
        retain_handling = (options >> 4) & 3
        if retain_handling == 3:
            raise ProtocolViolation("retain handling 3")  # 5.0 §3.8.3.1
        if no_local and text.startswith("$share/"):
            raise ProtocolViolation("no local on a shared subscription")  # [MQTT-3.8.3-4]
        subscriptions.append(
            Subscription(text, qos, no_local, bool(options & 0x08), retain_handling)
        )
    if not subscriptions:
        raise MalformedPacket("SUBSCRIBE without a topic filter")  # [MQTT-3.8.3-3]
    return Subscribe(packet_id, tuple(subscriptions), properties)


def decode_unsubscribe(data: bytes, header: int, start: int, end: int, v5: bool) -> Unsubscribe:
    packet_id, pos = _packet_id(data, start, end)
    properties = NO_PROPERTIES
    if v5:
        properties, pos = read_properties(data, pos, end, PacketType.UNSUBSCRIBE)
    filters = []
    while pos < end:
        text, pos = topic_filter(data, pos, end, v5)
        filters.append(text)
    if not filters:
        raise MalformedPacket("UNSUBSCRIBE without a topic filter")  # [MQTT-3.10.3-2]
    return Unsubscribe(packet_id, tuple(filters), properties)


_V311_SUBACK = {0: ReasonCode.GRANTED_QOS_0, 1: ReasonCode.GRANTED_QOS_1}
_V311_SUBACK |= {2: ReasonCode.GRANTED_QOS_2, 0x80: ReasonCode.UNSPECIFIED_ERROR}


def decode_suback(data: bytes, header: int, start: int, end: int, v5: bool) -> SubAck:
    packet_id, pos = _packet_id(data, start, end)
    if not v5:
        codes = data[pos:end]
        if any(code not in _V311_SUBACK for code in codes):
            raise MalformedPacket("SUBACK return code not 0, 1, 2 or 0x80")  # [MQTT-3.9.3-2]
        return SubAck(packet_id, tuple(_V311_SUBACK[code] for code in codes))
    properties, pos = read_properties(data, pos, end, PacketType.SUBACK)
    reasons = tuple(_reason(code, PacketType.SUBACK) for code in data[pos:end])
    return SubAck(packet_id, reasons, properties)


def decode_unsuback(data: bytes, header: int, start: int, end: int, v5: bool) -> UnsubAck:
    packet_id, pos = _packet_id(data, start, end)
    if not v5:
        _end_of(pos, end, "UNSUBACK")
        return UnsubAck(packet_id)
    properties, pos = read_properties(data, pos, end, PacketType.UNSUBACK)
    reasons = tuple(_reason(code, PacketType.UNSUBACK) for code in data[pos:end])
    return UnsubAck(packet_id, reasons, properties)


def decode_ping(data: bytes, header: int, start: int, end: int, v5: bool) -> Packet:
    """PINGREQ or PINGRESP: no body at all."""
    _end_of(start, end, PacketType(header >> 4).name)
    return PingReq() if header >> 4 == PacketType.PINGREQ else PingResp()


def _reason_and_properties(
    packet_type: PacketType, data: bytes, start: int, end: int
) -> tuple[ReasonCode, Properties]:
    """5.0 DISCONNECT and AUTH: no body means code 0; a lone code means no properties."""
    if start == end:
        return ReasonCode.SUCCESS, NO_PROPERTIES
    reason = _reason(data[start], packet_type)
    properties = NO_PROPERTIES
    pos = start + 1
    if pos < end:
        properties, pos = read_properties(data, pos, end, packet_type)
    _end_of(pos, end, packet_type.name)
    return reason, properties


def decode_disconnect(data: bytes, header: int, start: int, end: int, v5: bool) -> Disconnect:
    if not v5:
        _end_of(start, end, "DISCONNECT")
        return Disconnect()
    return Disconnect(*_reason_and_properties(PacketType.DISCONNECT, data, start, end))


def decode_auth(data: bytes, header: int, start: int, end: int, v5: bool) -> Auth:
    if not v5:
        raise MalformedPacket("packet type 15 is reserved in MQTT 3.1.1")  # 3.1.1 §2.2.1
    return Auth(*_reason_and_properties(PacketType.AUTH, data, start, end))


READERS: dict[int, Reader] = {
    PacketType.CONNECT: decode_connect,
    PacketType.CONNACK: decode_connack,
    PacketType.PUBLISH: decode_publish,
    PacketType.PUBACK: decode_pub_ack,
    PacketType.PUBREC: decode_pub_ack,
    PacketType.PUBREL: decode_pub_ack,
    PacketType.PUBCOMP: decode_pub_ack,
    PacketType.SUBSCRIBE: decode_subscribe,
    PacketType.SUBACK: decode_suback,
    PacketType.UNSUBSCRIBE: decode_unsubscribe,
    PacketType.UNSUBACK: decode_unsuback,
    PacketType.PINGREQ: decode_ping,
    PacketType.PINGRESP: decode_ping,
    PacketType.DISCONNECT: decode_disconnect,
    PacketType.AUTH: decode_auth,
}


def check_flags(header: int) -> None:
    """Refuses packet type 0 and reserved flags that are not as specified (PUBLISH's flags
    are its own, checked by ``decode_publish``)."""
    packet_type = header >> 4
    if not packet_type:
        raise MalformedPacket("packet type 0 is reserved")  # 3.1.1 §2.2.1, 5.0 §2.1.2
    if packet_type != PacketType.PUBLISH and header & 0x0F != REQUIRED_FLAGS.get(packet_type, 0):
        raise MalformedPacket(f"{PacketType(packet_type).name} flags 0x{header & 0x0F:X}")


def decode_packet(data: bytes, header: int, start: int, end: int, v5: bool) -> Packet:
    """Any packet: checks the fixed header, then reads the body."""
    check_flags(header)
    return READERS[header >> 4](data, header, start, end, v5)
