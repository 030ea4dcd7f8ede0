"""One MQTT connection in process, bytes in and bytes out: a fake socket and a pipeline that
only keeps each frame's ticket, so a test decides when (and whether) a frame is written."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any, cast

import pytest

from gateway.common.tickets import BatchSettled, Ticket
from gateway.pipeline.accept import FrameSource, Pipeline
from gateway.pipeline.flow_control import FlowControl
from gateway.pipeline.registry import CodecRegistry
from gateway.transport.mqtt.connect import ConnectFlow
from gateway.transport.mqtt.listener import MqttListener
from gateway.transport.mqtt.passwords import write_password
from gateway.transport.mqtt.settings import MqttListenerSettings, MqttRoute
from parser.events import Event, Frame, Login
from parser.mqtt.client import MqttClientConnection
from parser.mqtt.encode import encode, encode_publish
from parser.mqtt.packets import (
    MQTT_5,
    MQTT_311,
    NO_PROPERTIES,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    Properties,
    PubAck,
    PubRec,
    PubRel,
    ReasonCode,
    Will,
)
from parser.records import Reading
from tests.gateway.transport.mock_transport import MockTransport
from tests.parser.streams import evb1_heartbeat

DEVICE = "356307042441013"
TOPIC = f"ev/{DEVICE}/telemetry"
BROKEN_TOPIC = f"ev/{DEVICE}/broken"
OTHER = "356307042441099"
OTHER_TOPIC = f"ev/{OTHER}/telemetry"
PASSWORD = "TopSecretPw"


class FakePipeline:
    def __init__(self) -> None:
        self.observers: list[BatchSettled] = []
        self.tickets: list[Ticket[Any] | None] = []
        self.events: list[Frame | Login] = []  # what was accepted, in order

    def on_batch_settled(self, observer: BatchSettled) -> None:
        self.observers.append(observer)

    def accept(self, source: FrameSource, event: Frame | Login, ticket: Ticket[Any] | None) -> int:
        self.events.append(event)
        if ticket is not None:
            ticket.pending += 1  # one record per frame here (the frames of a read share one)
        self.tickets.append(ticket)
        return 0

    def written(self, index: int, *, lost: bool = False) -> None:
        """The frame's one record is written (or dead-lettered), as the sink's batch ends."""
        ticket = self.tickets[index]
        assert ticket is not None
        if lost:
            ticket.part_lost()
        ticket.part_done()
        for observer in self.observers:
            observer.batch_settled()


class BrokenCodec:
    """A codec with a bug: something other than its DecodeError escapes. A class of its own,
    as any codec may be: the compiled build's JsonCodec takes no interpreted subclass."""

    name = "broken"
    transports = frozenset({"mqtt"})
    max_frame_bytes = 64 * 1024

    def session(self) -> BrokenSession:
        return BrokenSession(self)

    def decode(self, payload: bytes) -> tuple[Reading, ...]:
        raise OverflowError("int too large to convert to float")


class BrokenSession:
    """One message = one frame, decoded at ``eof`` (as JsonSession does)."""

    device_id = None
    buffered_bytes = 0

    def __init__(self, codec: BrokenCodec) -> None:
        self.codec = codec
        self.payload = b""

    def feed(self, data: bytes) -> list[Event]:
        self.payload += data
        return []

    def eof(self) -> list[Event]:
        return [Frame(None, self.payload, b"", self.codec.decode(self.payload))]


class Device:
    """A connected device: the bytes it sends in one read, the packets the gateway wrote."""

    def __init__(self, listener: MqttListener, level: int = MQTT_311) -> None:
        self.conn = listener.connection()
        self.transport = MockTransport()
        self.conn.connection_made(cast(asyncio.Transport, self.transport))
        self.level = level
        self.client = MqttClientConnection(level)

    def send(self, *packets: bytes) -> None:
        self.conn.data_received(b"".join(packets))

    def received(self) -> list[Packet]:
        data = bytes(self.transport.out)
        self.transport.out.clear()
        return self.client.feed(data)


