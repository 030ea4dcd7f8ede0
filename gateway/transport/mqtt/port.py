"""What the MQTT connections of one port share beyond the port's own state
(:class:`~gateway.transport.port.PortState`): routes, sessions, pending wills, credentials and
the MQTT counters. The listener holds it and hands it to each connection it makes."""

from __future__ import annotations

from gateway.common.stats import ListenerStats
from gateway.transport.mqtt.metrics import MqttStats
from gateway.transport.mqtt.passwords import PasswordChecker
from gateway.transport.mqtt.routes import Router
from gateway.transport.mqtt.sessions import SessionStore
from gateway.transport.mqtt.settings import MqttListenerSettings
from gateway.transport.mqtt.wills import PendingWills
from parser.codec import Codec
from parser.mqtt.connection import MqttServerConnection

TRANSPORT = "mqtt"
# 5.0 Topic Aliases a client may use towards us (CONNACK Topic Alias Maximum): devices that
# publish one long topic at a high rate save its bytes on every message.
TOPIC_ALIAS_MAXIMUM = 16


class MqttPortState:
    """Connection-level counters (connections, closes, rejects, acknowledgements and their
    latency, the protocol's own bytes) are the port's, labelled codec ``mqtt``: a connection
    may publish to routes of several codecs. Frames, records, decode errors and the payload
    bytes that carried them are counted per route codec here (``codec_stats``)."""

    def __init__(self, settings: MqttListenerSettings, codecs: dict[str, Codec]) -> None:
        self.router = Router(settings, codecs)
        self.codec_stats = {
            name: ListenerStats(name, TRANSPORT) for name in self.router.codec_names
        }
        self.mqtt_stats = MqttStats()
        self.sessions = SessionStore(settings.max_sessions, settings.max_session_expiry_s)
        self.wills = PendingWills(settings.max_sessions)
        self.passwords = password_checker(settings)


def codec_connection(settings: MqttListenerSettings) -> MqttServerConnection:
    """The sans-I/O MQTT server connection of one device socket."""
    return MqttServerConnection(
        max_packet_bytes=settings.max_packet_bytes,
        receive_maximum=settings.receive_maximum,
        enforce_receive_maximum=False,  # see MqttListenerSettings.receive_maximum
        # Nothing could ever receive a retained message (devices may subscribe to their
        # command topic only), so 5.0 clients are told there is none (CONNACK Retain
        # Available 0; a retained PUBLISH or will is then refused, 0x9A, as 5.0 §3.2.2.3.5
        # says). 3.1.1 cannot be told: there the flag is ignored and the message stored.
        retain_available=False,
        topic_alias_maximum=TOPIC_ALIAS_MAXIMUM,
    )


def password_checker(settings: MqttListenerSettings) -> PasswordChecker | None:
    if settings.password_file is None:
        return None
    return PasswordChecker.load(settings.password_file, settings.max_pending_password_checks)
