"""MQTT 5.0 properties (5.0 §2.2.2): which packet may carry which, reading and writing them.

Reading checks what the spec makes the receiver's business: an identifier unknown or not
allowed on this packet is a Malformed Packet (5.0 §2.2.2.2); a property given twice, or a
value outside its range, is a Protocol Error (each property's paragraph says so, e.g. 5.0
§3.1.2.11.3 for Receive Maximum).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from parser.mqtt.errors import MalformedPacket, ProtocolViolation
from parser.mqtt.packets import NO_PROPERTIES, PacketType, Properties
from parser.mqtt.wire import (
    encode_binary,
    encode_byte,
    encode_string,
    encode_u16,
    encode_u32,
    encode_varint,
    read_binary,
    read_byte,
    read_length,
    read_string,
    read_u16,
    read_u32,
)

# The Will Properties of a CONNECT are a context of their own (5.0 §3.1.3.2); packet type 0 is
# reserved, so it cannot clash with a real packet.
WILL = 0


Reader = Callable[[bytes, int, int], tuple[Any, int]]
Writer = Callable[[Any], bytes]


def _read_pair(data: bytes, pos: int, end: int) -> tuple[tuple[str, str], int]:
    name, pos = read_string(data, pos, end)
    value, pos = read_string(data, pos, end)
    return (name, value), pos


def _write_pair(value: tuple[str, str]) -> bytes:
    return encode_string(value[0]) + encode_string(value[1])


class Kind(NamedTuple):
    """A property's data type (5.0 §2.2.2.2) and how to read and write it."""

    read: Reader
    write: Writer


BYTE = Kind(read_byte, encode_byte)
U16 = Kind(read_u16, encode_u16)
U32 = Kind(read_u32, encode_u32)
VARINT = Kind(read_length, encode_varint)
STRING = Kind(read_string, encode_string)
BINARY = Kind(read_binary, encode_binary)
PAIR = Kind(_read_pair, _write_pair)


class Spec(NamedTuple):
    identifier: int
    name: str  # the Properties field
    kind: Kind
    contexts: frozenset[int]  # packet types (or WILL) that may carry it
    many: bool = False  # a tuple field: the property may repeat in ``repeats``
    repeats: frozenset[int] = frozenset()
    values: frozenset[int] | None = None  # the only values allowed, when restricted


_P = PacketType
_BOOL = frozenset({0, 1})
_ACKS = (_P.PUBACK, _P.PUBREC, _P.PUBREL, _P.PUBCOMP, _P.SUBACK, _P.UNSUBACK)
_USER_CONTEXTS = frozenset(
    {WILL, *_ACKS, _P.CONNECT, _P.CONNACK, _P.PUBLISH, _P.SUBSCRIBE, _P.UNSUBSCRIBE}
    | {_P.DISCONNECT, _P.AUTH}
)


def _spec(
    identifier: int,
    name: str,
    kind: Kind,
    *contexts: int,
    repeats: frozenset[int] | None = None,
    values: frozenset[int] | None = None,
) -> Spec:
    many = repeats is not None
    return Spec(identifier, name, kind, frozenset(contexts), many, repeats or frozenset(), values)


