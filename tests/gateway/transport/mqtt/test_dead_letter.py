"""A message the sink gives up on, through the real gateway and real Kinesis (kinesalite behind
the fault proxy): the device is told to reconnect, and its resend is stored and acknowledged.

Without the close, a 5.0 client (which resends only when it reconnects) waited for a PUBACK that
never came, its in-flight slot taken, its PINGs keeping it looking healthy."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

from parser.mqtt.packets import MQTT_5, Disconnect, Properties, PubAck, ReasonCode
from tests.gateway.gatewayproc import wait_for
from tests.gateway.sinks.kinesis.emulator import Kinesalite
from tests.gateway.sinks.kinesis.fault_proxy import FaultProxy
from tests.gateway.sinks.kinesis.harness import AWS_ENV, read_dead_letters, user_records
from tests.gateway.transport.mqtt.client import MqttTestClient, start_gateway
from tests.parser.streams import evb1_heartbeat

PERSISTENT = Properties(session_expiry_interval=600)


def test_a_dead_lettered_message_closes_the_connection_and_its_resend_is_stored(
    tmp_path: Path,
    kinesalite: Kinesalite,
    make_stream: Callable[[int], str],
    fault_proxy: FaultProxy,
) -> None:
    raw, parsed = make_stream(1), make_stream(1)
    sink = (
        f"[sink.kinesis]\nraw = {{ name = '{raw}' }}\nparsed = {{ name = '{parsed}' }}\n"
        f"endpoint_url = '{fault_proxy.url}'\nrecord_ttl_s = 1.0\n"
        "retry_first_s = 0.05\nretry_max_s = 0.2\n"
    )
    gw = start_gateway(tmp_path, "ack_policy = 'delivered'", sink, env=AWS_ENV)
    try:
        port = gw.ports["mqtt"]
        client = MqttTestClient(port, MQTT_5, timeout=15)
        client.connect("dead-letter", clean=False, properties=PERSISTENT)
        client.publish(evb1_heartbeat(1), 1, 1)
        assert client.expect(PubAck).reason_code == ReasonCode.SUCCESS

        fault_proxy.update(refuse_connections=True)  # Kinesis down past the records' TTL
        client.publish(evb1_heartbeat(2), 1, 2)
        disconnect = client.expect(Disconnect)  # no PUBACK, but told to go
        assert disconnect.reason_code == ReasonCode.SERVER_BUSY
        assert client.closed_by_peer()
        assert read_dead_letters(gw.data_dir)  # it was given up on, not merely slow
        closed = "gateway_connections_closed_by_gateway_total"
        assert gw.metric(closed, reason="frame_lost") == 1

        fault_proxy.update(refuse_connections=False)
        again = MqttTestClient(port, MQTT_5, timeout=15)
        assert again.connect("dead-letter", clean=False, properties=PERSISTENT).session_present
        again.publish(evb1_heartbeat(2), 1, 2, dup=True)  # what a client resends on reconnect
        assert again.expect(PubAck).reason_code == ReasonCode.SUCCESS
        again.close()
    finally:
        assert gw.stop() == 0
    stored = {base64.b64decode(r["record"]["payload"]) for r in user_records(kinesalite, raw)}
    assert wait_for(lambda: {evb1_heartbeat(1), evb1_heartbeat(2)} <= stored)
