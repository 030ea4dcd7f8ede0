"""MQTT control packets (3.1.1 and 5.0) as immutable values, and the protocol's constants.

Packets are msgspec Structs rather than frozen dataclasses: one ``Publish`` is built per message
on the ingest hot path, and a Struct is several times cheaper to build (see parser/events.py).
The same classes serve both protocol levels; fields that exist only in 5.0 (``properties``,
reason codes on acknowledgements) keep their defaults in 3.1.1 and are not sent by the encoder.
"""

from __future__ import annotations

from enum import IntEnum

import msgspec

MQTT_311 = 4  # Protocol Level of MQTT 3.1.1 (3.1.1 §3.1.2.2)
MQTT_5 = 5  # Protocol Version of MQTT 5.0 (5.0 §3.1.2.2)


class PacketType(IntEnum):
    """The four high bits of the fixed header (3.1.1 §2.2.1, 5.0 §2.1.2). 15 is 5.0 only."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


class ReasonCode(IntEnum):
    """MQTT 5.0 Reason Codes (5.0 §2.4). Values 0x00 has three names depending on the packet."""

    SUCCESS = 0x00
    NORMAL_DISCONNECTION = 0x00
    GRANTED_QOS_0 = 0x00
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL_MESSAGE = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    CONTINUE_AUTHENTICATION = 0x18
    RE_AUTHENTICATE = 0x19
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    PACKET_IDENTIFIER_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


class ConnectReturnCode(IntEnum):
    """MQTT 3.1.1 CONNACK return codes (3.1.1 §3.2.2.3, table 3.1)."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USER_NAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


# 3.1.1 return code <-> 5.0 reason code. The 5.0 codes without a 3.1.1 counterpart become
# "server unavailable" (the client retries later), except refusals of who the client is.
_RETURN_CODES = {
    ReasonCode.SUCCESS: ConnectReturnCode.ACCEPTED,
    ReasonCode.UNSUPPORTED_PROTOCOL_VERSION: ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION,
    ReasonCode.CLIENT_IDENTIFIER_NOT_VALID: ConnectReturnCode.IDENTIFIER_REJECTED,
    ReasonCode.BAD_USER_NAME_OR_PASSWORD: ConnectReturnCode.BAD_USER_NAME_OR_PASSWORD,
    ReasonCode.NOT_AUTHORIZED: ConnectReturnCode.NOT_AUTHORIZED,
    ReasonCode.BANNED: ConnectReturnCode.NOT_AUTHORIZED,
    ReasonCode.BAD_AUTHENTICATION_METHOD: ConnectReturnCode.NOT_AUTHORIZED,
}
_REASON_CODES = {
    ConnectReturnCode.ACCEPTED: ReasonCode.SUCCESS,
    ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION: ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
    ConnectReturnCode.IDENTIFIER_REJECTED: ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
    ConnectReturnCode.SERVER_UNAVAILABLE: ReasonCode.SERVER_UNAVAILABLE,
    ConnectReturnCode.BAD_USER_NAME_OR_PASSWORD: ReasonCode.BAD_USER_NAME_OR_PASSWORD,
    ConnectReturnCode.NOT_AUTHORIZED: ReasonCode.NOT_AUTHORIZED,
}


def return_code(reason: ReasonCode) -> ConnectReturnCode:
    """The 3.1.1 CONNACK return code that tells a 3.1.1 client what ``reason`` means."""
    return _RETURN_CODES.get(reason, ConnectReturnCode.SERVER_UNAVAILABLE)


def reason_from_return_code(code: ConnectReturnCode) -> ReasonCode:
    """The 5.0 reason code for a 3.1.1 CONNACK return code (what ``ConnAck`` carries)."""
    return _REASON_CODES[code]


def _codes(*values: int) -> frozenset[ReasonCode]:
    return frozenset(ReasonCode(v) for v in values)


_ACK_CODES = _codes(0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99)
_REL_CODES = _codes(0x00, 0x92)

# Which reason codes each 5.0 packet may carry (5.0 §3.2.2.2, §3.4.2.1, §3.5.2.1, §3.6.2.1,
# §3.7.2.1, §3.9.3, §3.11.3, §3.14.2.1, §3.15.2.1); any other value is a Malformed Packet.
REASON_CODES_BY_PACKET: dict[PacketType, frozenset[ReasonCode]] = {
    PacketType.CONNACK: _codes(
        *(0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C),
        *(0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F),
    ),
    PacketType.PUBACK: _ACK_CODES,
    PacketType.PUBREC: _ACK_CODES,
    PacketType.PUBREL: _REL_CODES,
    PacketType.PUBCOMP: _REL_CODES,
    PacketType.SUBACK: _codes(
        0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2
    ),
    PacketType.UNSUBACK: _codes(0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91),
    PacketType.DISCONNECT: _codes(
        *(0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93),
        *(0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1),
        0xA2,
    ),
    PacketType.AUTH: _codes(0x00, 0x18, 0x19),
}