def listener(**settings: Any) -> tuple[MqttListener, FakePipeline]:
    settings.setdefault("identity", "client_id")
    routes = [MqttRoute(), MqttRoute(topic=BROKEN_TOPIC, codec="broken")]
    config = MqttListenerSettings(port=0, routes=routes, **settings)
    codecs = {"evb1": CodecRegistry.load().create("evb1"), "broken": BrokenCodec()}
    pipeline = FakePipeline()
    flow = FlowControl(10**9, 10**8, time.monotonic)
    return MqttListener(config, codecs, cast(Pipeline, pipeline), flow), pipeline


def connect(client_id: str = DEVICE, level: int = MQTT_311, **fields: Any) -> bytes:
    return encode(Connect(level, client_id, keep_alive_s=60, **fields), level)


def publish(
    qos: int, packet_id: int, topic: str = TOPIC, *, dup: bool = False, level: int = MQTT_311,
    payload: bytes | None = None,
) -> bytes:  # fmt: skip
    payload = evb1_heartbeat(packet_id) if payload is None else payload
    return encode_publish(topic, payload, qos, packet_id, dup=dup, protocol_level=level)


def test_a_disconnect_in_the_same_read_still_gets_the_pubacks_before_it() -> None:
    device = Device(listener(ack_policy="accepted")[0])
    device.send(connect(), publish(1, 1), publish(1, 2), encode(Disconnect(), MQTT_311))
    assert device.received()[1:] == [PubAck(1), PubAck(2)]
    assert device.transport.closing and device.conn.close_reason == "client_disconnect"


def test_a_codec_bug_costs_the_connection_not_the_pubacks_owed() -> None:
    device = Device(listener(ack_policy="accepted")[0])
    device.send(connect(), publish(1, 1), publish(1, 2, BROKEN_TOPIC), publish(1, 3))
    assert device.received()[1:] == [PubAck(1)]  # 2 hit the bug: never acknowledged, resent
    assert device.transport.closing and device.conn.close_reason == "mqtt_internal_error"


def test_a_qos2_message_lost_to_the_sink_closes_and_is_taken_afresh_when_resent() -> None:
    port, pipeline = listener(ack_policy="delivered")
    first = Device(port)
    first.send(connect(clean_start=False), publish(2, 7))
    pipeline.written(0, lost=True)  # dead-lettered: the frame is not safe, no PUBREC
    assert first.received()[1:] == []
    # The gateway closes by itself: the device waits for a PUBREC that never comes otherwise.
    assert first.transport.closing and first.conn.close_reason == "frame_lost"
    first.conn.connection_lost(None)  # (what the transport does once closed)

    second = Device(port)  # the device resumes its session and resends
    second.send(connect(clean_start=False), publish(2, 7, dup=True))
    assert len(pipeline.tickets) == 2, "the resend was swallowed as a duplicate"
    pipeline.written(1)
    assert second.received()[1:] == [PubRec(7)]


@pytest.mark.parametrize("level", [MQTT_311, MQTT_5])
def test_a_qos1_message_lost_to_the_sink_closes_the_connection(level: int) -> None:
    """Else its in-flight slot stays taken and, 5.0 resending only on reconnect, the device
    can publish nothing once ``receive_maximum`` messages were lost, PINGs keeping it alive."""
    port, pipeline = listener(ack_policy="delivered")
    device = Device(port, level)
    # Two reads: the PUBLISHes of one read share a ticket, so a loss holds back the PUBACKs
    # of its whole read; those of an earlier read still leave.
    device.send(connect(level=level), publish(1, 1, level=level))
    device.send(*(publish(1, n, level=level) for n in (2, 3)))
    pipeline.written(0)
    pipeline.written(1, lost=True)
    assert device.transport.closing and device.conn.close_reason == "frame_lost"
    pipeline.written(2)  # written after the close: its PUBACK cannot go out any more
    packets = device.received()
    assert packets[1] == PubAck(1)  # released before the loss
    if level == MQTT_5:
        assert packets[2:] == [Disconnect(ReasonCode.SERVER_BUSY)]
    else:
        assert packets[2:] == []


