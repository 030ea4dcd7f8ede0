"""A full memory budget stops the MQTT readers and holds their PUBACKs (``accepted`` policy:
otherwise a PUBACK would leave at once); when the sink recovers everything flows again."""

from __future__ import annotations

import base64
import struct
import threading
from pathlib import Path

from parser.mqtt.packets import PubAck
from tests.gateway.gatewayproc import read_records, wait_for
from tests.gateway.transport.mqtt.client import MqttTestClient, start_gateway
from tests.parser.streams import evb1_frame

WINDOW = 300


def cells(seq: int) -> bytes:
    body = struct.pack(">IB40H", 1767225600 + seq, 40, *range(3300, 3340))
    return evb1_frame(5, seq, body)


class Publisher(threading.Thread):
    """Keeps WINDOW QoS 1 messages in flight and records which ones were PUBACKed."""

    def __init__(self, port: int, index: int) -> None:
        super().__init__(daemon=True)
        self.client = MqttTestClient(port, timeout=0.2)
        self.client.connect(f"pub-{index}")
        self.topic = f"ev/35630704244{index:04d}/telemetry"
        self.base = index * 10_000
        self.pending: dict[int, bytes] = {}
        self.acked: list[bytes] = []
        self.stop = threading.Event()

    def run(self) -> None:
        seq = 0
        while not self.stop.is_set():
            while len(self.pending) < WINDOW and seq < 9_999:
                seq += 1
                self.pending[seq] = cells(self.base + seq)
                try:
                    self.client.publish(self.pending[seq], 1, seq, topic=self.topic)
                except OSError:
                    return
            packet = self.client.next_packet()
            if isinstance(packet, PubAck):
                self.acked.append(self.pending.pop(packet.packet_id))


def test_full_budget_pauses_reading_and_holds_pubacks(tmp_path: Path) -> None:
    stall = tmp_path / "stall"
    stall.touch()
    gw = start_gateway(
        tmp_path,
        "ack_policy = 'accepted'",
        "[pipeline]\nhigh_water_bytes = 262144\nlow_water_bytes = 131072\n"
        f"[sink.local]\nstall_while_exists = '{stall}'\n",
    )
    publishers = [Publisher(gw.ports["mqtt"], i) for i in range(4)]
    try:
        for p in publishers:
            p.start()
        assert wait_for(lambda: gw.metric("gateway_paused") == 1, timeout=15)
        readings = [gw.metric("gateway_frames_total")]

        def reading_stopped() -> bool:
            readings.append(gw.metric("gateway_frames_total"))
            return readings[-1] == readings[-2]

        assert wait_for(reading_stopped, timeout=10, interval=0.5)
        # Counted once reading has stopped, so PUBACKs sent just before the pause (and still
        # on their way through the publisher threads) are not taken for leaks.
        held = sum(len(p.acked) for p in publishers)
        # Paused: nothing more is read, and the PUBACKs of what was read are not sent either
        # (counted where they are written: the publisher threads may still be reading some
        # sent before the pause, however slow a loaded machine makes them).
        sent = gw.metric("gateway_acks_total")
        assert not wait_for(lambda: gw.metric("gateway_acks_total") > sent, timeout=1)
        assert gw.metric("gateway_paused") == 1
        stall.unlink()  # the sink recovers
        assert wait_for(lambda: sum(len(p.acked) for p in publishers) > held + 2000, timeout=30)
    finally:
        for p in publishers:
            p.stop.set()
        for p in publishers:
            p.join(10)
        assert gw.stop() == 0
    stored = {r["payload"] for r in read_records(gw.data_dir, "raw")}
    acked = {base64.b64encode(frame).decode() for p in publishers for frame in p.acked}
    assert acked <= stored