def allowed_reason(packet_type: PacketType, code: ReasonCode) -> ReasonCode:
    """``code`` if a ``packet_type`` may carry it, else 0x80 Unspecified error (which every
    5.0 packet with an error code may carry)."""
    return code if code in REASON_CODES_BY_PACKET[packet_type] else ReasonCode.UNSPECIFIED_ERROR


class Properties(msgspec.Struct, frozen=True, gc=False, repr_omit_defaults=True):
    """The MQTT 5.0 properties of one packet (5.0 §2.2.2.2), each ``None`` when absent.

    Which property a packet may carry, and which may repeat, is checked when reading
    (parser/mqtt/properties.py holds that table). ``user_properties`` keep their order and may
    repeat a name ([MQTT-3.3.2-17]); ``subscription_identifiers`` repeat only in a PUBLISH
    from a server (5.0 §3.3.2.3.8).
    """

    payload_format_indicator: int | None = None
    message_expiry_interval: int | None = None
    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    subscription_identifiers: tuple[int, ...] = ()
    session_expiry_interval: int | None = None
    assigned_client_identifier: str | None = None
    server_keep_alive: int | None = None
    authentication_method: str | None = None
    authentication_data: bytes | None = None
    request_problem_information: int | None = None
    will_delay_interval: int | None = None
    request_response_information: int | None = None
    response_information: str | None = None
    server_reference: str | None = None
    reason_string: str | None = None
    receive_maximum: int | None = None
    topic_alias_maximum: int | None = None
    topic_alias: int | None = None
    maximum_qos: int | None = None
    retain_available: int | None = None
    user_properties: tuple[tuple[str, str], ...] = ()
    maximum_packet_size: int | None = None
    wildcard_subscription_available: int | None = None
    subscription_identifier_available: int | None = None
    shared_subscription_available: int | None = None


# Shared by every packet without properties, so the hot path allocates none.
NO_PROPERTIES = Properties()


class Will(msgspec.Struct, frozen=True, gc=False, repr_omit_defaults=True):
    """The Will Message of a CONNECT (3.1.1 §3.1.2.5, 5.0 §3.1.3.2)."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties = NO_PROPERTIES


class Connect(msgspec.Struct, frozen=True, gc=False, repr_omit_defaults=True):
    """CONNECT (3.1.1 §3.1, 5.0 §3.1). ``clean_start`` is 3.1.1's Clean Session flag."""

    protocol_level: int
    client_id: str
    clean_start: bool = True
    keep_alive_s: int = 0
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: Properties = NO_PROPERTIES

    def __repr__(self) -> str:
        # The password must not reach a log line or a traceback that shows the packet.
        shown = {name: repr(value) for name, value in msgspec.structs.asdict(self).items()}
        if self.password is not None:
            shown["password"] = "<hidden>"
        return f"Connect({', '.join(f'{name}={text}' for name, text in shown.items())})"


class ConnAck(msgspec.Struct, frozen=True, gc=False, repr_omit_defaults=True):
    """CONNACK. A 3.1.1 return code is carried as its 5.0 reason code (see ``return_code``)."""

    session_present: bool = False
    reason_code: ReasonCode = ReasonCode.SUCCESS
    properties: Properties = NO_PROPERTIES


class Publish(msgspec.Struct, frozen=True, gc=False, repr_omit_defaults=True):
    """PUBLISH. ``packet_id`` is 0 for QoS 0 (a real one is never 0, [MQTT-2.3.1-1]).

    Received with a 5.0 Topic Alias, ``topic`` is already the resolved name and
    ``properties.topic_alias`` still says which alias the peer used.
    """

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int = 0
    properties: Properties = NO_PROPERTIES


class PubAck(msgspec.Struct, frozen=True, gc=False, repr_omit_defaults=True):
    """PUBACK: the end of a QoS 1 exchange."""

    packet_id: int
    reason_code: ReasonCode = ReasonCode.SUCCESS
    properties: Properties = NO_PROPERTIES