def test_pubacks_leave_in_the_order_of_their_publishes() -> None:
    """[MQTT-4.6.0-2], whatever order the streams finish the messages' records in."""
    port, pipeline = listener(ack_policy="delivered")
    device = Device(port)
    device.send(connect(), publish(1, 1), publish(1, 2), publish(1, 3))
    pipeline.written(1)
    pipeline.written(2)
    assert device.received()[1:] == []  # 1 is not written yet
    pipeline.written(0)
    assert device.received() == [PubAck(1), PubAck(2), PubAck(3)]


def test_pubrecs_leave_in_the_order_of_their_publishes() -> None:
    """[MQTT-4.6.0-3], as for PUBACKs; a PUBREL before its PUBREC is a protocol error."""
    port, pipeline = listener(ack_policy="delivered")
    device = Device(port)
    device.send(connect(), publish(2, 1), publish(1, 2), publish(2, 3))
    pipeline.written(2)
    pipeline.written(1)
    assert device.received()[1:] == []  # 1 is not written yet
    pipeline.written(0)
    assert device.received() == [PubRec(1), PubAck(2), PubRec(3)]
    early = Device(port)
    early.send(connect(OTHER), publish(2, 5, OTHER_TOPIC), encode(PubRel(5), MQTT_311))
    assert early.transport.closing and early.conn.close_reason == "mqtt_protocol_error"


@pytest.mark.parametrize("policy", ["accepted", "delivered"])
@pytest.mark.parametrize("level", [MQTT_311, MQTT_5])
def test_a_payload_that_is_not_one_frame_is_kept_and_acknowledged(policy: str, level: int) -> None:
    """Refused, it would be resent on every reconnect forever; kept, it can be re-parsed."""
    port, pipeline = listener(ack_policy=policy)
    device = Device(port, level)
    junk = b"not an evb1 frame"
    device.send(connect(level=level), publish(1, 1, payload=junk, level=level),
                publish(2, 2, payload=junk, level=level), publish(1, 3, level=level))  # fmt: skip
    if policy == "delivered":
        for index in range(3):
            pipeline.written(index)
    (bad, bad_qos2, good) = pipeline.events
    assert bad.payload == junk and isinstance(bad, Frame) and bad.error_code == "not_one_frame"
    assert bad_qos2.payload == junk and good.readings
    refused = ReasonCode.PAYLOAD_FORMAT_INVALID if level == MQTT_5 else ReasonCode.SUCCESS
    assert device.received()[1:] == [PubAck(1, refused), PubRec(2, refused), PubAck(3)]
    assert not device.transport.closing
    if level == MQTT_5:  # 5.0: that QoS 2 exchange ended at its error PUBREC, no PUBREL
        assert device.conn.handler.session is not None and device.conn.handler.session.qos2 == {}
    assert port.codec_stats["evb1"].decode_errors == {"not_one_frame": 2}


def will(topic: str = TOPIC, payload: bytes | None = None, **props: Any) -> Will:
    payload = evb1_heartbeat(99) if payload is None else payload
    return Will(topic, payload, properties=Properties(**props) if props else NO_PROPERTIES)


@pytest.mark.parametrize("level", [MQTT_311, MQTT_5])
def test_a_will_is_stored_when_the_connection_ends_without_a_disconnect(level: int) -> None:
    port, pipeline = listener()
    lost = Device(port, level)  # the network drops, the gateway closes, keep-alive runs out…
    lost.send(connect(level=level, will=will()))
    lost.conn.connection_lost(ConnectionResetError())
    polite = Device(port, level)  # a normal DISCONNECT discards the will
    polite.send(connect(OTHER, level, will=will(OTHER_TOPIC)), encode(Disconnect(), level))
    polite.conn.connection_lost(None)
    assert [(e.device_id, e.payload) for e in pipeline.events] == [(DEVICE, evb1_heartbeat(99))]
    assert port.mqtt_stats.wills == 1 and port.codec_stats["evb1"].frames == 1
    if level == MQTT_5:  # 5.0 lets a client disconnect and still ask for its will
        asked = Device(port, level)
        asked.send(connect(OTHER, level, will=will(OTHER_TOPIC)),
                   encode(Disconnect(ReasonCode.DISCONNECT_WITH_WILL_MESSAGE), level))  # fmt: skip
        asked.conn.connection_lost(None)
        assert [e.device_id for e in pipeline.events] == [DEVICE, OTHER]


