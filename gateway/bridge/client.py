"""The bridge's MQTT client: aiomqtt 2.5 with the paho-mqtt features at-least-once needs.

Why aiomqtt 2.5 and reaching under it: aiomqtt 2.x acknowledges a QoS 1 message as soon as paho
has queued it (empicano/aiomqtt#345), so a crash before forwarding would lose it. Its paho client
has manual acknowledgements (``manual_ack_set`` + ``ack(mid, qos)``, paho.mqtt.python#753), which
let the bridge send the PUBACK only once the destination took the message. aiomqtt 3 has manual
acks built in, but it is an alpha rewrite that speaks MQTT 5 only (Event Grid and older brokers
still talk 3.1.1 to us), so the project pins ``aiomqtt>=2.5,<3``.

What this subclass adds, each touching one aiomqtt/paho internal in one place:

- manual acks, and each message's DUP flag (aiomqtt's ``Message`` drops it; the bridge counts
  redeliveries with it);
- its own inbox: when ``inbox_limit`` messages wait untaken, the socket stops being read (the
  broker then holds the rest), resuming at half. MQTT 5 announces the in-flight window as the
  CONNECT's Receive Maximum and the inbox limit is twice that, so with a compliant broker QoS 1/2
  never get this far: the pause is for QoS 0 floods and brokers that send more (3.1.1 has no
  Receive Maximum). A paused socket also leaves PINGRESPs unread, so a pause longer than the
  keep-alive ends the connection (a redelivery of the window, not a loss);
- the CONNACK's session-present flag and the server's Receive Maximum (paho ignores it);
- a TLS context that sends a chosen SNI name (paho always sends the host it connects to).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Self

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.bridge.settings import (
    ClientTlsSettings,
    DestinationSettings,
    EndpointSettings,
    SourceSettings,
)
from gateway.bridge.stats import SourceStats
from parser.mqtt.packets import PacketType
from parser.mqtt.packets import Properties as MqttProperties
from parser.mqtt.properties import encode_properties

# MQTT 5 §3.1.2.11.3: the default (and highest) Receive Maximum.
MAX_RECEIVE_MAXIMUM = 65_535
SENT_AT_PROPERTY = "sent-at-ms"


@dataclass(frozen=True, slots=True)
class Received:
    """One PUBLISH from a source, as the bridge needs it."""

    topic: str
    payload: bytes
    qos: int
    dup: bool  # a redelivery (MQTT §3.3.1.1): the broker sent it before and had no PUBACK
    mid: int
    user_properties: tuple[tuple[str, str], ...]
    content_type: str | None
    # Loop time the end-to-end lag counts from: when the publisher stamped it (MQTT 5 user
    # property ``sent-at-ms``, milliseconds since the epoch), else when it arrived here.
    since: float
    retain: bool = False


def new_properties(packet_type: int) -> Properties:
    """Empty MQTT 5 properties for one packet type (paho's constructor is untyped)."""
    return Properties(packet_type)  # type: ignore[no-untyped-call]


class PackedProperties(Properties):
    """PUBLISH properties encoded once by ``parser.mqtt`` and handed to paho as they are.

    paho builds and packs its ``Properties`` by walking every property name (about 40 µs a
    message, measured; the codec's encoder takes 4 µs), and only ever calls ``pack`` on the
    properties of an outgoing PUBLISH, so paho's constructor is skipped on purpose.
    """

    packed: bytes

    def __init__(self, properties: MqttProperties) -> None:
        # paho's __setattr__ accepts property names only
        object.__setattr__(self, "packed", encode_properties(properties, PacketType.PUBLISH))

    def pack(self) -> bytes:
        return self.packed

    def __str__(self) -> str:  # paho's debug log prints the properties it sends
        return f"<{len(self.packed)} bytes of properties>"


class PublishRefused(aiomqtt.MqttError):
    """The server answered a PUBLISH with a failure reason code (e.g. 0x87 not authorized)."""


class _SniContext(ssl.SSLContext):
    """An ``SSLContext`` that always sends ``server_name`` as SNI and verifies that name."""

    server_name = ""

    def wrap_socket(
        self,
        sock: Any,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        return super().wrap_socket(
            sock,
            server_side,
            do_handshake_on_connect,
            suppress_ragged_eofs,
            self.server_name,
            session,
        )


def tls_context(settings: ClientTlsSettings) -> ssl.SSLContext:
    """Client TLS: verify the server (its CA file or the system's), optionally present a
    certificate; raises ``ssl.SSLError`` or ``OSError`` for unusable files."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if settings.server_hostname is not None:
        context = _SniContext(ssl.PROTOCOL_TLS_CLIENT)
        context.server_name = settings.server_hostname
    context.minimum_version = (
        ssl.TLSVersion.TLSv1_3 if settings.min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    )
    if settings.ca_file is not None:
        context.load_verify_locations(settings.ca_file)
    else:
        context.load_default_certs()
    if settings.cert_file is not None and settings.key_file is not None:
        context.load_cert_chain(settings.cert_file, settings.key_file)
    return context


class BridgeClient(aiomqtt.Client):
    """One connection; use a new one per connection attempt (aiomqtt's state is per object)."""

    def __init__(
        self,
        endpoint: EndpointSettings,
        client_id: str,
        *,
        tls: ssl.SSLContext | None,
        properties: Properties | None,
        persistent: bool,
        inbox_limit: int = 0,
        max_inflight: int | None = None,
        stats: SourceStats | None = None,
    ) -> None:
        v5 = endpoint.protocol == "5"
        password = endpoint.password
        super().__init__(
            endpoint.host,
            endpoint.port,
            identifier=client_id,
            username=endpoint.username,
            password=None if password is None else password.get_secret_value(),
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            # 3.1.1 keeps a session with clean_session=0; v5 with clean_start=0 plus a
            # Session Expiry Interval (in ``properties``).
            clean_session=None if v5 else not persistent,
            clean_start=not persistent if v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            keepalive=endpoint.keepalive_s,
            tls_context=tls,
            properties=properties,
            max_inflight_messages=max_inflight,
        )
        self._client.manual_ack_set(True)
        self.inbox: deque[Received] = deque()
        self._inbox_limit = inbox_limit
        self._subscribed = False
        # Resolved by the next message or the end of the connection.
        self._waiter: asyncio.Future[None] | None = None
        self._sock: Any = None
        self.reading_paused = False
        self._stats = stats
        self.session_present = False
        self.server_receive_maximum = MAX_RECEIVE_MAXIMUM
        self._confirmations: dict[int, asyncio.Future[ReasonCode | None]] = {}

    @classmethod
    def for_source(
        cls,
        source: SourceSettings,
        in_flight: int,
        tls: ssl.SSLContext | None,
        stats: SourceStats,
    ) -> BridgeClient:
        properties = None
        if source.protocol == "5":
            properties = new_properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = source.session_expiry_s
            properties.ReceiveMaximum = min(in_flight, MAX_RECEIVE_MAXIMUM)
        return cls(
            source,
            source.client_id,
            tls=tls,
            properties=properties,
            persistent=True,
            inbox_limit=2 * in_flight,
            stats=stats,
        )

    @classmethod
    def for_destination(
        cls, destination: DestinationSettings, index: int, tls: ssl.SSLContext | None
    ) -> BridgeClient:
        # Publishers need no session: what was not PUBACKed is published again by the pool.
        return cls(
            destination,
            f"{destination.client_id_prefix}-{index}",
            tls=tls,
            properties=None,
            persistent=False,
            max_inflight=destination.in_flight_per_connection,
        )

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self._disconnected.add_done_callback(lambda _: self._wake())
        return self

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def subscribe_all(
        self, topics: list[tuple[str, SubscribeOptions]] | list[tuple[str, int]]
    ) -> list[int]:
        """SUBSCRIBE; returns the granted QoS (or failure code) per topic.

        A kept session's queue starts flowing at CONNACK, before the SUBACK; reading may pause
        only after it, or the SUBACK would wait unread behind the backlog."""
        codes = await self.subscribe(topics)
        self._subscribed = True
        return [c if isinstance(c, int) else int(c.value) for c in codes]

    def ack(self, message: Received) -> None:
        """PUBACK (QoS 1) or PUBCOMP (QoS 2) for ``message``; QoS 0 owes nothing."""
        if message.qos:
            self._client.ack(message.mid, message.qos)

    async def next_message(self) -> Received:
        """The next message; ``aiomqtt.MqttError`` once the connection is gone."""
        # Nothing is taken from a connection that is gone: its un-acked messages come again.
        while True:
            if self._disconnected.done():
                raise aiomqtt.MqttError("disconnected") from self._disconnected.exception()
            if self.inbox:
                break
            self._waiter = self._loop.create_future()
            await self._waiter
        message = self.inbox.popleft()
        if self.reading_paused and len(self.inbox) <= self._inbox_limit // 2:
            self._resume_reading()
        return message

    async def publish_confirmed(
        self, topic: str, payload: bytes, qos: int, properties: Properties | None, timeout_s: float
    ) -> None:
        """PUBLISH and wait until the server took it: its PUBACK/PUBCOMP (QoS 1/2) or the write
        (QoS 0). Raises ``PublishRefused`` for an MQTT 5 failure reason code (aiomqtt's
        ``publish`` would report those as success) and ``aiomqtt.MqttError`` otherwise."""
        info = self._client.publish(topic, payload, qos, False, properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "could not publish")
        confirmed: asyncio.Future[ReasonCode | None] = self._loop.create_future()
        self._confirmations[info.mid] = confirmed
        try:
            reason = await asyncio.wait_for(confirmed, timeout_s)
        except TimeoutError:
            raise aiomqtt.MqttError(f"no PUBACK within {timeout_s:g} s") from None
        finally:
            self._confirmations.pop(info.mid, None)
        if reason is not None and reason.is_failure:
            raise PublishRefused(str(reason))

    async def wait_disconnected(self) -> None:
        """Return when the connection ends; raises ``aiomqtt.MqttError`` if it broke."""
        try:
            await asyncio.shield(self._disconnected)
        except aiomqtt.MqttError:
            raise
        except Exception as exc:  # aiomqtt passes on what broke the socket as it came
            raise aiomqtt.MqttError(str(exc) or type(exc).__name__) from exc

    # paho callbacks (overriding aiomqtt's), run from the socket's read handler.

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None = None,
    ) -> None:
        self.session_present = bool(flags.session_present)
        receive_maximum = getattr(properties, "ReceiveMaximum", None)
        if isinstance(receive_maximum, int) and receive_maximum > 0:
            self.server_receive_maximum = receive_maximum
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        props = getattr(message, "properties", None)
        user_properties = tuple(getattr(props, "UserProperty", ()))
        self.inbox.append(
            Received(
                message.topic,
                bytes(message.payload),
                message.qos,
                bool(message.dup),
                message.mid,
                user_properties,
                getattr(props, "ContentType", None),
                self._loop.time() - _age_s(user_properties),
                bool(message.retain),
            )
        )
        self._wake()
        if self._subscribed and self._inbox_limit and len(self.inbox) >= self._inbox_limit:
            self._pause_reading()

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        confirmed = self._confirmations.get(mid)
        if confirmed is not None and not confirmed.done():
            confirmed.set_result(reason_code)

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        super()._on_socket_open(client, userdata, sock)
        self._sock = sock

    def _pause_reading(self) -> None:
        if not self.reading_paused and self._sock is not None and self._sock.fileno() >= 0:
            self._set_paused(True)
            self._loop.remove_reader(self._sock.fileno())

    def _resume_reading(self) -> None:
        self._set_paused(False)
        if self._sock is not None and self._sock.fileno() >= 0:
            self._loop.add_reader(self._sock.fileno(), self._read_ready)
            # TLS may already hold decrypted bytes that the socket will not announce again.
            self._loop.call_soon(self._read_ready)

    def _set_paused(self, paused: bool) -> None:
        self.reading_paused = paused
        if self._stats is not None:
            self._stats.reading_paused = paused
            if paused:
                self._stats.read_pauses += 1

    def _read_ready(self) -> None:
        # aiomqtt's own read handler (registered in Client._on_socket_open) is a closure that
        # pausing had to unregister; this is the same loop, which also stops once paused.
        try:
            while not self.reading_paused:
                self._client.loop_read()
                sock = self._client.socket()
                if not (isinstance(sock, ssl.SSLSocket) and sock.pending() > 0):
                    break
        except Exception as exc:  # a broken socket: the connection is gone
            if not self._disconnected.done():
                self._disconnected.set_exception(exc)


def sent_at_ms(user_properties: tuple[tuple[str, str], ...]) -> int | None:
    """The publisher's ``sent-at-ms`` stamp (milliseconds since the epoch), if it set one."""
    for key, value in user_properties:
        if key == SENT_AT_PROPERTY and value.isdecimal():
            return int(value)
    return None


def _age_s(user_properties: tuple[tuple[str, str], ...]) -> float:
    """Seconds since the publisher's ``sent-at-ms`` stamp (0.0 without a usable one)."""
    stamp = sent_at_ms(user_properties)
    return 0.0 if stamp is None else max(0.0, time.time() - stamp / 1000)
