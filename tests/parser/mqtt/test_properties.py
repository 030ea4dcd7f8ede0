"""MQTT 5.0 properties (5.0 §2.2.2): every one round trips on the packets that may carry it;
the wrong packet, a repeat or an out-of-range value is refused with the spec's reason code."""

from __future__ import annotations

import pytest

from parser.mqtt import (
    MQTT_5,
    NO_PROPERTIES,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    MqttError,
    PacketType,
    Properties,
    PubAck,
    Publish,
    ReasonCode,
    Subscribe,
    Subscription,
    Will,
    encode,
)
from parser.mqtt.properties import SPECS, WILL, encode_properties, read_properties
from tests.parser.mqtt import wire
from tests.parser.mqtt.streams import client_packets, server_error, server_packets

RC = ReasonCode
USERS = (("a", "1"), ("a", "2"), ("ü", ""))


def test_the_table_names_every_field_once() -> None:
    names = [spec.name for spec in SPECS]
    assert sorted(names) == sorted(Properties.__struct_fields__)
    assert len({spec.identifier for spec in SPECS}) == 27  # 5.0 §2.2.2.2


def test_connect_and_will_properties_round_trip() -> None:
    connect = Connect(
        MQTT_5,
        "c",
        will=Will(
            "w",
            b"bye",
            1,
            False,
            Properties(
                payload_format_indicator=1,
                message_expiry_interval=60,
                content_type="text/plain",
                response_topic="r/t",
                correlation_data=b"\x00\x01",
                will_delay_interval=10,
                user_properties=USERS,
            ),
        ),
        properties=Properties(
            session_expiry_interval=0xFFFFFFFF,
            authentication_data=None,
            request_problem_information=0,
            request_response_information=1,
            receive_maximum=10,
            topic_alias_maximum=5,
            user_properties=USERS,
            maximum_packet_size=1024,
        ),
    )
    assert server_packets(encode(connect, MQTT_5)) == [connect]


def test_connack_properties_round_trip() -> None:
    connack = ConnAck(
        False,
        RC.SUCCESS,
        Properties(
            session_expiry_interval=30,
            assigned_client_identifier="auto-1",
            server_keep_alive=120,
            authentication_method="m",
            authentication_data=b"d",
            response_information="info",
            server_reference="elsewhere:1883",
            reason_string="fine",
            receive_maximum=100,
            topic_alias_maximum=10,
            maximum_qos=1,
            retain_available=0,
            user_properties=USERS,
            maximum_packet_size=268435460,
            wildcard_subscription_available=0,
            subscription_identifier_available=1,
            shared_subscription_available=0,
        ),
    )
    assert client_packets(MQTT_5, encode(connack, MQTT_5)) == [connack]


def test_publish_and_ack_properties_round_trip() -> None:
    publish = Publish(
        "t",
        b"p",
        1,
        False,
        False,
        3,
        Properties(
            payload_format_indicator=0,
            message_expiry_interval=1,
            content_type="application/json",
            response_topic="reply/here",
            correlation_data=b"",
            subscription_identifiers=(1, 268435455),
            topic_alias=2,
            user_properties=USERS,
        ),
    )
    ack = PubAck(3, RC.NOT_AUTHORIZED, Properties(reason_string="no", user_properties=USERS))
    data = encode(ConnAck(), MQTT_5) + encode(publish, MQTT_5) + encode(ack, MQTT_5)
    assert client_packets(MQTT_5, data, topic_alias_maximum=2)[1:] == [publish, ack]


def test_subscribe_disconnect_auth_properties_round_trip() -> None:
    subscribe = Subscribe(1, (Subscription("a", 1),), Properties(subscription_identifiers=(42,)))
    disconnect = Disconnect(RC.SUCCESS, Properties(reason_string="bye", user_properties=USERS))
    data = (
        encode(Connect(MQTT_5, "c"), MQTT_5)
        + encode(subscribe, MQTT_5)
        + encode(disconnect, MQTT_5)
    )
    assert server_packets(data)[1:] == [subscribe, disconnect]
    auth = Auth(RC.RE_AUTHENTICATE, Properties(authentication_method="m", reason_string="r"))
    assert client_packets(MQTT_5, encode(ConnAck(), MQTT_5) + encode(auth, MQTT_5))[1:] == [auth]