def test_a_will_the_codec_fails_on_is_kept_as_a_frame_that_did_not_decode() -> None:
    """Nobody is left to resend a will: a codec bug must not lose it (nor escape the close)."""
    port, pipeline = listener()
    device = Device(port)
    device.send(connect(will=will(BROKEN_TOPIC, b'{"ts": 1}')))
    device.conn.connection_lost(None)
    (kept,) = pipeline.events
    assert isinstance(kept, Frame) and kept.error_code == "codec_error"
    assert kept.payload == b'{"ts": 1}' and kept.device_id == DEVICE


def test_a_delayed_will_waits_and_a_reconnect_within_the_delay_cancels_it() -> None:
    port, pipeline = listener()
    delayed = will(will_delay_interval=30)
    expiry = Properties(session_expiry_interval=3600)
    for client_id, topic in ((DEVICE, TOPIC), (OTHER, OTHER_TOPIC)):
        device = Device(port, MQTT_5)
        device.send(connect(client_id, MQTT_5, will=will(topic, will_delay_interval=30),
                            properties=expiry))  # fmt: skip
        device.conn.connection_lost(None)
    back = Device(port, MQTT_5)  # the first one is back within the delay
    back.send(connect(DEVICE, MQTT_5, clean_start=False, properties=expiry))
    port.sweep(time.monotonic() + 10)
    assert pipeline.events == []
    port.sweep(time.monotonic() + 31)
    assert [e.device_id for e in pipeline.events] == [OTHER]
    # Taken over within the delay: the client is back, no will (5.0 §3.1.3.2.2).
    again = Device(port, MQTT_5)
    again.send(connect(DEVICE, MQTT_5, clean_start=False, properties=expiry, will=delayed))
    assert back.received()[1:] == [Disconnect(ReasonCode.SESSION_TAKEN_OVER)]
    back.conn.connection_lost(None)
    port.sweep(time.monotonic() + 31)
    assert len(pipeline.events) == 1


@pytest.mark.parametrize("level", [MQTT_311, MQTT_5])
def test_a_will_that_could_not_be_stored_is_refused_at_connect(level: int) -> None:
    """Refused at once, not dropped without a word when the connection ends."""
    port, pipeline = listener(max_will_bytes=200)
    v5 = level == MQTT_5
    for refused, code in (
        (will("ev/status"), ReasonCode.TOPIC_NAME_INVALID if v5 else ReasonCode.NOT_AUTHORIZED),
        (will(OTHER_TOPIC), ReasonCode.NOT_AUTHORIZED),  # another device's
        (will(payload=bytes(300)), ReasonCode.QUOTA_EXCEEDED if v5 else None),
    ):
        device = Device(port, level)
        device.send(connect(level=level, will=refused))
        (connack,) = device.received()
        assert isinstance(connack, ConnAck)
        if code is not None:  # (3.1.1 has no return code for a quota: "server unavailable")
            assert connack.reason_code == code
        assert connack.reason_code >= 0x80 and device.transport.closing
        device.conn.connection_lost(None)
    assert pipeline.events == []
    reasons = port.stats.rejects
    assert [reasons[r] for r in ("will_unrouted_topic", "will_identity_mismatch",
                                 "will_too_large")] == [1, 1, 1]  # fmt: skip


