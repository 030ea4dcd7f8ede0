"""One MQTT device connection: CONNECT and credentials, PUBLISH to the pipeline, acknowledgements
under the listener's ACK policy, the command-topic SUBSCRIBE, keep-alive.

Many packets per read, one write of the replies they earned (the port's reply batcher).
A QoS 1 PUBACK or QoS 2 PUBREC leaves only once the frame is accepted under the ACK policy;
while the memory budget is full the socket is not read and PUBACKs are held, so the device's
in-flight window (5.0 Receive Maximum) fills and it stops sending. The peer's mistakes cost only
this connection, answered with the reason code the protocol has for them.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import TYPE_CHECKING

import structlog

from gateway.common.stats import ListenerStats
from gateway.pipeline.accept import FrameSource
from gateway.transport.connection import DeviceConnection
from gateway.transport.mqtt.routes import Resolved, TopicCache
from gateway.transport.mqtt.sessions import MAX_QOS2_IDS, SESSION_EXPIRY_NEVER, Session
from gateway.transport.tls import common_name
from parser.events import Frame
from parser.messages import message_frame
from parser.mqtt.errors import MqttError
from parser.mqtt.packets import (
    MQTT_5,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    Properties,
    Publish,
    PubRel,
    ReasonCode,
    Subscribe,
    Unsubscribe,
    Will,
)

if TYPE_CHECKING:
    from gateway.transport.mqtt.listener import MqttListener

log = structlog.get_logger("gateway.transport.mqtt")

# Why a payload is not one frame (message_frame's rejects), as the 5.0 reason code of the
# acknowledgement of a message kept anyway; any other reason is 0x99.
_PAYLOAD_REFUSALS = {"identity_mismatch": ReasonCode.NOT_AUTHORIZED}


class MqttConnection(DeviceConnection):
    __slots__ = (
        "_authenticating",
        "_checking",
        "_held",
        "_pubacks_owed",
        "_pubrec_owed",
        "_sources",
        "_topics",
        "_will",
        "listener",
        "mqtt",
        "session",
    )

    def __init__(self, listener: MqttListener) -> None:
        super().__init__(listener)
        self.listener = listener
        self.mqtt = listener.codec_connection()
        self.session: Session | None = None
        self._topics = TopicCache(listener.router)
        self._sources: dict[str, FrameSource] = {}
        self._pubrec_owed: dict[int, float] = {}  # QoS 2 packet id -> arrival, PUBREC unsent
        self._pubacks_owed: list[int] = []  # accepted QoS 1 packet ids of this read, in order
        self._authenticating = False
        self._held: list[Packet] = []  # packets after a CONNECT whose password is being checked
        # That CONNECT: kept here, not bound into the check's callback, where an error would
        # log it (asyncio prints a failing callback's arguments) and so its password.
        self._checking: Connect | None = None
        # Of the CONNECT's will, what storing it needs: topic, payload, delay (s).
        self._will: tuple[str, bytes, float] | None = None

    # -- DeviceConnection hooks ---------------------------------------------------------------

    def _peer_known(self) -> None:
        self._sources.clear()

    def _blocked(self) -> bool:
        return self._authenticating

    def _hold_replies(self) -> bool:
        # The budget is full: PUBACKs wait too, so the device's window fills and it pauses.
        return self.paused

    def _feed(self, data: bytes) -> None:
        try:
            packets = self.mqtt.feed(data)
        except MqttError as exc:
            self._handle(list(exc.packets))
            self._refused_by_codec(exc)
            return
        self._handle(packets)

    def unblocked(self) -> None:
        if self._held and not self._authenticating:
            held, self._held = self._held, []
            self._handle(held)
        super().unblocked()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.session is not None:
            self.listener.sessions.detach(self.session, self, time.monotonic())
        if self._will is not None and self.close_reason != "shutdown":
            # Not at a gateway shutdown: the device has not gone away, it reconnects to the
            # next gateway (and the pipeline is closing).
            self._publish_will(*self._will)

    def close(self, reason: str, *, abort: bool = False, code: ReasonCode | None = None) -> None:
        """Close; a 5.0 client is told why with a DISCONNECT first (``code``)."""
        transport = self.transport
        if code is None and reason == "shutdown":
            code = ReasonCode.SERVER_SHUTTING_DOWN
        if code is not None and not abort and transport is not None and not transport.is_closing():
            self._flush()  # keep the acknowledgements owed ahead of the DISCONNECT
            self._write(self.mqtt.disconnect(code))
            if self.mqtt.protocol_level == MQTT_5:
                self.listener.mqtt_stats.reason_codes["DISCONNECT", code.name] += 1
        super().close(reason, abort=abort)

    # -- deadlines (the listener's sweep) ------------------------------------------------------

    def silence_allowed_s(self) -> float:
        settings = self.listener.settings
        if self._authenticating:
            return settings.connect_timeout_s  # since the CONNECT: waiting for a password check
        keep_alive_s = self.mqtt.keep_alive_s
        if keep_alive_s is None:
            return settings.connect_timeout_s
        # [MQTT-3.1.2-24]: one and a half times the keep-alive.
        return keep_alive_s * 1.5 if keep_alive_s else settings.idle_timeout_s

    def expire(self) -> None:
        if self._authenticating:  # its check is queued behind others: too busy to answer
            self._authenticating = False  # (the check's late answer finds the connection closed)
            self._refuse_connect(ReasonCode.SERVER_BUSY, "auth_timeout")
        elif self.mqtt.protocol_level is None:
            self.close("connect_timeout")
        else:
            self.close("keep_alive_timeout", code=ReasonCode.KEEP_ALIVE_TIMEOUT)

    # -- packets -------------------------------------------------------------------------------

    def _handle(self, packets: list[Packet]) -> None:
        if packets:  # any whole packet is activity ([MQTT-3.1.2-24]); trickled bytes are not
            self.last_activity = time.monotonic()
        try:  # around the loop, not per packet: costs nothing in 3.11 unless raised
            for index, packet in enumerate(packets):
                if self._authenticating:
                    self._held.extend(packets[index:])
                    break
                transport = self.transport
                if transport is None or transport.is_closing():
                    break
                match packet:
                    case Publish():
                        self._publish(packet)
                    case PubRel():
                        self._pubrel(packet)
                    case PingReq():
                        self._queue_control(self.mqtt.pingresp())
                    case Connect():
                        self._connect(packet)
                    case Subscribe():
                        self._subscribe(packet)
                    case Unsubscribe():
                        self._unsubscribe(packet)
                    case Disconnect():
                        if packet.reason_code != ReasonCode.DISCONNECT_WITH_WILL_MESSAGE:
                            self._will = None  # a normal DISCONNECT discards it (§3.14.4)
                        self.close_reason = "client_disconnect"
                        self._flush()  # what this read earned is acknowledged before the close
                        transport.close()
                    case _:  # PUBACK, PUBREC, PUBCOMP: the gateway never sent a PUBLISH
                        self.close("mqtt_protocol_error", code=ReasonCode.PROTOCOL_ERROR)
        except Exception:
            self._failed("mqtt_internal_error")
        self._queue_owed_pubacks()

    def _failed(self, reason: str) -> None:
        """A bug (a codec's, or ours) costs this connection, never the process nor what the
        connection is owed: ``close`` writes the acknowledgements earned so far first. Logged
        with the traceback only: packets are not shown (a CONNECT carries a password)."""
        log.exception("mqtt connection failed", peer=self.peer, device_id=self.device_id)
        self.listener.stats.rejects[reason] += 1
        # 5.0 says why after its CONNACK ([MQTT-3.2.0-1]: nothing may come before it).
        code = ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR if self.session is not None else None
        self.close(reason, code=code)

    def _refused_by_codec(self, exc: MqttError) -> None:
        reason = f"mqtt_{exc.reason_code.name.lower()}"
        self.listener.stats.rejects[reason] += 1
        log.debug("mqtt refused", peer=self.peer, device_id=self.device_id, detail=exc.detail)
        if exc.reply and self.transport is not None and not self.transport.is_closing():
            self._flush()
            self._write(exc.reply)
            if self.mqtt.protocol_level == MQTT_5 or self.mqtt.protocol_level is None:
                packet = "DISCONNECT" if self.session is not None else "CONNACK"
                self.listener.mqtt_stats.reason_codes[packet, exc.reason_code.name] += 1
        self.close(reason)

    # -- CONNECT -------------------------------------------------------------------------------

    def _connect(self, connect: Connect) -> None:
        if self.listener.settings.auth != "password":
            self._connected(connect, True)
            return
        checker = self.listener.passwords
        user, password = connect.username, connect.password
        if checker is None or user is None or password is None:
            self._connected(connect, False)
            return
        if checker.remembered(user, password):
            self._connected(connect, True)
            return
        if checker.full:  # guessing must not queue unbounded work (nor wait unboundedly)
            self._refuse_connect(ReasonCode.SERVER_BUSY, "auth_busy")
            return
        # scrypt runs in a thread: read nothing more (and hold what was read) meanwhile.
        self._authenticating = True
        if self.transport is not None and not self.paused:
            self.transport.pause_reading()
        self._checking = connect
        checker.check(user, password).add_done_callback(self._checked)

    def _checked(self, task: asyncio.Future[bool]) -> None:
        connect, self._checking = self._checking, None
        self._authenticating = False
        if connect is None or self.transport is None or self.transport.is_closing():
            return
        try:
            self._connected(
                connect, not task.cancelled() and task.exception() is None and task.result()
            )
            if not self.paused:
                self.unblocked()
        except Exception:  # else the socket stays unread, CONNACK unsent, until the sweep
            self._failed("mqtt_internal_error")

    def _connected(self, connect: Connect, authenticated: bool) -> None:
        listener = self.listener
        if not authenticated:
            self._refuse_connect(ReasonCode.BAD_USER_NAME_OR_PASSWORD, "bad_credentials")
            return
        identity = self._identity(connect)
        if identity == "":
            self._refuse_connect(ReasonCode.NOT_AUTHORIZED, "no_identity")
            return
        self.device_id = identity
        if connect.will is not None:
            refusal = self._refuse_will(connect.will)
            if refusal is not None:
                self._refuse_connect(*refusal)
                return
        client_id = connect.client_id
        properties = Properties()
        if not client_id:  # the server assigns one ([MQTT-3.1.3-6], 5.0 §3.2.2.3.7)
            client_id = f"gw-{secrets.token_hex(8)}"
            if connect.protocol_level == MQTT_5:
                properties = Properties(assigned_client_identifier=client_id)
        principal = self._principal(connect, identity)
        holder = listener.sessions.identity_of(client_id)
        if holder is not None and principal is not None and holder != principal:
            # Another device's client id: taking its session over would cut that device off.
            self._refuse_connect(ReasonCode.NOT_AUTHORIZED, "client_id_in_use")
            return
        session, present, previous = listener.sessions.attach(
            self, client_id, principal, connect.clean_start, self._expiry_s(connect),
            min(listener.settings.receive_maximum, MAX_QOS2_IDS),
        )  # fmt: skip
        if isinstance(previous, MqttConnection):
            previous.taken_over()
        listener.wills.cancel(client_id)  # back within its will's delay
        will = connect.will
        if will is not None:
            delay_s = float(will.properties.will_delay_interval or 0)
            self._will = (will.topic, will.payload, min(delay_s, session.expiry_s))
        self.session = session
        self._queue_control(self.mqtt.connack(present, ReasonCode.SUCCESS, properties))

    def _expiry_s(self, connect: Connect) -> float:
        """How long the session outlives this connection (capped by the session store)."""
        if connect.protocol_level == MQTT_5:
            expiry = connect.properties.session_expiry_interval or 0
            return float("inf") if expiry == SESSION_EXPIRY_NEVER else float(expiry)
        return 0.0 if connect.clean_start else float("inf")

    def _identity(self, connect: Connect) -> str | None:
        """The device id this connection speaks for (``""``: none where one is required;
        ``None``: from the topics, bound by the first one used)."""
        source = self.listener.settings.identity
        if source == "client_id":
            return connect.client_id
        if source == "username":
            return connect.username or ""
        if source == "certificate":
            return common_name(self.peer_certificate()) or ""
        return None

    def _principal(self, connect: Connect, identity: str | None) -> str | None:
        """Who may hold this client id (take its session over): the proven credential where
        there is one (also with allow_any_identity), else the identity (``None`` with identity
        from the topics and no auth: nothing is proven, anyone may)."""
        auth = self.listener.settings.auth
        if auth == "password":
            return connect.username
        if auth == "certificate":
            return common_name(self.peer_certificate())
        return identity

    def _refuse_connect(self, code: ReasonCode, reason: str) -> None:
        self.listener.stats.rejects[reason] += 1
        self.listener.mqtt_stats.reason_codes["CONNACK", code.name] += 1
        self._flush()
        self._write(self.mqtt.connack(False, code))
        self.close(reason)

    # -- PUBLISH -------------------------------------------------------------------------------

    def _publish(self, publish: Publish) -> None:
        listener = self.listener
        session = self.session
        assert session is not None  # the codec lets nothing but CONNECT come first
        qos, packet_id = publish.qos, publish.packet_id
        listener.mqtt_stats.publishes[qos] += 1
        now = time.monotonic()
        if qos == 2 and packet_id in session.qos2:
            # A resend of a message already taken: answer it, do not store it twice.
            if session.qos2[packet_id]:
                self.send_reply(self.mqtt.pubrec(packet_id), now)
            else:
                self._pubrec_owed[packet_id] = now
            return
        if self._topics.router is not listener.router:  # reloaded: new routes from now on
            self._topics = TopicCache(listener.router)
        resolved = self._topics.resolve(publish.topic)
        if resolved is None:
            self._refuse_publish(publish, ReasonCode.TOPIC_NAME_INVALID, "unrouted_topic")
            return
        device_id = self._publisher(resolved)
        if device_id is None:
            self._refuse_publish(publish, ReasonCode.NOT_AUTHORIZED, "identity_mismatch")
            return
        event, code = self._frame(resolved, device_id, publish.payload)
        source, stats = self._counted(resolved, event)
        accept = listener.pipeline.accept
        if qos == 0:
            stats.records += accept(source, event, None)
        elif qos == 1 or code:
            # (A QoS 2 message answered with an error code ends at its PUBREC, 5.0 §4.3.3: no
            # PUBREL follows, so the session must not keep its packet id.)
            if listener.delivered:
                # PUBACKs leave in the order of their PUBLISHes ([MQTT-4.6.0-2]) whatever order
                # the streams finish in; a message the sink gave up on closes (frame_lost).
                ack = self._acknowledgement(packet_id, qos, code)
                stats.records += accept(source, event, self.reply_order.ticket(ack, now))
            else:
                stats.records += accept(source, event, None)
                if code:
                    self.send_reply(self._acknowledgement(packet_id, qos, code), now)
                else:
                    self._pubacks_owed.append(packet_id)
                    listener.stats.ack_latency.observe(time.monotonic() - now)
        else:
            session.qos2_started(packet_id)
            self._pubrec_owed[packet_id] = now
            if listener.delivered:  # PUBRECs in the order of their PUBLISHes ([MQTT-4.6.0-3])
                qos2 = session.ticket(packet_id, self.reply_order.reserve())
                stats.records += accept(source, event, qos2)
            else:
                stats.records += accept(source, event, None)
                session.accepted(packet_id)

    def _frame(
        self, resolved: Resolved, device_id: str, payload: bytes
    ) -> tuple[Frame, ReasonCode]:
        """A message's frame and the reason code of its acknowledgement."""
        event = message_frame(resolved.route.codec, device_id, payload)
        if isinstance(event, Frame):
            return event, ReasonCode.SUCCESS
        # Not one frame of the codec: kept anyway as a frame that did not decode (a raw record
        # plus an errors/ record with the reason, as TCP keeps one, to re-parse after a codec
        # fix) and acknowledged, else a device that resends it on every reconnect would loop
        # forever (3.1.1 has no negative acknowledgement but a close). 5.0 is told why in the
        # reason code; the message still counts as handled.
        code = ReasonCode.SUCCESS
        if self.mqtt.protocol_level == MQTT_5:
            code = _PAYLOAD_REFUSALS.get(event.reason, ReasonCode.PAYLOAD_FORMAT_INVALID)
        return Frame(device_id, payload, b"", (), event.reason, event.detail), code

    def _counted(self, resolved: Resolved, event: Frame) -> tuple[FrameSource, ListenerStats]:
        """Count a message's frame under its route's codec; where its records come from."""
        listener = self.listener
        codec = resolved.route.codec.name
        stats = listener.codec_stats[codec]
        # Payload bytes are counted by the route's codec, like the frames they carry (the
        # listener's own series, codec "mqtt", keeps the rest: the protocol's bytes).
        size = len(event.payload)
        stats.bytes_in += size
        listener.stats.bytes_in -= size
        self.frames += 1
        stats.frames += 1
        if event.error_code is not None:
            stats.decode_errors[event.error_code] += 1
        source = self._sources.get(codec)
        if source is None:
            source = self._sources[codec] = FrameSource(codec, "mqtt", self.peer)
        return source, stats

    # -- will ----------------------------------------------------------------------------------

    def _refuse_will(self, will: Will) -> tuple[ReasonCode, str] | None:
        """Why the CONNECT's will could not be stored, as a CONNACK refusal; None if it can.
        Refused at once rather than dropped silently when the connection ends."""
        if len(will.topic) + len(will.payload) > self.listener.settings.max_will_bytes:
            return ReasonCode.QUOTA_EXCEEDED, "will_too_large"
        v5 = self.mqtt.protocol_level == MQTT_5
        resolved = self._topics.resolve(will.topic)
        if resolved is None:  # (3.1.1 has no code for a topic: "not authorized")
            return ReasonCode.TOPIC_NAME_INVALID if v5 else ReasonCode.NOT_AUTHORIZED, (
                "will_unrouted_topic"
            )
        if self._publisher(resolved) is None:
            return ReasonCode.NOT_AUTHORIZED, "will_identity_mismatch"
        return None

    def taken_over(self) -> None:
        """A new connection with this client id took the session over: close. Its will is
        stored now unless it has a delay, which the client came back within (5.0 §3.1.3.2.2;
        stored at the close, it would outlive the new connection's cancel)."""
        will, self._will = self._will, None
        if will is not None and will[2] <= 0:
            self._publish_will(*will)
        self.close("session_taken_over", code=ReasonCode.SESSION_TAKEN_OVER)

    def _publish_will(self, topic: str, payload: bytes, delay_s: float) -> None:
        """The connection ended without a normal DISCONNECT: store its will, now or once its
        delay has passed (unless the client id connects again meanwhile)."""
        listener = self.listener
        self._will = None
        if self._topics.router is not listener.router:
            self._topics = TopicCache(listener.router)
        resolved = self._topics.resolve(topic)
        device_id = None if resolved is None else self._publisher(resolved)
        if resolved is None or device_id is None:  # the routes were reloaded since the CONNECT
            listener.stats.rejects["will_unrouted_topic"] += 1
            return
        try:
            event, _ = self._frame(resolved, device_id, payload)
        except Exception as exc:
            # A codec bug: nobody is left to resend the will, so it is kept as a frame that
            # did not decode (as the bridge keeps such a message), not lost.
            log.exception("mqtt will failed to decode", peer=self.peer, device_id=device_id)
            detail = f"{type(exc).__name__}: {exc}"
            event = Frame(device_id, payload, b"", (), "codec_error", detail)

        def store() -> None:
            source, stats = self._counted(resolved, event)
            stats.records += listener.pipeline.accept(source, event, None)
            listener.mqtt_stats.wills += 1

        if delay_s > 0 and self.session is not None:
            listener.wills.defer(self.session.client_id, time.monotonic() + delay_s, store)
        else:
            store()

    def _publisher(self, resolved: Resolved) -> str | None:
        """The device a message is stored under, or None if this connection may not speak
        for the device its topic names."""
        named = resolved.topic_device_id
        if named is None:
            return self.device_id
        return named if self._claim(named) else None

    def _claim(self, device_id: str) -> bool:
        """Whether this connection speaks for ``device_id``; with identity from the topic, the
        first topic binds the connection to its device."""
        if self.device_id is None and self.listener.settings.identity == "topic":
            self.device_id = device_id
        return device_id == self.device_id

    def _refuse_publish(self, publish: Publish, code: ReasonCode, reason: str) -> None:
        """5.0 QoS 1/2: a negative acknowledgement, and the connection goes on. Otherwise the
        protocol has no way to say no but closing (5.0 with a DISCONNECT saying why)."""
        listener = self.listener
        listener.stats.rejects[reason] += 1
        log.debug("publish refused", peer=self.peer, device_id=self.device_id, reason=reason)
        if publish.qos and self.mqtt.protocol_level == MQTT_5:
            if publish.qos == 1:
                reply, packet = self.mqtt.puback(publish.packet_id, code), "PUBACK"
            else:
                reply, packet = self.mqtt.pubrec(publish.packet_id, code), "PUBREC"
            listener.mqtt_stats.reason_codes[packet, code.name] += 1
            self._queue_control(reply)
        else:
            self.close(reason, code=code)

    def _acknowledgement(self, packet_id: int, qos: int, code: ReasonCode) -> bytes:
        """The PUBACK (QoS 1) or error PUBREC (QoS 2) a kept message is owed."""
        if qos == 1:
            reply, packet = self.mqtt.puback(packet_id, code), "PUBACK"
        else:
            reply, packet = self.mqtt.pubrec(packet_id, code), "PUBREC"
        if code:
            self.listener.mqtt_stats.reason_codes[packet, code.name] += 1
        return reply

    def frame_lost(self) -> None:
        """A message of this connection was given up on by the sink (dead-lettered): it will
        never be acknowledged, and its in-flight slot never freed. A 5.0 client resends
        unacknowledged messages only when it reconnects ([MQTT-4.4.0-1]), so close (after the
        acknowledgements already released): the device reconnects and resends what was not
        acknowledged, as it does after any outage."""
        self.close("frame_lost", code=ReasonCode.SERVER_BUSY)

    def _queue_owed_pubacks(self) -> None:
        """The PUBACKs a read owes, encoded as one buffer: one encode per read, not three
        Python calls per message (they were a fifth of an ``accepted`` message's cost)."""
        if self._pubacks_owed:
            owed, self._pubacks_owed = self._pubacks_owed, []
            super()._queue_reply(self.mqtt.pubacks(owed), len(owed))

    def _queue_reply(self, reply: bytes, count: int = 1) -> None:
        self._queue_owed_pubacks()  # replies keep the order of the packets they answer
        super()._queue_reply(reply, count)

    def _queue_control(self, reply: bytes) -> None:
        """A reply that acknowledges no data (CONNACK, SUBACK, PINGRESP, PUBCOMP, a refusal):
        not counted in ``gateway_acks_total``, which counts the acknowledgements of messages
        (PUBACK, PUBREC), as it counts the ACKs of frames for TCP."""
        self._queue_reply(reply, 0)

    def _flush(self) -> None:
        self._queue_owed_pubacks()
        super()._flush()

    def qos2_written(self, packet_id: int, number: int | None = None) -> None:
        """The session's QoS 2 message is accepted under the policy: PUBREC if this connection
        owes one (the device sent, or resent, the PUBLISH here); in its place ``number`` among
        the replies when it was received on this connection (it then owes it: a PUBREL before
        the PUBREC closes the connection)."""
        accepted_at = self._pubrec_owed.pop(packet_id, None)
        if accepted_at is None:
            return
        if number is None:
            self.send_reply(self.mqtt.pubrec(packet_id), accepted_at)
        else:
            self.reply_order.release(number, self.mqtt.pubrec(packet_id), accepted_at)

    def qos2_lost(self, packet_id: int) -> None:
        """The session's QoS 2 message was lost to the sink: no PUBREC for it (its resend is
        taken as a new message). If this connection owes it one, the device waits for it: it
        must reconnect to resend (see :meth:`frame_lost`)."""
        if self._pubrec_owed.pop(packet_id, None) is not None:
            self.frame_lost()

    def _pubrel(self, pubrel: PubRel) -> None:
        assert self.session is not None
        if self.session.qos2.get(pubrel.packet_id) is False:
            # Released before its PUBREC was sent: the client cannot have had it (5.0 §4.3.3);
            # taken, the message's place among the replies would never be filled.
            self.close("mqtt_protocol_error", code=ReasonCode.PROTOCOL_ERROR)
            return
        known = self.session.qos2.pop(pubrel.packet_id, None) is not None
        self._pubrec_owed.pop(pubrel.packet_id, None)
        code = ReasonCode.SUCCESS if known else ReasonCode.PACKET_IDENTIFIER_NOT_FOUND
        self._queue_control(self.mqtt.pubcomp(pubrel.packet_id, code))

    # -- SUBSCRIBE -----------------------------------------------------------------------------

    def _subscribe(self, subscribe: Subscribe) -> None:
        """Only the device's own command topic is granted (and kept in its session)."""
        session = self.session
        assert session is not None
        router, stats = self.listener.router, self.listener.mqtt_stats
        codes = []
        for sub in subscribe.subscriptions:
            device_id = router.command_device(sub.topic_filter)
            if device_id is not None and self._claim(device_id):
                session.subscriptions[sub.topic_filter] = sub.qos
                codes.append(ReasonCode(sub.qos))  # granted QoS 0, 1 or 2
            else:
                codes.append(ReasonCode.NOT_AUTHORIZED)
                stats.reason_codes["SUBACK", ReasonCode.NOT_AUTHORIZED.name] += 1
                self.listener.stats.rejects["subscribe_refused"] += 1
        self._queue_control(self.mqtt.suback(subscribe.packet_id, codes))

    def _unsubscribe(self, unsubscribe: Unsubscribe) -> None:
        session = self.session
        assert session is not None
        codes = [
            ReasonCode.SUCCESS
            if session.subscriptions.pop(f, None) is not None
            else ReasonCode.NO_SUBSCRIPTION_EXISTED
            for f in unsubscribe.topic_filters
        ]
        self._queue_control(self.mqtt.unsuback(unsubscribe.packet_id, codes))
