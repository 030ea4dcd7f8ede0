"""Sessions over real sockets: takeover, QoS 2 state across reconnects, receive maximum."""

from __future__ import annotations

from pathlib import Path

from parser.mqtt.packets import (
    MQTT_5,
    MQTT_311,
    Disconnect,
    Properties,
    PubAck,
    PubComp,
    PubRec,
    ReasonCode,
)
from tests.gateway.gatewayproc import read_records, wait_for
from tests.gateway.transport.mqtt.client import MqttTestClient, start_gateway
from tests.parser.streams import evb1_heartbeat


def test_second_connect_with_the_same_client_id_takes_the_session_over(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path)
    try:
        port = gw.ports["mqtt"]
        for level in (MQTT_5, MQTT_311):
            first = MqttTestClient(port, level)
            first.connect(f"unit-{level}")
            second = MqttTestClient(port, level)
            second.connect(f"unit-{level}")
            if level == MQTT_5:
                assert first.expect(Disconnect).reason_code == ReasonCode.SESSION_TAKEN_OVER
            assert first.closed_by_peer()
            second.publish(evb1_heartbeat(level), 1, 1)
            assert second.expect(PubAck).packet_id == 1
            second.close()
        closed = "gateway_connections_closed_by_gateway_total"
        assert gw.metric(closed, reason="session_taken_over") == 2
        assert gw.metric("gateway_mqtt_reason_codes_total", reason="SESSION_TAKEN_OVER") == 1
    finally:
        assert gw.stop() == 0


def test_persistent_session_keeps_qos2_state_across_reconnects(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path)
    frame = evb1_heartbeat(77)
    try:
        port = gw.ports["mqtt"]
        for level in (MQTT_311, MQTT_5):
            # 3.1.1: Clean Session 0 persists; 5.0 also needs a Session Expiry Interval.
            expiry = 60 if level == MQTT_5 else None
            properties = Properties(session_expiry_interval=expiry)
            client_id = f"q2-{level}"
            one = MqttTestClient(port, level)
            assert not one.connect(client_id, clean=False, properties=properties).session_present
            one.publish(frame, 2, 7)
            assert one.expect(PubRec).packet_id == 7
            one.close()  # gone before its PUBREL: the exchange is open in the session

            two = MqttTestClient(port, level)
            assert two.connect(client_id, clean=False, properties=properties).session_present
            two.publish(frame, 2, 7, dup=True)  # the resend the spec asks for
            assert two.expect(PubRec).packet_id == 7  # answered, not stored again
            two.pubrel(7)
            comp = two.expect(PubComp)
            assert (comp.packet_id, comp.reason_code) == (7, ReasonCode.SUCCESS)
            two.close()

            # A clean session forgets: an unknown PUBREL is answered "not found" (5.0).
            three = MqttTestClient(port, level)
            assert not three.connect(client_id, clean=True).session_present
            three.pubrel(7)
            comp = three.expect(PubComp)
            assert comp.packet_id == 7
            if level == MQTT_5:
                assert comp.reason_code == ReasonCode.PACKET_IDENTIFIER_NOT_FOUND
            three.close()
    finally:
        assert gw.stop() == 0
    assert len(read_records(gw.data_dir, "raw")) == 2  # once per protocol level, resends excluded


def test_receive_maximum_is_advertised_and_an_excess_tolerated(tmp_path: Path) -> None:
    """Many clients (MQTT.js 5) send bursts beyond the advertised window: closing them (0x93)
    cost every message in flight and a reconnect that duplicated them. Memory is bounded by the
    budget instead (a full budget stops reading the socket)."""
    stall = tmp_path / "stall"
    stall.touch()  # the sink stalls: under `delivered` no PUBACK can leave
    gw = start_gateway(
        tmp_path, "receive_maximum = 2", f"[sink.local]\nstall_while_exists = '{stall}'"
    )
    try:
        port = gw.ports["mqtt"]
        client = MqttTestClient(port, MQTT_5)
        assert client.connect("window").properties.receive_maximum == 2
        for seq in (1, 2, 3, 4):  # two beyond the window
            client.publish(evb1_heartbeat(seq), 1, seq)
        assert client.next_packet(timeout=0.5) is None  # held until written, not refused
        stall.unlink()  # the sink recovers: the PUBACKs follow the write, in order
        assert [client.expect(PubAck, timeout=10).packet_id for _ in range(4)] == [1, 2, 3, 4]
        assert wait_for(lambda: len(read_records(gw.data_dir, "raw")) == 4)
        client.close()

        (tmp_path / "default").mkdir()
        default = start_gateway(tmp_path / "default")
        try:
            fresh = MqttTestClient(default.ports["mqtt"], MQTT_5)
            # Absent means 65535, the most there can be (5.0 §3.2.2.3.3).
            assert fresh.connect("fresh").properties.receive_maximum is None
            fresh.close()
        finally:
            assert default.stop() == 0
    finally:
        assert gw.stop() == 0
