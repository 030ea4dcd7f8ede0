"""One MQTT connection's side of the QoS 2 exchange: the PUBRECs it owes and the PUBRELs it
answers. The session keeps which packet ids are taken (:class:`~gateway.transport.mqtt.sessions.
Session`); this keeps which of them this connection owes a PUBREC for, and since when.

Held by each :class:`~gateway.transport.mqtt.protocol.MqttConnection` (composition: it sees the
connection through :class:`Exchanging` only).
"""

from __future__ import annotations

from typing import Protocol

from gateway.transport.mqtt.sessions import Session
from gateway.transport.reply_order import ReplyOrder
from parser.mqtt.connection import MqttServerConnection
from parser.mqtt.packets import PubRel, ReasonCode


class Exchanging(Protocol):
    """What the QoS 2 exchange uses of its connection."""

    mqtt: MqttServerConnection
    session: Session | None

    @property
    def reply_order(self) -> ReplyOrder: ...

    def send_reply(self, reply: bytes, accepted_at: float) -> None: ...
    def queue_control(self, reply: bytes) -> None: ...
    def frame_lost(self) -> None: ...
    def close(
        self, reason: str, *, abort: bool = False, code: ReasonCode | None = None
    ) -> None: ...


class Qos2Exchange:
    """The PUBRECs one connection owes: QoS 2 packet id -> when its PUBLISH arrived."""

    __slots__ = ("_conn", "_pubrec_owed")

    def __init__(self, conn: Exchanging) -> None:
        self._conn = conn
        self._pubrec_owed: dict[int, float] = {}

    def owe(self, packet_id: int, now: float) -> None:
        """A PUBLISH with ``packet_id`` arrived ``now``: its PUBREC leaves once it is accepted."""
        self._pubrec_owed[packet_id] = now

    def resent(self, session: Session, packet_id: int, now: float) -> None:
        """A resend of a message already taken: answer it, do not store it twice."""
        if session.qos2[packet_id]:
            conn = self._conn
            conn.send_reply(conn.mqtt.pubrec(packet_id), now)
        else:
            self._pubrec_owed[packet_id] = now

    def written(self, packet_id: int, number: int | None) -> None:
        """The session's QoS 2 message is accepted under the policy: PUBREC if this connection
        owes one (the device sent, or resent, the PUBLISH here); in its place ``number`` among
        the replies when it was received on this connection (it then owes it: a PUBREL before
        the PUBREC closes the connection)."""
        accepted_at = self._pubrec_owed.pop(packet_id, None)
        if accepted_at is None:
            return
        conn = self._conn
        if number is None:
            conn.send_reply(conn.mqtt.pubrec(packet_id), accepted_at)
        else:
            conn.reply_order.release(number, conn.mqtt.pubrec(packet_id), accepted_at)

    def lost(self, packet_id: int) -> None:
        """The session's QoS 2 message was lost to the sink: no PUBREC for it (its resend is
        taken as a new message). If this connection owes it one, the device waits for it: it
        must reconnect to resend (see ``frame_lost``)."""
        if self._pubrec_owed.pop(packet_id, None) is not None:
            self._conn.frame_lost()

    def released(self, pubrel: PubRel) -> None:
        """A PUBREL: the packet id is free again; PUBCOMP says whether it was known."""
        conn = self._conn
        session = conn.session
        assert session is not None
        if session.qos2.get(pubrel.packet_id) is False:
            # Released before its PUBREC was sent: the client cannot have had it (5.0 §4.3.3);
            # taken, the message's place among the replies would never be filled.
            conn.close("mqtt_protocol_error", code=ReasonCode.PROTOCOL_ERROR)
            return
        known = session.qos2.pop(pubrel.packet_id, None) is not None
        self._pubrec_owed.pop(pubrel.packet_id, None)
        code = ReasonCode.SUCCESS if known else ReasonCode.PACKET_IDENTIFIER_NOT_FOUND
        conn.queue_control(conn.mqtt.pubcomp(pubrel.packet_id, code))
