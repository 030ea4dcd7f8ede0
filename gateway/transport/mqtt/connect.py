"""An MQTT connection's session from its CONNECT to its end: credentials (a password checked in
a thread while reading is held), the device it speaks for, the client id's session, CONNACK,
and the will kept until the connection ends (stored then, or after its delay).

Held by each :class:`~gateway.transport.mqtt.protocol.MqttConnection` (composition: it sees
that handler through :class:`Connected` only, and its socket as ``conn``). What a CONNECT asks
for is decided by :mod:`~gateway.transport.mqtt.handshake`; this applies it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

from gateway.common.stats import ListenerStats
from gateway.pipeline.accept import FrameSource
from gateway.transport.connection import DeviceConnection
from gateway.transport.mqtt import handshake
from gateway.transport.mqtt.messages import will_event
from gateway.transport.mqtt.port import MqttPortState
from gateway.transport.mqtt.routes import Resolved, TopicCache
from gateway.transport.mqtt.sessions import MAX_QOS2_IDS, Session, SessionOwner
from gateway.transport.mqtt.settings import MqttListenerSettings
from gateway.transport.port import PortState
from gateway.transport.tls import common_name
from parser.events import Frame
from parser.mqtt.connection import MqttServerConnection
from parser.mqtt.packets import Connect, ReasonCode, Will


class Connected(SessionOwner, Protocol):
    """What the CONNECT flow uses of its connection's handler (the session's owner)."""

    port: PortState[MqttListenerSettings, Any]
    conn: DeviceConnection[MqttListenerSettings, Any]
    mqtt_port: MqttPortState
    mqtt: MqttServerConnection
    session: Session | None
    topics: TopicCache

    @property
    def v5(self) -> bool: ...
    def failed(self, reason: str) -> None: ...
    def refuse_connect(self, code: ReasonCode, reason: str) -> None: ...
    def queue_control(self, reply: bytes) -> None: ...
    def publisher(self, resolved: Resolved) -> str | None: ...
    def counted(self, resolved: Resolved, event: Frame) -> tuple[FrameSource, ListenerStats]: ...


class ConnectFlow:
    """One connection's CONNECT and will."""

    __slots__ = ("_checking", "_conn", "will")

    def __init__(self, conn: Connected) -> None:
        self._conn = conn
        # The CONNECT whose password is being checked: kept here, not bound into the check's
        # callback, where an error would log it (asyncio prints a failing callback's
        # arguments) and so its password.
        self._checking: Connect | None = None
        self.will: handshake.PendingWill | None = None  # stored if the connection ends badly

    def receive(self, connect: Connect) -> None:
        conn = self._conn
        if conn.port.settings.auth != "password":
            self._connected(connect, True)
            return
        checker = conn.mqtt_port.passwords
        user, password = connect.username, connect.password
        if checker is None or user is None or password is None:
            self._connected(connect, False)
            return
        if checker.remembered(user, password):
            self._connected(connect, True)
            return
        if checker.full:  # guessing must not queue unbounded work (nor wait unboundedly)
            conn.refuse_connect(ReasonCode.SERVER_BUSY, "auth_busy")
            return
        # scrypt runs in a thread: read nothing more (and hold what was read) meanwhile.
        conn.conn.flow.hold(conn.conn.transport)
        self._checking = connect
        checker.check(user, password).add_done_callback(self._checked)

    def _checked(self, task: asyncio.Future[bool]) -> None:
        conn = self._conn
        sock = conn.conn
        connect, self._checking = self._checking, None
        sock.flow.held = False
        if connect is None or sock.transport is None or sock.transport.is_closing():
            return
        try:
            self._connected(
                connect, not task.cancelled() and task.exception() is None and task.result()
            )
            if not sock.paused:
                sock.unblocked()
        except Exception:  # else the socket stays unread, CONNACK unsent, until the sweep
            conn.failed("mqtt_internal_error")

    def _connected(self, packet: Connect, authenticated: bool) -> None:
        conn = self._conn
        port, mqtt_port = conn.port, conn.mqtt_port
        if not authenticated:
            conn.refuse_connect(ReasonCode.BAD_USER_NAME_OR_PASSWORD, "bad_credentials")
            return
        settings = port.settings
        cn = self._certificate_cn
        identity = handshake.identity(settings, packet, cn)
        if identity == "":
            conn.refuse_connect(ReasonCode.NOT_AUTHORIZED, "no_identity")
            return
        conn.conn.device_id = identity
        if packet.will is not None:
            refusal = self._refuse_will(packet.will)
            if refusal is not None:
                conn.refuse_connect(*refusal)
                return
        client_id, properties = handshake.client_identifier(packet)
        principal = handshake.principal(settings, packet, identity, cn)
        holder = mqtt_port.sessions.identity_of(client_id)
        if holder is not None and principal is not None and holder != principal:
            # Another device's client id: taking its session over would cut that device off.
            conn.refuse_connect(ReasonCode.NOT_AUTHORIZED, "client_id_in_use")
            return
        session, present, previous = mqtt_port.sessions.attach(
            conn, client_id, principal, packet.clean_start, handshake.session_expiry_s(packet),
            min(settings.receive_maximum, MAX_QOS2_IDS),
        )  # fmt: skip
        if previous is not None:
            previous.taken_over()
        mqtt_port.wills.cancel(client_id)  # back within its will's delay
        self.will = handshake.pending_will(packet, session.expiry_s)
        conn.session = session
        conn.queue_control(conn.mqtt.connack(present, ReasonCode.SUCCESS, properties))

    def _certificate_cn(self) -> str | None:
        return common_name(self._conn.conn.peer_certificate())

    def _refuse_will(self, will: Will) -> tuple[ReasonCode, str] | None:
        """Why the CONNECT's will could not be stored, as a CONNACK refusal; None if it can.
        Refused at once rather than dropped silently when the connection ends."""
        conn = self._conn
        if len(will.topic) + len(will.payload) > conn.port.settings.max_will_bytes:
            return ReasonCode.QUOTA_EXCEEDED, "will_too_large"
        resolved = conn.topics.resolve(will.topic)
        if resolved is None:  # (3.1.1 has no code for a topic: "not authorized")
            return ReasonCode.TOPIC_NAME_INVALID if conn.v5 else ReasonCode.NOT_AUTHORIZED, (
                "will_unrouted_topic"
            )
        if conn.publisher(resolved) is None:
            return ReasonCode.NOT_AUTHORIZED, "will_identity_mismatch"
        return None

    def taken_over(self) -> None:
        """A new connection with this client id took the session over: its will is stored now
        unless it has a delay, which the client came back within (5.0 §3.1.3.2.2; stored at
        the close, it would outlive the new connection's cancel)."""
        will, self.will = self.will, None
        if will is not None and will[2] <= 0:
            self.publish_will(*will)

    def publish_will(self, topic: str, payload: bytes, delay_s: float) -> None:
        """The connection ended without a normal DISCONNECT: store its will, now or once its
        delay has passed (unless the client id connects again meanwhile)."""
        conn = self._conn
        port, mqtt_port = conn.port, conn.mqtt_port
        self.will = None
        if conn.topics.router is not mqtt_port.router:
            conn.topics = TopicCache(mqtt_port.router)
        resolved = conn.topics.resolve(topic)
        device_id = None if resolved is None else conn.publisher(resolved)
        if resolved is None or device_id is None:  # the routes were reloaded since the CONNECT
            port.stats.rejects["will_unrouted_topic"] += 1
            return
        event = will_event(resolved, device_id, payload, conn.v5, conn.conn.peer)

        def store() -> None:
            source, stats = conn.counted(resolved, event)
            stats.records += port.pipeline.accept(source, event, None)
            mqtt_port.mqtt_stats.wills += 1

        if delay_s > 0 and conn.session is not None:
            mqtt_port.wills.defer(conn.session.client_id, time.monotonic() + delay_s, store)
        else:
            store()
