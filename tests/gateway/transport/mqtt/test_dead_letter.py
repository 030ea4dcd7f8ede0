"""A message Kinesis refuses for good, through the real gateway and real Kinesis (kinesalite
behind the fault proxy) under the ``delivered`` ACK policy: its record is dead-lettered, the
device is told to reconnect, and its resend is stored and acknowledged.

Without the close, a 5.0 client (which resends only when it reconnects) waited for a PUBACK that
never came, its in-flight slot taken, its PINGs keeping it looking healthy. Kinesis being slow
or down is not such a case: the journal keeps the record and the shipper retries until it is
delivered, however long it takes."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

from parser.mqtt.packets import MQTT_5, Disconnect, Properties, PubAck, ReasonCode
from tests.gateway.sinks.kinesis.emulator import Kinesalite
from tests.gateway.sinks.kinesis.fault_proxy import KMS_ACCESS_DENIED, FaultProxy
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
        f"endpoint_url = '{fault_proxy.url}'\nretry_first_s = 0.05\nretry_max_s = 0.2\n"
    )
    gw = start_gateway(tmp_path, "ack_policy = 'delivered'", sink, env=AWS_ENV)
    try:
        port = gw.ports["mqtt"]
        client = MqttTestClient(port, MQTT_5, timeout=15)
        client.connect("dead-letter", clean=False, properties=PERSISTENT)
        client.publish(evb1_heartbeat(1), 1, 1)
        assert client.expect(PubAck).reason_code == ReasonCode.SUCCESS

        # The stream's KMS key becomes unusable: every entry is refused, not to be retried.
        fault_proxy.update(fail_entries_ratio=1.0, fail_error_codes=(KMS_ACCESS_DENIED,))
        client.publish(evb1_heartbeat(2), 1, 2)
        disconnect = client.expect(Disconnect)  # no PUBACK, but told to go
        assert disconnect.reason_code == ReasonCode.SERVER_BUSY
        assert client.closed_by_peer()
        dead = read_dead_letters(gw.data_dir)
        assert dead and {d["reason"] for d in dead} == {KMS_ACCESS_DENIED}
        lost = {base64.b64decode(d["record"]["payload"]) for d in dead if d["class"] == "raw"}
        assert lost == {evb1_heartbeat(2)}
        closed = "gateway_connections_closed_by_gateway_total"
        assert gw.metric(closed, reason="frame_lost") == 1

        fault_proxy.update(fail_entries_ratio=0.0)
        again = MqttTestClient(port, MQTT_5, timeout=15)
        assert again.connect("dead-letter", clean=False, properties=PERSISTENT).session_present
        again.publish(evb1_heartbeat(2), 1, 2, dup=True)  # what a client resends on reconnect
        assert again.expect(PubAck).reason_code == ReasonCode.SUCCESS
        # Under `delivered` its PUBACK came once Kinesis had it.
        stored = {base64.b64decode(r["record"]["payload"]) for r in user_records(kinesalite, raw)}
        assert {evb1_heartbeat(1), evb1_heartbeat(2)} <= stored
        again.close()
    finally:
        assert gw.stop() == 0
