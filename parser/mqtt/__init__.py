"""Sans-I/O MQTT 3.1.1 and 5.0 codec: packets, encoder, server and client connections.

``MqttServerConnection`` is what the MQTT listener drives, ``MqttClientConnection`` and
``encode``/``encode_publish`` what the device simulator and the benches use.
"""

from parser.mqtt.client import MqttClientConnection
from parser.mqtt.connection import DEFAULT_MAX_PACKET_BYTES, MqttServerConnection
from parser.mqtt.encode import encode, encode_ack, encode_publish
from parser.mqtt.errors import MalformedPacket, MqttError, ProtocolViolation
from parser.mqtt.packets import (
    MQTT_5,
    MQTT_311,
    NO_PROPERTIES,
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
    return_code,
)

__all__ = [
    "DEFAULT_MAX_PACKET_BYTES",
    "MQTT_5",
    "MQTT_311",
    "NO_PROPERTIES",
    "Auth",
    "ConnAck",
    "Connect",
    "ConnectReturnCode",
    "Disconnect",
    "MalformedPacket",
    "MqttClientConnection",
    "MqttError",
    "MqttServerConnection",
    "Packet",
    "PacketType",
    "PingReq",
    "PingResp",
    "Properties",
    "ProtocolViolation",
    "PubAck",
    "PubComp",
    "PubRec",
    "PubRel",
    "Publish",
    "ReasonCode",
    "SubAck",
    "Subscribe",
    "Subscription",
    "UnsubAck",
    "Unsubscribe",
    "Will",
    "encode",
    "encode_ack",
    "encode_publish",
    "return_code",
]
