"""One connection's QoS 2 exchange alone (no sockets): which PUBRECs it owes, where they go
once the session's message is written, and how a PUBREL is answered."""

from __future__ import annotations

from gateway.transport.mqtt.qos2 import Qos2Exchange
from gateway.transport.mqtt.sessions import Session
from gateway.transport.reply_order import ReplyOrder
from parser.mqtt.connection import MqttServerConnection
from parser.mqtt.packets import PubRel, ReasonCode


class Conn:
    """What the exchange sees of its connection, recording what it is asked to do."""

    def __init__(self) -> None:
        self.mqtt = MqttServerConnection()
        self.session: Session | None = Session("c", None, max_qos2=4)
        self.reply_order = ReplyOrder(self)
        self.replies: list[bytes] = []
        self.controls: list[bytes] = []
        self.lost = 0
        self.closed: list[tuple[str, ReasonCode | None]] = []

    def send_reply(self, reply: bytes, accepted_at: float, count: int = 1) -> None:
        self.replies.append(reply)

    def queue_control(self, reply: bytes) -> None:
        self.controls.append(reply)

    def frame_lost(self) -> None:
        self.lost += 1

    def close(self, reason: str, *, abort: bool = False, code: ReasonCode | None = None) -> None:
        self.closed.append((reason, code))


def test_a_pubrec_leaves_once_and_only_when_owed() -> None:
    conn = Conn()
    exchange = Qos2Exchange(conn)
    exchange.written(3, None)  # not owed here (another connection received it): nothing
    assert conn.replies == []
    exchange.owe(3, 0.0)
    exchange.written(3, None)
    exchange.written(3, None)  # already answered
    assert conn.replies == [conn.mqtt.pubrec(3)]


def test_a_pubrec_received_here_waits_for_the_replies_before_it() -> None:
    conn = Conn()
    exchange = Qos2Exchange(conn)
    first, second = conn.reply_order.reserve(), conn.reply_order.reserve()
    exchange.owe(8, 0.0)
    exchange.written(8, second)
    assert conn.replies == []  # behind the first reply, not yet released
    conn.reply_order.release(first, b"first", 0.0)
    assert conn.replies == [b"first", conn.mqtt.pubrec(8)]


def test_a_resend_is_answered_at_once_if_written_else_when_it_is() -> None:
    conn = Conn()
    session = conn.session
    assert session is not None
    exchange = Qos2Exchange(conn)
    session.qos2_started(1)
    exchange.resent(session, 1, 0.0)  # still being written: owed, not answered
    assert conn.replies == []
    session.qos2[1] = True
    exchange.written(1, None)
    exchange.resent(session, 1, 0.0)  # written: answered again, not stored twice
    assert conn.replies == [conn.mqtt.pubrec(1), conn.mqtt.pubrec(1)]


def test_a_message_lost_while_owed_costs_the_connection() -> None:
    conn = Conn()
    exchange = Qos2Exchange(conn)
    exchange.lost(5)  # not owed here: nobody waits for it
    assert conn.lost == 0
    exchange.owe(5, 0.0)
    exchange.lost(5)
    assert conn.lost == 1


def test_pubrel_frees_a_known_id_and_says_so_for_an_unknown_one() -> None:
    conn = Conn()
    session = conn.session
    assert session is not None
    exchange = Qos2Exchange(conn)
    session.qos2_started(2)
    session.qos2[2] = True
    exchange.released(PubRel(2))
    exchange.released(PubRel(9))
    assert session.qos2 == {}
    assert conn.controls == [
        conn.mqtt.pubcomp(2),
        conn.mqtt.pubcomp(9, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND),
    ]


def test_pubrel_before_its_pubrec_is_a_protocol_error() -> None:
    conn = Conn()
    session = conn.session
    assert session is not None
    exchange = Qos2Exchange(conn)
    session.qos2_started(4)
    exchange.owe(4, 0.0)
    exchange.released(PubRel(4))
    assert conn.closed == [("mqtt_protocol_error", ReasonCode.PROTOCOL_ERROR)]
    assert session.qos2 == {4: False} and conn.controls == []