def read(data: bytes, context: int) -> Properties:
    properties, pos = read_properties(data, 0, len(data), context)
    assert pos == len(data)
    return properties


@pytest.mark.parametrize(
    ("data", "context", "code"),
    [
        (b"\x02\x23\x00", PacketType.PUBLISH, RC.MALFORMED_PACKET),  # value runs past the end
        (b"\x05\x23\x00\x01", PacketType.PUBLISH, RC.MALFORMED_PACKET),  # length runs past
        (b"\x02\x7f\x00", PacketType.PUBLISH, RC.MALFORMED_PACKET),  # unknown identifier
        (b"\x05\x11\x00\x00\x00\x01", PacketType.PUBLISH, RC.MALFORMED_PACKET),  # wrong packet
        (b"\x02\x18\x00", PacketType.CONNECT, RC.MALFORMED_PACKET),  # will-only property
        (b"\x02\x01\x00", PacketType.CONNECT, RC.MALFORMED_PACKET),
        (b"\x04\x01\x00\x01\x01", PacketType.PUBLISH, RC.PROTOCOL_ERROR),  # given twice
        (b"\x04\x0b\x01\x0b\x02", PacketType.SUBSCRIBE, RC.PROTOCOL_ERROR),  # twice in SUBSCRIBE
        (b"\x02\x01\x02", PacketType.PUBLISH, RC.PROTOCOL_ERROR),  # payload format 2
        (b"\x02\x17\x02", PacketType.CONNECT, RC.PROTOCOL_ERROR),  # request problem info 2
        (b"\x02\x24\x02", PacketType.CONNACK, RC.PROTOCOL_ERROR),  # maximum QoS 2
        (b"\x03\x21\x00\x00", PacketType.CONNECT, RC.PROTOCOL_ERROR),  # receive maximum 0
        (b"\x05\x27\x00\x00\x00\x00", PacketType.CONNACK, RC.PROTOCOL_ERROR),  # max packet 0
        (b"\x02\x0b\x00", PacketType.SUBSCRIBE, RC.PROTOCOL_ERROR),  # subscription id 0
        (b"\x05\x0b\x80\x80\x80\x80", PacketType.PUBLISH, RC.MALFORMED_PACKET),  # 5-byte varint
        (b"\x03\x03\x00\x02", PacketType.PUBLISH, RC.MALFORMED_PACKET),  # string runs past
        (b"\x05\x03\x00\x02\xc3\x28", PacketType.PUBLISH, RC.MALFORMED_PACKET),  # bad UTF-8
        (b"\x04\x26\x00\x01a", PacketType.PUBLISH, RC.MALFORMED_PACKET),  # half a pair
    ],
)
def test_refused_properties(data: bytes, context: int, code: RC) -> None:
    with pytest.raises(MqttError) as raised:
        read(data, context)
    assert raised.value.reason_code == code


def test_repeats_where_allowed() -> None:
    pairs = b"\x26\x00\x01a\x00\x01b" * 2
    assert (
        read(bytes((len(pairs),)) + pairs, PacketType.PUBACK).user_properties == (("a", "b"),) * 2
    )
    assert read(b"\x04\x0b\x01\x0b\x02", PacketType.PUBLISH).subscription_identifiers == (1, 2)
    assert read(b"\x00", WILL) is NO_PROPERTIES


def test_encoder_refuses_properties_the_packet_cannot_carry() -> None:
    with pytest.raises(ValueError):
        encode_properties(Properties(topic_alias=1), PacketType.CONNECT)
    with pytest.raises(ValueError):
        encode(PubAck(1, RC.SUCCESS, Properties(content_type="x")), MQTT_5)
    with pytest.raises(ValueError):
        encode_properties(Properties(receive_maximum=70000), PacketType.CONNECT)


def test_properties_inside_a_publish_on_the_wire() -> None:
    # A PUBLISH carrying a property a PUBLISH may not carry is malformed (5.0 §2.2.2.2).
    data = encode(Connect(MQTT_5, "c"), MQTT_5) + wire.publish("t", properties=b"\x03\x21\x00\x01")
    error = server_error(data)
    assert (error.reason_code, error.reply) == (RC.MALFORMED_PACKET, wire.disconnect_reply(0x81))
