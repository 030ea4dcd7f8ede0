"""What a CONNECT asks for, decided from the listener's settings: the device the connection
speaks for, who may hold its client id, how long its session lasts, its will, and how long it
may stay silent. Pure functions: the connection applies what they decide."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from gateway.transport.mqtt.sessions import SESSION_EXPIRY_NEVER
from gateway.transport.mqtt.settings import MqttListenerSettings
from parser.mqtt.packets import MQTT_5, Connect, Properties

# A will kept for the end of the connection: topic, payload, delay (s).
PendingWill = tuple[str, bytes, float]


def identity(
    settings: MqttListenerSettings, connect: Connect, certificate_cn: Callable[[], str | None]
) -> str | None:
    """The device id the connection speaks for (``""``: none where one is required;
    ``None``: from the topics, bound by the first one used)."""
    source = settings.identity
    if source == "client_id":
        return connect.client_id
    if source == "username":
        return connect.username or ""
    if source == "certificate":
        return certificate_cn() or ""
    return None


def principal(
    settings: MqttListenerSettings,
    connect: Connect,
    identity: str | None,
    certificate_cn: Callable[[], str | None],
) -> str | None:
    """Who may hold this client id (take its session over): the proven credential where
    there is one (also with allow_any_identity), else the identity (``None`` with identity
    from the topics and no auth: nothing is proven, anyone may)."""
    if settings.auth == "password":
        return connect.username
    if settings.auth == "certificate":
        return certificate_cn()
    return identity


def client_identifier(connect: Connect) -> tuple[str, Properties]:
    """The client id, and the CONNACK properties that tell a 5.0 client the one assigned to
    it when it sent none ([MQTT-3.1.3-6], 5.0 §3.2.2.3.7)."""
    if connect.client_id:
        return connect.client_id, Properties()
    client_id = f"gw-{secrets.token_hex(8)}"
    if connect.protocol_level == MQTT_5:
        return client_id, Properties(assigned_client_identifier=client_id)
    return client_id, Properties()


def session_expiry_s(connect: Connect) -> float:
    """How long the session outlives this connection (capped by the session store)."""
    if connect.protocol_level == MQTT_5:
        expiry = connect.properties.session_expiry_interval or 0
        return float("inf") if expiry == SESSION_EXPIRY_NEVER else float(expiry)
    return 0.0 if connect.clean_start else float("inf")


def pending_will(connect: Connect, session_expiry_s: float) -> PendingWill | None:
    """The CONNECT's will, to store when the connection ends without a normal DISCONNECT;
    its delay never outlasts the session (5.0 §3.1.3.2.2)."""
    will = connect.will
    if will is None:
        return None
    delay_s = float(will.properties.will_delay_interval or 0)
    return will.topic, will.payload, min(delay_s, session_expiry_s)


def silence_allowed_s(
    settings: MqttListenerSettings, keep_alive_s: int | None, authenticating: bool
) -> float:
    """How long a connection may send no whole packet: the CONNECT deadline until it is
    connected (or while its password is checked), then 1.5 x its keep-alive
    ([MQTT-3.1.2-24]), or the idle timeout if it asked for none."""
    if authenticating or keep_alive_s is None:
        return settings.connect_timeout_s
    return keep_alive_s * 1.5 if keep_alive_s else settings.idle_timeout_s
