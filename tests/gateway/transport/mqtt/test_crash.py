"""kill -9 of the gateway under ``delivered``: nothing it PUBACKed is lost, and what it did
not acknowledge arrives once the client resends it to the restarted gateway."""

from __future__ import annotations

from pathlib import Path

from parser.mqtt.packets import PubAck
from tests.gateway.gatewayproc import stored_payloads
from tests.gateway.transport.mqtt.client import MqttTestClient, start_gateway
from tests.parser.streams import evb1_heartbeat

WINDOW = 16


def test_kill_9_loses_nothing_pubacked(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, "ack_policy = 'delivered'")
    client = MqttTestClient(gw.ports["mqtt"])
    client.connect("crash-test", clean=False)
    pending: dict[int, bytes] = {}  # packet id -> frame, not acknowledged yet
    acked: list[bytes] = []
    seq = 0
    try:
        while len(acked) < 300:
            while len(pending) < WINDOW:
                seq += 1
                pending[seq] = evb1_heartbeat(seq)
                client.publish(pending[seq], 1, seq)
            acked.append(pending.pop(client.expect(PubAck).packet_id))
        gw.proc.kill()  # SIGKILL with a window of messages in flight
        gw.proc.wait(10)
        while (packet := client.next_packet(timeout=1)) is not None:  # acks read before death
            assert isinstance(packet, PubAck)
            acked.append(pending.pop(packet.packet_id))
    finally:
        gw.kill()
    client.close()
    assert set(acked) <= stored_payloads(gw.data_dir)
    assert pending  # the kill did catch messages in flight

    again = start_gateway(tmp_path, "ack_policy = 'delivered'", name="gw-again")
    try:
        client = MqttTestClient(again.ports["mqtt"])
        client.connect("crash-test", clean=False)
        for packet_id, frame in pending.items():  # the client resends what it was not acked
            client.publish(frame, 1, packet_id, dup=True)
        for _ in range(len(pending)):
            acked.append(pending.pop(client.expect(PubAck).packet_id))
        client.close()
    finally:
        assert again.stop() == 0
    assert {evb1_heartbeat(n) for n in range(1, seq + 1)} == set(acked)
    assert set(acked) <= stored_payloads(gw.data_dir)