# The table of 5.0 §2.2.2.2, in identifier order (the order the encoder writes them in).
SPECS: tuple[Spec, ...] = (
    _spec(0x01, "payload_format_indicator", BYTE, _P.PUBLISH, WILL, values=_BOOL),
    _spec(0x02, "message_expiry_interval", U32, _P.PUBLISH, WILL),
    _spec(0x03, "content_type", STRING, _P.PUBLISH, WILL),
    _spec(0x08, "response_topic", STRING, _P.PUBLISH, WILL),
    _spec(0x09, "correlation_data", BINARY, _P.PUBLISH, WILL),
    # Repeats only in a PUBLISH from the server, one per matching subscription (5.0 §3.3.4).
    _spec(
        0x0B,
        "subscription_identifiers",
        VARINT,
        _P.PUBLISH,
        _P.SUBSCRIBE,
        repeats=frozenset({_P.PUBLISH}),
    ),
    _spec(0x11, "session_expiry_interval", U32, _P.CONNECT, _P.CONNACK, _P.DISCONNECT),
    _spec(0x12, "assigned_client_identifier", STRING, _P.CONNACK),
    _spec(0x13, "server_keep_alive", U16, _P.CONNACK),
    _spec(0x15, "authentication_method", STRING, _P.CONNECT, _P.CONNACK, _P.AUTH),
    _spec(0x16, "authentication_data", BINARY, _P.CONNECT, _P.CONNACK, _P.AUTH),
    _spec(0x17, "request_problem_information", BYTE, _P.CONNECT, values=_BOOL),
    _spec(0x18, "will_delay_interval", U32, WILL),
    _spec(0x19, "request_response_information", BYTE, _P.CONNECT, values=_BOOL),
    _spec(0x1A, "response_information", STRING, _P.CONNACK),
    _spec(0x1C, "server_reference", STRING, _P.CONNACK, _P.DISCONNECT),
    _spec(0x1F, "reason_string", STRING, _P.CONNACK, _P.DISCONNECT, _P.AUTH, *_ACKS),
    _spec(0x21, "receive_maximum", U16, _P.CONNECT, _P.CONNACK),
    _spec(0x22, "topic_alias_maximum", U16, _P.CONNECT, _P.CONNACK),
    _spec(0x23, "topic_alias", U16, _P.PUBLISH),
    _spec(0x24, "maximum_qos", BYTE, _P.CONNACK, values=_BOOL),
    _spec(0x25, "retain_available", BYTE, _P.CONNACK, values=_BOOL),
    _spec(0x26, "user_properties", PAIR, *_USER_CONTEXTS, repeats=_USER_CONTEXTS),
    _spec(0x27, "maximum_packet_size", U32, _P.CONNECT, _P.CONNACK),
    _spec(0x28, "wildcard_subscription_available", BYTE, _P.CONNACK, values=_BOOL),
    _spec(0x29, "subscription_identifier_available", BYTE, _P.CONNACK, values=_BOOL),
    _spec(0x2A, "shared_subscription_available", BYTE, _P.CONNACK, values=_BOOL),
)
_BY_ID = {spec.identifier: spec for spec in SPECS}
# Zero is a Protocol Error for Receive Maximum and Maximum Packet Size (5.0 §3.1.2.11.3,
# §3.1.2.11.4, §3.2.2.3.3, §3.2.2.3.6) and a Subscription Identifier (§3.8.2.1.2). A Topic
# Alias of 0 is left to the connection: it owes 0x94, not 0x82 ([MQTT-3.3.2-8], §3.3.4).
_NON_ZERO = frozenset({0x0B, 0x21, 0x27})


def read_properties(data: bytes, pos: int, end: int, context: int) -> tuple[Properties, int]:
    """The properties at ``pos`` (length first) of a ``context`` packet, and the offset after."""
    length, pos = read_length(data, pos, end)
    if length == 0:
        return NO_PROPERTIES, pos
    stop = pos + length
    if stop > end:
        raise MalformedPacket("property length runs past the packet")
    values: dict[str, Any] = {}
    while pos < stop:
        identifier, pos = read_length(data, pos, stop)
        spec = _BY_ID.get(identifier)
        if spec is None or context not in spec.contexts:
            raise MalformedPacket(f"property 0x{identifier:02X} is not allowed here")
        value, pos = spec.kind.read(data, pos, stop)
        if spec.values is not None and value not in spec.values:
            raise ProtocolViolation(f"{spec.name} = {value} is out of range")
        if value == 0 and identifier in _NON_ZERO:
            raise ProtocolViolation(f"{spec.name} must not be 0")
        if spec.name in values and not (spec.many and context in spec.repeats):
            raise ProtocolViolation(f"{spec.name} given twice")
        if spec.many:
            values.setdefault(spec.name, []).append(value)
        else:
            values[spec.name] = value
    for name, value in values.items():
        if isinstance(value, list):
            values[name] = tuple(value)
    return Properties(**values), pos


def encode_properties(properties: Properties, context: int) -> bytes:
    """The property length and properties of a 5.0 ``context`` packet (``b"\\x00"`` when there
    are none); ValueError for a property that packet cannot carry."""
    if properties is NO_PROPERTIES:
        return b"\x00"
    out = bytearray()
    for spec in SPECS:
        value = getattr(properties, spec.name)
        if value is None or value == ():
            continue
        if context not in spec.contexts:
            raise ValueError(f"{spec.name} is not allowed on packet type {context}")
        write = spec.kind.write
        for item in value if spec.many else (value,):
            out.append(spec.identifier)
            out += write(item)
    return encode_varint(len(out)) + out
