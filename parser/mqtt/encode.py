"""Packets to bytes, for either side and either protocol level.

``encode(packet, protocol_level)`` writes any packet; in 3.1.1 the 5.0-only parts (properties,
reason codes 3.1.1 cannot express) are not sent. ``encode_publish`` and ``encode_ack`` are the
fast paths (the simulator's PUBLISHes, the listener's PUBACKs).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from parser.mqtt.packets import (
    MQTT_5,
    MQTT_311,
    NO_PROPERTIES,
    PACKET_TYPES,
    Auth,
    ConnAck,
    Connect,
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
    UnsubAck,
    Unsubscribe,
    return_code,
)
from parser.mqtt.properties import WILL, encode_properties
from parser.mqtt.wire import encode_binary, encode_string, encode_u16, encode_varint

_ACK_HEADERS = {
    PacketType.PUBACK: 0x40,
    PacketType.PUBREC: 0x50,
    PacketType.PUBREL: 0x62,  # [MQTT-3.6.1-1]
    PacketType.PUBCOMP: 0x70,
}


def _packet(header: int, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return bytes((header,)) + encode_varint(len(body)) + body


def _packet_id(value: int) -> bytes:
    if not 0 < value <= 0xFFFF:
        raise ValueError(f"packet identifier {value} is not in 1..65535")  # [MQTT-2.3.1-1]
    return value.to_bytes(2)


def _qos(value: int) -> int:
    if value not in (0, 1, 2):
        raise ValueError(f"QoS {value}")  # [MQTT-3.3.1-4]
    return value


def _properties(properties: Properties, context: int, v5: bool) -> bytes:
    return encode_properties(properties, context) if v5 else b""


def encode_publish(
    topic: str,
    payload: bytes,
    qos: int = 0,
    packet_id: int = 0,
    *,
    retain: bool = False,
    dup: bool = False,
    protocol_level: int = MQTT_311,
    properties: Properties = NO_PROPERTIES,
) -> bytes:
    """A PUBLISH, written without building a ``Publish`` first (same bytes as ``encode``)."""
    header = 0x30 | _qos(qos) << 1 | retain | dup << 3
    return _packet(
        header,
        encode_string(topic),
        _packet_id(packet_id) if qos else b"",
        _properties(properties, PacketType.PUBLISH, protocol_level == MQTT_5),
        payload,
    )


def encode_ack(
    packet_type: PacketType,
    packet_id: int,
    reason_code: ReasonCode = ReasonCode.SUCCESS,
    properties: Properties = NO_PROPERTIES,
    protocol_level: int = MQTT_311,
) -> bytes:
    """PUBACK, PUBREC, PUBREL or PUBCOMP. Four bytes whenever 5.0 lets the reason code and
    properties be left out (code 0, no properties: 5.0 §3.4.2.1), and always in 3.1.1."""
    header = _ACK_HEADERS[packet_type]
    if protocol_level != MQTT_5 or (not reason_code and properties is NO_PROPERTIES):
        return bytes((header, 2)) + _packet_id(packet_id)
    tail = b"" if properties is NO_PROPERTIES else encode_properties(properties, packet_type)
    return _packet(header, _packet_id(packet_id), bytes((reason_code,)), tail)


def encode_pubacks(packet_ids: Sequence[int]) -> bytes:
    """Success PUBACKs for ``packet_ids``, concatenated for one write: the same bytes as
    joining ``encode_ack`` of each, in both versions (5.0 §3.4.2.1's short form), built in one
    ``struct.pack``."""
    if packet_ids and not (min(packet_ids) > 0 and max(packet_ids) <= 0xFFFF):
        raise ValueError("packet identifiers must be in 1..65535")  # [MQTT-2.3.1-1]
    # Each PUBACK is 0x40, remaining length 2, the packet id: one big-endian 32-bit word.
    return struct.pack(f">{len(packet_ids)}I", *[0x40020000 | pid for pid in packet_ids])


def _connect(packet: Connect, v5: bool) -> bytes:
    will = packet.will
    flags = packet.clean_start << 1
    payload = [encode_string(packet.client_id)]
    if will is not None:
        flags |= 0x04 | _qos(will.qos) << 3 | will.retain << 5
        if v5:
            payload.append(encode_properties(will.properties, WILL))
        payload += [encode_string(will.topic), encode_binary(will.payload)]
    if packet.username is not None:
        flags |= 0x80
        payload.append(encode_string(packet.username))
    if packet.password is not None:
        if packet.username is None and not v5:
            raise ValueError("3.1.1 sends a password only with a user name")  # [MQTT-3.1.2-22]
        flags |= 0x40
        payload.append(encode_binary(packet.password))
    return _packet(
        0x10,
        encode_string("MQTT"),
        bytes((packet.protocol_level, flags)),
        encode_u16(packet.keep_alive_s),
        _properties(packet.properties, PacketType.CONNECT, v5),
        *payload,
    )


def _connack(packet: ConnAck, v5: bool) -> bytes:
    code = packet.reason_code if v5 else return_code(packet.reason_code)
    session_present = packet.session_present and not code  # [MQTT-3.2.2-4] / [MQTT-3.2.2-6]
    properties = _properties(packet.properties, PacketType.CONNACK, v5)
    return _packet(0x20, bytes((session_present, code)), properties)


def _suback_code(code: ReasonCode, v5: bool) -> int:
    # 3.1.1 knows granted QoS 0..2 and 0x80 failure only ([MQTT-3.9.3-2]).
    return code if v5 or code < 0x80 else 0x80


def suback_bytes(
    packet_id: int, reason_codes: Sequence[ReasonCode], properties: Properties, v5: bool
) -> bytes:
    codes = bytes(_suback_code(code, v5) for code in reason_codes)
    properties_bytes = _properties(properties, PacketType.SUBACK, v5)
    return _packet(0x90, _packet_id(packet_id), properties_bytes, codes)


def unsuback_bytes(
    packet_id: int, reason_codes: Sequence[ReasonCode], properties: Properties, v5: bool
) -> bytes:
    if not v5:
        return _packet(0xB0, _packet_id(packet_id))
    properties_bytes = encode_properties(properties, PacketType.UNSUBACK)
    return _packet(0xB0, _packet_id(packet_id), properties_bytes, bytes(reason_codes))


def _reason_and_properties(header: int, reason_code: ReasonCode, properties: Properties) -> bytes:
    """5.0 DISCONNECT and AUTH, in their shortest form (5.0 §3.14.2.1, §3.15.2.1)."""
    if properties is NO_PROPERTIES:
        return _packet(header, bytes((reason_code,)) if reason_code else b"")
    return _packet(header, bytes((reason_code,)), encode_properties(properties, header >> 4))


def disconnect_bytes(reason_code: ReasonCode, properties: Properties, v5: bool) -> bytes:
    if not v5:
        return b"\xe0\x00"
    return _reason_and_properties(0xE0, reason_code, properties)


def _auth(packet: Auth, v5: bool) -> bytes:
    if not v5:
        raise ValueError("AUTH exists only in MQTT 5.0")
    return _reason_and_properties(0xF0, packet.reason_code, packet.properties)


def _publish(packet: Publish, v5: bool) -> bytes:
    return encode_publish(
        packet.topic,
        packet.payload,
        packet.qos,
        packet.packet_id,
        retain=packet.retain,
        dup=packet.dup,
        protocol_level=MQTT_5 if v5 else MQTT_311,
        properties=packet.properties,
    )


def _ack(packet: PubAck | PubRec | PubRel | PubComp, v5: bool) -> bytes:
    level = MQTT_5 if v5 else MQTT_311
    packet_type = PACKET_TYPES[type(packet)]
    return encode_ack(packet_type, packet.packet_id, packet.reason_code, packet.properties, level)


def _subscribe(packet: Subscribe, v5: bool) -> bytes:
    entries = []
    for sub in packet.subscriptions:
        options = _qos(sub.qos)
        if sub.retain_handling not in (0, 1, 2):
            raise ValueError(f"retain handling {sub.retain_handling}")  # 5.0 §3.8.3.1
        if v5:
            options |= sub.no_local << 2 | sub.retain_as_published << 3 | sub.retain_handling << 4
        entries += [encode_string(sub.topic_filter), bytes((options,))]
    properties = _properties(packet.properties, PacketType.SUBSCRIBE, v5)
    return _packet(0x82, _packet_id(packet.packet_id), properties, *entries)


def _unsubscribe(packet: Unsubscribe, v5: bool) -> bytes:
    filters = [encode_string(text) for text in packet.topic_filters]
    properties = _properties(packet.properties, PacketType.UNSUBSCRIBE, v5)
    return _packet(0xA2, _packet_id(packet.packet_id), properties, *filters)


_ENCODERS: dict[type[Any], Callable[[Any, bool], bytes]] = {
    Connect: _connect,
    ConnAck: _connack,
    Publish: _publish,
    PubAck: _ack,
    PubRec: _ack,
    PubRel: _ack,
    PubComp: _ack,
    Subscribe: _subscribe,
    SubAck: lambda p, v5: suback_bytes(p.packet_id, p.reason_codes, p.properties, v5),
    Unsubscribe: _unsubscribe,
    UnsubAck: lambda p, v5: unsuback_bytes(p.packet_id, p.reason_codes, p.properties, v5),
    PingReq: lambda p, v5: b"\xc0\x00",
    PingResp: lambda p, v5: b"\xd0\x00",
    Disconnect: lambda p, v5: disconnect_bytes(p.reason_code, p.properties, v5),
    Auth: _auth,
}


def encode(packet: Packet, protocol_level: int) -> bytes:
    """The wire bytes of ``packet`` at ``protocol_level`` (4 = 3.1.1, 5 = 5.0).

    A ``Connect`` is written at its own ``protocol_level``, which must equal the argument.
    ValueError for values the protocol cannot carry (QoS 3, packet id 0 on QoS > 0, a string
    over 65,535 bytes, a packet over the 268,435,455-byte remaining-length limit, AUTH in 3.1.1).
    """
    if protocol_level not in (MQTT_311, MQTT_5):
        raise ValueError(f"protocol level {protocol_level}")
    if isinstance(packet, Connect) and packet.protocol_level != protocol_level:
        raise ValueError(f"CONNECT at level {packet.protocol_level}, encoded at {protocol_level}")
    return _ENCODERS[type(packet)](packet, protocol_level == MQTT_5)
