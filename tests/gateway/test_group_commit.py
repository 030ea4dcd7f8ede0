"""Group commit on the ACK path: under ``journaled`` a device that sends one frame and waits for
its ACK gets it after about one write of the journal, not after the Kinesis shipper's linger
(issue 13: a linger of 50 ms on the ACK path held such a device to ~19 frames/s, a backlog of
10,000 took minutes; issue 15: ACKs no longer wait for Kinesis at all).

The shipper's linger is set to 2 s so that the check is logical rather than timed: an ACK that
waited for it could not be in the gateway's own latency histogram under 1 s, however fast or
slow the machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from parser.mqtt.packets import PubAck
from tests.gateway.devices import DeviceSocket
from tests.gateway.gatewayproc import GatewayProcess, wait_for
from tests.gateway.sinks.kinesis.emulator import Kinesalite
from tests.gateway.sinks.kinesis.harness import start_gateway as start_kinesis_gateway
from tests.gateway.transport.mqtt.client import MqttTestClient, start_gateway
from tests.parser.streams import evb1_ack, evb1_heartbeat, evb1_login

IMEI = "356307042441013"
ROUND_TRIPS = 20
BOUND_S = 20.0  # before the fix ~10 round trips fit; the assertions below do not count on it


def ack_latencies(gw: GatewayProcess, transport: str) -> tuple[float, float]:
    """(ACKs observed, ACKs observed within 1 s) from gateway_ack_latency_seconds."""
    name = "gateway_ack_latency_seconds"
    return (
        gw.metric(f"{name}_count", transport=transport),
        gw.metric(f"{name}_bucket", transport=transport, le="1.0"),
    )


def test_a_device_waiting_for_each_ack_is_not_held_by_the_shippers_linger(
    tmp_path: Path, kinesalite: Kinesalite, make_stream: Callable[[int], str]
) -> None:
    gw = start_kinesis_gateway(
        tmp_path, kinesalite.endpoint, make_stream(1), make_stream(1), "linger_ms = 2000\n"
    )
    try:
        dev = DeviceSocket(gw.ports["evb1"])
        dev.send(evb1_login(IMEI))
        assert dev.recv_exact(11) == evb1_ack(0, 1)
        sent = 0
        bound = time.monotonic() + BOUND_S
        while sent < ROUND_TRIPS and time.monotonic() < bound:
            sent += 1
            dev.send(evb1_heartbeat(sent))
            assert dev.recv_exact(11, timeout=10) == evb1_ack(sent, 4)
        acks, within_1s = ack_latencies(gw, "tcp")
        assert acks == 1 + sent  # the login's ACK and one per frame
        assert within_1s == acks  # none waited for the 2 s linger
        # … and the records went on to Kinesis.
        assert wait_for(lambda: gw.metric("gateway_kinesis_user_records_total") >= sent, 20)
        dev.close()
        assert gw.stop() == 0
    finally:
        gw.kill()


def test_an_mqtt_client_waiting_for_each_puback_gets_it_after_a_journal_write(
    tmp_path: Path,
) -> None:
    gw = start_gateway(tmp_path, "ack_policy = 'journaled'")
    try:
        client = MqttTestClient(gw.ports["mqtt"])
        client.connect("backlog-upload")
        sent = 0
        bound = time.monotonic() + BOUND_S
        while sent < ROUND_TRIPS and time.monotonic() < bound:
            sent += 1
            client.publish(evb1_heartbeat(sent), 1, sent)
            assert client.expect(PubAck, timeout=10).packet_id == sent
        acks, within_1s = ack_latencies(gw, "mqtt")
        assert acks == sent and within_1s == acks
        client.disconnect()
        assert gw.stop() == 0
    finally:
        gw.kill()