def test_retained_messages_are_refused_where_the_client_can_be_told_so() -> None:
    """Nothing could ever receive a retained message here (devices subscribe only to their
    command topic): 5.0 clients are told Retain Available 0, and per 5.0 §3.2.2.3.5 a retained
    PUBLISH is then refused. 3.1.1 cannot be told: its message is stored, not retained."""
    port, pipeline = listener(ack_policy="accepted")
    v5 = Device(port, MQTT_5)
    v5.send(connect(level=MQTT_5))
    (connack,) = v5.received()
    assert isinstance(connack, ConnAck) and connack.properties.retain_available == 0
    v5.send(encode_publish(TOPIC, evb1_heartbeat(1), 1, 1, retain=True, protocol_level=MQTT_5))
    assert v5.received() == [Disconnect(ReasonCode.RETAIN_NOT_SUPPORTED)]
    retained_will = Device(port, MQTT_5)
    retained_will.send(connect(level=MQTT_5, will=Will(TOPIC, evb1_heartbeat(2), retain=True)))
    (refused,) = retained_will.received()
    assert isinstance(refused, ConnAck)
    assert refused.reason_code == ReasonCode.RETAIN_NOT_SUPPORTED
    v3 = Device(port)
    v3.send(connect(), encode_publish(TOPIC, evb1_heartbeat(3), 1, 1, retain=True))
    assert v3.received()[1:] == [PubAck(1)]
    assert [e.payload for e in pipeline.events] == [evb1_heartbeat(3)]


def test_an_idle_connected_client_holds_no_reply_order_or_read_flags() -> None:
    """Made on first use (most connections are idle): ~130 bytes less per idle client."""
    port, pipeline = listener(ack_policy="delivered")
    device = Device(port)
    device.send(connect())
    (connack,) = device.received()
    assert isinstance(connack, ConnAck)
    conn = device.conn
    assert (conn._reply_order, conn._flow) == (None, None)
    device.send(publish(1, 1))
    assert conn._reply_order is not None and conn._flow is None
    pipeline.written(0)
    assert device.received() == [PubAck(1)]


def test_a_connection_keeps_nothing_of_its_connect_but_what_it_needs() -> None:
    """A 64 KiB CONNECT of empty user properties decodes to ~0.9 MiB of objects, outside the
    memory budget: 100 such connections took 90 MiB while the budget said 0."""
    port, _ = listener(max_packet_bytes=128 * 1024)
    pairs = (("", ""),) * 13_000  # 5 bytes each on the wire
    big = encode(Connect(MQTT_5, DEVICE, keep_alive_s=60,
                         properties=Properties(user_properties=pairs)), MQTT_5)  # fmt: skip
    assert len(big) > 64_000
    device = Device(port, MQTT_5)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        device.send(big)
        del big
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    (connack,) = device.received()
    assert isinstance(connack, ConnAck) and connack.reason_code == ReasonCode.SUCCESS
    assert kept < 32 * 1024, f"{kept} bytes kept after the CONNECT"


def test_long_topics_are_not_held_for_the_connections_life() -> None:
    """A topic can be as long as a packet: the topic cache and the 5.0 topic aliases hold
    only short ones (device topics are), not eight or sixteen of 64 KiB each."""
    port, _ = listener(max_packet_bytes=128 * 1024)
    device = Device(port, MQTT_5)
    device.send(connect(level=MQTT_5))
    device.received()
    long_topics = [f"ev/{n}/" + "x" * 60_000 for n in range(8)]  # unrouted: refused, not closed
    publishes = [encode_publish(t, b"", 1, n + 1, protocol_level=MQTT_5)
                 for n, t in enumerate(long_topics)]  # fmt: skip
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for packet in publishes:
            device.send(packet)
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    answers = device.received()
    assert [p.reason_code for p in answers if isinstance(p, PubAck)] == [0x90] * 8
    assert kept < 32 * 1024, f"{kept} bytes kept after the PUBLISHes"
    aliased = Properties(topic_alias=1)
    device.send(encode_publish(long_topics[0], b"", 1, 9, protocol_level=MQTT_5,
                               properties=aliased))  # fmt: skip
    assert device.received() == [Disconnect(ReasonCode.QUOTA_EXCEEDED)]


async def answered(device: Device) -> list[Packet]:
    """What the gateway wrote once it answered (a password check runs in a thread)."""
    for _ in range(1000):
        if device.transport.out:
            break
        await asyncio.sleep(0.01)
    return device.received()


