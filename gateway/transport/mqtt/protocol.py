"""One MQTT device connection's handler (its
:class:`~gateway.transport.connection.DeviceHandler`): PUBLISH to the pipeline, acknowledgements
under the listener's ACK policy, the command-topic SUBSCRIBE, keep-alive; its CONNECT and will
are its :class:`~gateway.transport.mqtt.connect.ConnectFlow`'s, its PUBRECs and PUBRELs its
:class:`~gateway.transport.mqtt.qos2.Qos2Exchange`'s.

Many packets per read, one write of the replies they earned (the port's reply batcher).
A QoS 1 PUBACK or QoS 2 PUBREC leaves only once the frame is accepted under the ACK policy;
while the memory budget is full the socket is not read and PUBACKs are held, so the device's
in-flight window (5.0 Receive Maximum) fills and it stops sending. The peer's mistakes cost only
this connection, answered with the reason code the protocol has for them.
"""

from __future__ import annotations

import time
from typing import ClassVar

import structlog

from gateway.common.stats import ListenerStats
from gateway.common.tickets import Ticket
from gateway.pipeline.accept import FrameSource
from gateway.transport.connection import DeviceConnection
from gateway.transport.mqtt import handshake
from gateway.transport.mqtt.connect import ConnectFlow
from gateway.transport.mqtt.messages import (
    acknowledgement,
    granted,
    message_event,
    unsubscribed,
)
from gateway.transport.mqtt.port import MqttPortState, codec_connection
from gateway.transport.mqtt.qos2 import Qos2Exchange
from gateway.transport.mqtt.routes import Resolved, TopicCache
from gateway.transport.mqtt.sessions import Session
from gateway.transport.mqtt.settings import MqttListenerSettings
from gateway.transport.port import PortState
from gateway.transport.reply_order import PendingReply, ReplyOrder
from parser.events import Frame
from parser.mqtt.errors import MqttError
from parser.mqtt.packets import (
    MQTT_5,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    Publish,
    PubRel,
    ReasonCode,
    Subscribe,
    Unsubscribe,
)

log = structlog.get_logger("gateway.transport.mqtt")


MqttSocket = DeviceConnection[MqttListenerSettings, "MqttConnection"]


