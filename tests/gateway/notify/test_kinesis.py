"""The notifications Kinesis stream as a target of the real gateway, on kinesalite: the sink's
client and settings (``[sink.kinesis] notifications``), while notifications/ stays local."""

from __future__ import annotations

import json
from pathlib import Path

from tests.gateway.gatewayproc import GatewayProcess, read_records, wait_for
from tests.gateway.notify.faults import FAULT, IMEI, Device, fault
from tests.gateway.sinks.kinesis.emulator import Kinesalite, unique_stream_name
from tests.gateway.sinks.kinesis.harness import AWS_ENV


def test_notifications_go_to_their_own_stream(tmp_path: Path, kinesalite: Kinesalite) -> None:
    raw, parsed, notes = (unique_stream_name(s) for s in ("n-raw", "n-parsed", "n-notes"))
    for name in (raw, parsed, notes):
        kinesalite.create_stream(name, 1)
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"[sink.kinesis]\nraw = {{ name = '{raw}' }}\nparsed = {{ name = '{parsed}' }}\n"
        f"notifications = {{ name = '{notes}', aggregate = false }}\n"
        f"endpoint_url = '{kinesalite.endpoint}'\n"
    )
    gw = GatewayProcess(tmp_path / "data", codecs=("evb1",), config=config, env=AWS_ENV)
    try:
        dev = Device(gw.ports["evb1"])
        dev.send(fault(1), 1, FAULT)
        dev.sock.close()
        target = {"target": "kinesis"}
        assert wait_for(lambda: gw.metric("gateway_notification_deliveries_total", **target) == 1)
        [local] = read_records(gw.data_dir, "notifications")
        [record] = kinesalite.read_all(notes)
        assert json.loads(record["Data"]) == local
        assert record["PartitionKey"] == IMEI
        assert gw.metric("gateway_notification_delivery_seconds_count", **target) == 1
        assert gw.stop() == 0
    finally:
        gw.kill()