@pytest.mark.asyncio
async def test_password_checks_are_bounded_refused_busy_beyond_and_time_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guessing must not queue unbounded scrypt work, and a CONNECT must not wait forever."""
    passwd = tmp_path / "passwd"
    write_password(passwd, DEVICE, PASSWORD)
    port, _ = listener(auth="password", password_file=passwd, identity="username",
                       max_pending_password_checks=1, connect_timeout_s=5.0)  # fmt: skip
    release = threading.Event()

    def stuck(stored: str, password: str | bytes) -> bool:
        release.wait(10)
        return False

    monkeypatch.setattr("gateway.transport.mqtt.passwords.verify_password", stuck)
    try:
        waiting = Device(port, MQTT_5)
        waiting.send(connect(level=MQTT_5, username=DEVICE, password=b"guess-1"))
        assert waiting.received() == [] and not waiting.transport.closing  # being checked
        busy = Device(port)
        busy.send(connect("other", username=DEVICE, password=b"guess-2"))
        (refused,) = busy.received()  # at once, no check queued
        assert isinstance(refused, ConnAck)
        assert refused.reason_code == ReasonCode.SERVER_UNAVAILABLE  # 3.1.1's return code 3
        assert busy.transport.closing and busy.conn.close_reason == "auth_busy"

        port.sweep(time.monotonic() + 6.0)  # the check is still queued past connect_timeout_s
        (timed_out,) = waiting.received()
        assert isinstance(timed_out, ConnAck) and timed_out.reason_code == ReasonCode.SERVER_BUSY
        assert waiting.transport.closing and waiting.conn.close_reason == "auth_timeout"
    finally:
        release.set()
    passwords = port.mqtt_port.passwords
    assert passwords is not None
    for _ in range(1000):
        if passwords.pending == 0:
            break
        await asyncio.sleep(0.01)
    assert passwords.pending == 0 and not passwords.full


@pytest.mark.asyncio
async def test_only_the_same_user_may_take_a_client_id_over(tmp_path: Path) -> None:
    """With allow_any_identity the identity is not proven, the user name is: it holds the
    client id, so another user cannot cut that client off by connecting with its id."""
    passwd = tmp_path / "passwd"
    write_password(passwd, "gw-a", "pass-a")
    write_password(passwd, "gw-b", "pass-b")
    port, _ = listener(auth="password", password_file=passwd, identity="client_id",
                       allow_any_identity=True)  # fmt: skip
    first = Device(port, MQTT_5)
    first.send(connect("shared", MQTT_5, username="gw-a", password=b"pass-a"))
    assert [p.reason_code for p in await answered(first) if isinstance(p, ConnAck)] == [0]
    other = Device(port, MQTT_5)
    other.send(connect("shared", MQTT_5, username="gw-b", password=b"pass-b"))
    (refused,) = await answered(other)
    assert isinstance(refused, ConnAck) and refused.reason_code == ReasonCode.NOT_AUTHORIZED
    assert not first.transport.closing
    same = Device(port, MQTT_5)
    same.send(connect("shared", MQTT_5, username="gw-a", password=b"pass-a"))
    (accepted,) = await answered(same)
    assert isinstance(accepted, ConnAck) and accepted.reason_code == ReasonCode.SUCCESS
    assert first.received() == [Disconnect(ReasonCode.SESSION_TAKEN_OVER)]


@pytest.mark.asyncio
async def test_a_failure_after_the_password_check_closes_without_showing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    passwd = tmp_path / "passwd"
    write_password(passwd, DEVICE, PASSWORD)
    port, _ = listener(auth="password", password_file=passwd, identity="username")

    def bug(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(ConnectFlow, "_connected", bug)
    unhandled: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: unhandled.append(context))
    device = Device(port)
    device.send(connect(username=DEVICE, password=PASSWORD.encode()), publish(1, 1))
    for _ in range(500):  # scrypt runs in a thread
        if device.transport.closing:
            break
        await asyncio.sleep(0.01)
    assert device.transport.closing and device.conn.close_reason == "mqtt_internal_error"
    assert unhandled == []
    logged = capsys.readouterr()
    assert "a bug" in logged.out and PASSWORD not in logged.out + logged.err
    shown = repr(Connect(MQTT_311, DEVICE, username=DEVICE, password=PASSWORD.encode()))
    assert PASSWORD not in shown and "password=<hidden>" in shown