class MqttConnection:
    """What one MQTT device socket (``conn``) means; ``mqtt_port`` is what it shares with the
    port's others."""

    __slots__ = (
        "_close_code",
        "_held",
        "_pubacks_owed",
        "_sources",
        "conn",
        "connect_flow",
        "mqtt",
        "mqtt_port",
        "port",
        "qos2",
        "session",
        "topics",
    )

    # While paused, PUBACKs wait too: the device's in-flight window fills and it stops sending.
    hold_replies: ClassVar[bool] = True

    def __init__(self, conn: MqttSocket, mqtt_port: MqttPortState) -> None:
        self.conn = conn
        self.port: PortState[MqttListenerSettings, MqttSocket] = conn.port
        self.mqtt_port = mqtt_port
        port = conn.port
        self.mqtt = codec_connection(port.settings)
        self._close_code: ReasonCode | None = None  # the next close's DISCONNECT
        self.session: Session | None = None
        self.topics = TopicCache(mqtt_port.router)
        self._sources: dict[str, FrameSource] = {}
        self._pubacks_owed: list[int] = []  # accepted QoS 1 packet ids of this read, in order
        self._held: list[Packet] = []  # packets after a CONNECT whose password is being checked
        self.connect_flow = ConnectFlow(self)
        self.qos2 = Qos2Exchange(self)

    @property
    def reply_order(self) -> ReplyOrder:
        """The connection's (the QoS 2 exchange releases PUBRECs in it), made on first use:
        an idle connection has none."""
        return self.conn.reply_order

    # -- DeviceHandler -----------------------------------------------------------------------

    def opened(self) -> None:
        pass  # the codec's connection was made with the handler

    def peer_known(self) -> None:
        self._sources.clear()

    def eof(self) -> None:
        pass  # the connection closes its side: a will is the close's business (lost)

    def feed(self, data: bytes) -> None:
        try:
            packets = self.mqtt.feed(data)
        except MqttError as exc:
            self._handle(list(exc.packets))
            self._refused_by_codec(exc)
            return
        self._handle(packets)

    def unblocked(self) -> None:
        if self._held and not self.conn.held:
            held, self._held = self._held, []
            self._handle(held)

    def lost(self) -> None:
        if self.session is not None:
            self.mqtt_port.sessions.detach(self.session, self, time.monotonic())
        will = self.connect_flow.will
        if will is not None and self.conn.close_reason != "shutdown":
            # Not at a gateway shutdown: the device has not gone away, it reconnects to the
            # next gateway (and the pipeline is closing).
            self.connect_flow.publish_will(*will)

    def close(self, reason: str, *, abort: bool = False, code: ReasonCode | None = None) -> None:
        """Close; a 5.0 client is told why with a DISCONNECT first (``code``)."""
        self._close_code = code
        self.conn.close(reason, abort=abort)

    def closing_bytes(self, reason: str) -> bytes:
        """The DISCONNECT written after the acknowledgements owed, when a code says why."""
        code, self._close_code = self._close_code, None
        if code is None and reason == "shutdown":
            code = ReasonCode.SERVER_SHUTTING_DOWN
        if code is None:
            return b""
        if self.mqtt.protocol_level == MQTT_5:
            self.mqtt_port.mqtt_stats.reason_codes["DISCONNECT", code.name] += 1
        return self.mqtt.disconnect(code)

    @property
    def v5(self) -> bool:
        return self.mqtt.protocol_level == MQTT_5

    # -- deadlines (the listener's sweep) ------------------------------------------------------

    def silence_allowed_s(self) -> float:
        return handshake.silence_allowed_s(
            self.port.settings, self.mqtt.keep_alive_s, self.conn.held
        )

    def expire(self) -> None:
        flow = self.conn.flow
        if flow.held:  # its check is queued behind others: too busy to answer
            flow.held = False  # (the check's late answer finds the connection closed)
            self.refuse_connect(ReasonCode.SERVER_BUSY, "auth_timeout")
        elif self.mqtt.protocol_level is None:
            self.close("connect_timeout")
        else:
            self.close("keep_alive_timeout", code=ReasonCode.KEEP_ALIVE_TIMEOUT)

    # -- packets -------------------------------------------------------------------------------

    def _handle(self, packets: list[Packet]) -> None:
        conn = self.conn
        if packets:  # any whole packet is activity ([MQTT-3.1.2-24]); trickled bytes are not
            conn.last_activity = time.monotonic()
        # The QoS 1 PUBLISHes of a read that wait for the sink share one ticket and one PUBACK
        # buffer (as a TCP read's frames do, TcpDeviceHandler.feed); the run ends before any
        # other packet, so acknowledgements keep the order of the packets they answer.
        run: Ticket[PendingReply] | None = None
        owed: list[int] = []
        try:  # around the loop, not per packet: costs nothing in 3.11 unless raised
            for index, packet in enumerate(packets):
                if conn.held:  # (a CONNECT may hold it: its password is being checked)
                    self._held.extend(packets[index:])
                    break
                transport = conn.transport
                if transport is None or transport.is_closing():
                    break
                if type(packet) is Publish:
                    run = self._publish(packet, run, owed)
                    continue
                if run is not None:
                    self._number(run, owed)
                    run = None
                match packet:
                    case PubRel():
                        self.qos2.released(packet)
                    case PingReq():
                        self.queue_control(self.mqtt.pingresp())
                    case Connect():
                        self.connect_flow.receive(packet)
                    case Subscribe():
                        self._subscribe(packet)
                    case Unsubscribe():
                        self._unsubscribe(packet)
                    case Disconnect():
                        if packet.reason_code != ReasonCode.DISCONNECT_WITH_WILL_MESSAGE:
                            # A normal DISCONNECT discards the will (§3.14.4).
                            self.connect_flow.will = None
                        conn.close_reason = "client_disconnect"
                        conn.flush()  # what this read earned is acknowledged before the close
                        transport.close()
                    case _:  # PUBACK, PUBREC, PUBCOMP: the gateway never sent a PUBLISH
                        self.close("mqtt_protocol_error", code=ReasonCode.PROTOCOL_ERROR)
        except Exception:
            self.failed("mqtt_internal_error")
        finally:
            if run is not None:
                self._number(run, owed)
        self._queue_owed_pubacks()

    def _number(self, run: Ticket[PendingReply], owed: list[int]) -> None:
        """A run of PUBLISHes sharing ``run`` ended: their PUBACKs, as one buffer, take their
        place in the order."""
        run.note = (self.reply_order.reserve(), self.mqtt.pubacks(owed), run.note[2], len(owed))
        owed.clear()

    def failed(self, reason: str) -> None:
        """A bug (a codec's, or ours) costs this connection, never the process nor what the
        connection is owed: ``close`` writes the acknowledgements earned so far first. Logged
        with the traceback only: packets are not shown (a CONNECT carries a password)."""
        log.exception("mqtt connection failed", peer=self.conn.peer, device_id=self.conn.device_id)
        self.port.stats.rejects[reason] += 1
        # 5.0 says why after its CONNACK ([MQTT-3.2.0-1]: nothing may come before it).
        code = ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR if self.session is not None else None
        self.close(reason, code=code)

    def _refused_by_codec(self, exc: MqttError) -> None:
        reason = f"mqtt_{exc.reason_code.name.lower()}"
        self.port.stats.rejects[reason] += 1
        log.debug(
            "mqtt refused", peer=self.conn.peer, device_id=self.conn.device_id, detail=exc.detail
        )
        transport = self.conn.transport
        if exc.reply and transport is not None and not transport.is_closing():
            self.conn.flush()
            self.conn.write(exc.reply)
            if self.mqtt.protocol_level == MQTT_5 or self.mqtt.protocol_level is None:
                packet = "DISCONNECT" if self.session is not None else "CONNACK"
                self.mqtt_port.mqtt_stats.reason_codes[packet, exc.reason_code.name] += 1
        self.close(reason)

    def refuse_connect(self, code: ReasonCode, reason: str) -> None:
        self.port.stats.rejects[reason] += 1
        self.mqtt_port.mqtt_stats.reason_codes["CONNACK", code.name] += 1
        self.conn.flush()
        self.conn.write(self.mqtt.connack(False, code))
        self.close(reason)

    def taken_over(self) -> None:
        """A new connection with this client id took the session over: close (its will is
        stored now, or left to its delay)."""
        self.connect_flow.taken_over()
        self.close("session_taken_over", code=ReasonCode.SESSION_TAKEN_OVER)

    # -- PUBLISH -------------------------------------------------------------------------------

    def _publish(
        self, publish: Publish, run: Ticket[PendingReply] | None, owed: list[int]
    ) -> Ticket[PendingReply] | None:
        """Handle a PUBLISH; the ticket of the read's run of QoS 1 PUBLISHes after it."""
        port, mqtt_port = self.port, self.mqtt_port
        session = self.session
        assert session is not None  # the codec lets nothing but CONNECT come first
        qos, packet_id = publish.qos, publish.packet_id
        mqtt_port.mqtt_stats.publishes[qos] += 1
        now = time.monotonic()
        if qos == 2 and packet_id in session.qos2:
            if run is not None:  # (its PUBREC takes the next place in the reply order)
                self._number(run, owed)
            self.qos2.resent(session, packet_id, now)
            return None
        if self.topics.router is not mqtt_port.router:  # reloaded: new routes from now on
            self.topics = TopicCache(mqtt_port.router)
        resolved = self.topics.resolve(publish.topic)
        if resolved is None:
            self._refuse_publish(publish, ReasonCode.TOPIC_NAME_INVALID, "unrouted_topic")
            return run
        device_id = self.publisher(resolved)
        if device_id is None:
            self._refuse_publish(publish, ReasonCode.NOT_AUTHORIZED, "identity_mismatch")
            return run
        event, code = message_event(resolved, device_id, publish.payload, self.v5)
        source, stats = self.counted(resolved, event)
        accept = port.pipeline.accept
        if qos == 0:
            stats.records += accept(source, event, None)
            return run
        if qos == 1 and not code and port.acks_wait:
            if run is None:
                # (numbered, with its PUBACKs, once the run ends: _number)
                run = Ticket(self.reply_order, (-1, b"", now, 0))
            owed.append(packet_id)
            stats.records += accept(source, event, run)
            return run
        if run is not None:
            self._number(run, owed)
        if qos == 1 or code:
            # (A QoS 2 message answered with an error code ends at its PUBREC, 5.0 §4.3.3: no
            # PUBREL follows, so the session must not keep its packet id.)
            if port.acks_wait:
                # PUBACKs leave in the order of their PUBLISHes ([MQTT-4.6.0-2]) whatever order
                # the streams finish in; a message the sink gave up on closes (frame_lost).
                ack = self._acknowledgement(packet_id, qos, code)
                stats.records += accept(source, event, self.reply_order.ticket(ack, now))
            else:
                stats.records += accept(source, event, None)
                if code:
                    self.conn.send_reply(self._acknowledgement(packet_id, qos, code), now)
                else:
                    self._pubacks_owed.append(packet_id)
                    port.stats.ack_latency.observe(time.monotonic() - now)
        else:
            session.qos2_started(packet_id)
            self.qos2.owe(packet_id, now)
            if port.acks_wait:  # PUBRECs in the order of their PUBLISHes ([MQTT-4.6.0-3])
                qos2 = session.ticket(packet_id, self.reply_order.reserve())
                stats.records += accept(source, event, qos2)
            else:
                stats.records += accept(source, event, None)
                session.accepted(packet_id)
        return None

    def counted(self, resolved: Resolved, event: Frame) -> tuple[FrameSource, ListenerStats]:
        """Count a message's frame under its route's codec; where its records come from."""
        port, mqtt_port = self.port, self.mqtt_port
        codec = resolved.route.codec.name
        stats = mqtt_port.codec_stats[codec]
        # Payload bytes are counted by the route's codec, like the frames they carry (the
        # listener's own series, codec "mqtt", keeps the rest: the protocol's bytes).
        size = len(event.payload)
        stats.bytes_in += size
        port.stats.bytes_in -= size
        self.conn.frames += 1
        stats.frames += 1
        if event.error_code is not None:
            stats.decode_errors[event.error_code] += 1
        source = self._sources.get(codec)
        if source is None:
            source = self._sources[codec] = FrameSource(
                codec, "mqtt", self.conn.peer, self.port.acks_delivered
            )
        return source, stats

    # -- who speaks for which device ------------------------------------------------------------

    def publisher(self, resolved: Resolved) -> str | None:
        """The device a message is stored under, or None if this connection may not speak
        for the device its topic names."""
        named = resolved.topic_device_id
        if named is None:
            return self.conn.device_id
        return named if self._claim(named) else None

    def _claim(self, device_id: str) -> bool:
        """Whether this connection speaks for ``device_id``; with identity from the topic, the
        first topic binds the connection to its device."""
        conn = self.conn
        if conn.device_id is None and self.port.settings.identity == "topic":
            conn.device_id = device_id
        return device_id == conn.device_id

    def _refuse_publish(self, publish: Publish, code: ReasonCode, reason: str) -> None:
        """5.0 QoS 1/2: a negative acknowledgement, and the connection goes on. Otherwise the
        protocol has no way to say no but closing (5.0 with a DISCONNECT saying why)."""
        self.port.stats.rejects[reason] += 1
        log.debug(
            "publish refused", peer=self.conn.peer, device_id=self.conn.device_id, reason=reason
        )
        if publish.qos and self.v5:
            self.queue_control(self._acknowledgement(publish.packet_id, publish.qos, code))
        else:
            self.close(reason, code=code)

    def _acknowledgement(self, packet_id: int, qos: int, code: ReasonCode) -> bytes:
        reason_codes = self.mqtt_port.mqtt_stats.reason_codes
        return acknowledgement(self.mqtt, qos, packet_id, code, reason_codes)

    def frame_lost(self) -> None:
        """A message of this connection was given up on by the sink (dead-lettered): it will
        never be acknowledged, and its in-flight slot never freed. A 5.0 client resends
        unacknowledged messages only when it reconnects ([MQTT-4.4.0-1]), so close (after the
        acknowledgements already released): the device reconnects and resends what was not
        acknowledged, as it does after any outage."""
        self.close("frame_lost", code=ReasonCode.SERVER_BUSY)

    def send_reply(self, reply: bytes, accepted_at: float) -> None:
        """(The QoS 2 exchange's) the connection's: counted as an acknowledgement."""
        self.conn.send_reply(reply, accepted_at)

    def _queue_owed_pubacks(self) -> None:
        """The PUBACKs a read owes, encoded as one buffer: one encode per read, not three
        Python calls per message (they were a fifth of an ``accepted`` message's cost)."""
        if self._pubacks_owed:
            owed, self._pubacks_owed = self._pubacks_owed, []
            self.conn.append_reply(self.mqtt.pubacks(owed), len(owed))

    # Replies keep the order of the packets they answer: owed PUBACKs go before any other.
    before_reply = _queue_owed_pubacks

    def queue_control(self, reply: bytes) -> None:
        """A reply that acknowledges no data (CONNACK, SUBACK, PINGRESP, PUBCOMP, a refusal):
        not counted in ``gateway_acks_total``, which counts the acknowledgements of messages
        (PUBACK, PUBREC), as it counts the ACKs of frames for TCP."""
        self.conn.queue_reply(reply, 0)

    # The session's owner (SessionOwner): its QoS 2 news is the exchange's.
    def qos2_written(self, packet_id: int, number: int | None = None) -> None:
        self.qos2.written(packet_id, number)

    def qos2_lost(self, packet_id: int) -> None:
        self.qos2.lost(packet_id)

    # -- SUBSCRIBE -----------------------------------------------------------------------------

    def _subscribe(self, subscribe: Subscribe) -> None:
        assert self.session is not None
        codes = granted(self.mqtt_port.router, self.session, subscribe, self._claim)
        if refused := codes.count(ReasonCode.NOT_AUTHORIZED):
            reasons = self.mqtt_port.mqtt_stats.reason_codes
            reasons["SUBACK", ReasonCode.NOT_AUTHORIZED.name] += refused
            self.port.stats.rejects["subscribe_refused"] += refused
        self.queue_control(self.mqtt.suback(subscribe.packet_id, codes))

    def _unsubscribe(self, unsubscribe: Unsubscribe) -> None:
        assert self.session is not None
        codes = unsubscribed(self.session, unsubscribe)
        self.queue_control(self.mqtt.unsuback(unsubscribe.packet_id, codes))