class PubRec(msgspec.Struct, frozen=True, gc=False, repr_omit_defaults=True):
    """PUBREC: QoS 2, step 2."""

    packet_id: int
    reason_code: ReasonCode = ReasonCode.SUCCESS
    properties: Properties = NO_PROPERTIES


class PubRel(msgspec.Struct, frozen=True, gc=False, repr_omit_defaults=True):
    """PUBREL: QoS 2, step 3."""

    packet_id: int
    reason_code: ReasonCode = ReasonCode.SUCCESS
    properties: Properties = NO_PROPERTIES


class PubComp(msgspec.Struct, frozen=True, gc=False, repr_omit_defaults=True):
    """PUBCOMP: QoS 2, step 4."""

    packet_id: int
    reason_code: ReasonCode = ReasonCode.SUCCESS
    properties: Properties = NO_PROPERTIES


class Subscription(msgspec.Struct, frozen=True, gc=False, repr_omit_defaults=True):
    """One Topic Filter of a SUBSCRIBE with its Subscription Options (5.0 §3.8.3.1).

    3.1.1 carries only ``qos``; the other options keep their defaults there.
    """

    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


class Subscribe(msgspec.Struct, frozen=True, gc=False, repr_omit_defaults=True):
    """SUBSCRIBE: at least one subscription ([MQTT-3.8.3-3])."""

    packet_id: int
    subscriptions: tuple[Subscription, ...]
    properties: Properties = NO_PROPERTIES


class SubAck(msgspec.Struct, frozen=True, gc=False, repr_omit_defaults=True):
    """SUBACK: one code per subscription. 3.1.1's 0x80 failure reads as UNSPECIFIED_ERROR."""

    packet_id: int
    reason_codes: tuple[ReasonCode, ...]
    properties: Properties = NO_PROPERTIES


class Unsubscribe(msgspec.Struct, frozen=True, gc=False, repr_omit_defaults=True):
    """UNSUBSCRIBE: at least one topic filter ([MQTT-3.10.3-2])."""

    packet_id: int
    topic_filters: tuple[str, ...]
    properties: Properties = NO_PROPERTIES


class UnsubAck(msgspec.Struct, frozen=True, gc=False, repr_omit_defaults=True):
    """UNSUBACK. 3.1.1 has no reason codes: ``reason_codes`` is empty there."""

    packet_id: int
    reason_codes: tuple[ReasonCode, ...] = ()
    properties: Properties = NO_PROPERTIES


class PingReq(msgspec.Struct, frozen=True, gc=False, repr_omit_defaults=True):
    """PINGREQ."""


class PingResp(msgspec.Struct, frozen=True, gc=False, repr_omit_defaults=True):
    """PINGRESP."""


class Disconnect(msgspec.Struct, frozen=True, gc=False, repr_omit_defaults=True):
    """DISCONNECT. A 3.1.1 DISCONNECT is client to server only and always 'normal'."""

    reason_code: ReasonCode = ReasonCode.NORMAL_DISCONNECTION
    properties: Properties = NO_PROPERTIES


class Auth(msgspec.Struct, frozen=True, gc=False, repr_omit_defaults=True):
    """AUTH (5.0 only, §3.15): enhanced authentication, which this gateway does not offer."""

    reason_code: ReasonCode = ReasonCode.SUCCESS
    properties: Properties = NO_PROPERTIES


Packet = (
    Connect
    | ConnAck
    | Publish
    | PubAck
    | PubRec
    | PubRel
    | PubComp
    | Subscribe
    | SubAck
    | Unsubscribe
    | UnsubAck
    | PingReq
    | PingResp
    | Disconnect
    | Auth
)

PACKET_TYPES: dict[type[Packet], PacketType] = {
    Connect: PacketType.CONNECT,
    ConnAck: PacketType.CONNACK,
    Publish: PacketType.PUBLISH,
    PubAck: PacketType.PUBACK,
    PubRec: PacketType.PUBREC,
    PubRel: PacketType.PUBREL,
    PubComp: PacketType.PUBCOMP,
    Subscribe: PacketType.SUBSCRIBE,
    SubAck: PacketType.SUBACK,
    Unsubscribe: PacketType.UNSUBSCRIBE,
    UnsubAck: PacketType.UNSUBACK,
    PingReq: PacketType.PINGREQ,
    PingResp: PacketType.PINGRESP,
    Disconnect: PacketType.DISCONNECT,
    Auth: PacketType.AUTH,
}
