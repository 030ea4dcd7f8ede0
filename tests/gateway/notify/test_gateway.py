"""The real ``gateway run`` process: EVB1 fault frames and rule-tripping telemetry over TCP give
notifications in data/notifications, on a signed webhook and in the parsed records' alarms; a
fault frame is ACKed only once its notification is on disk; SIGHUP reloads the rules; /metrics
shows it all."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.gatewayproc import GatewayProcess, read_records, wait_for
from tests.gateway.notify.faults import (
    ACK_BYTES,
    FAULT,
    HEARTBEAT,
    IMEI,
    RULES,
    TELEMETRY,
    Device,
    fault,
    start,
    telemetry,
)
from tests.gateway.notify.receiver import WebhookReceiver, threaded_receiver
from tests.parser.streams import evb1_ack, evb1_heartbeat

SECRET = "webhook-secret-for-tests"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with threaded_receiver(SECRET.encode()) as r:
        yield r


def notifications(gw: GatewayProcess) -> list[dict[str, Any]]:
    return read_records(gw.data_dir, "notifications")


def block_notifications(gw: GatewayProcess) -> Path:
    """Put a file where notifications/ is: writing there fails (and is retried) as on a broken
    disk, with no test hook involved, until the file is removed. The gateway must not have
    written a notification yet (an open file would still take writes)."""
    directory = gw.data_dir / "notifications"
    directory.rmdir()
    directory.write_text("in the way")
    return directory


def test_faults_and_rule_trips_notify_everywhere_and_show_in_the_alarms(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    secret_file = tmp_path / "webhook.secret"
    secret_file.write_text(SECRET)
    toml = RULES.format(overtemp=60, low_soc=10) + (
        f"[notifications.targets.webhook]\nurl = '{receiver.url}'\nsecret_file = '{secret_file}'\n"
    )
    gw = start(tmp_path, toml)
    try:
        dev = Device(gw.ports["evb1"])
        # 0x0201 is no rule's code (0x0101 would join battery_overtemp: tests/parser/test_rules.py)
        dev.send(fault(1, code=0x0201), 1, FAULT)
        dev.send(fault(2, code=0x0300, severity=0), 2, FAULT)  # info: below the minimum
        dev.send(telemetry(3, cell_t_max=65), 3, TELEMETRY)
        dev.send(telemetry(4, cell_t_max=58), 4, TELEMETRY)  # above the clear threshold
        dev.send(telemetry(5, cell_t_max=50), 5, TELEMETRY)
        dev.sock.close()
        wanted = [
            ("EVB1-0x0201", "critical", "open"),
            ("battery_overtemp", "critical", "open"),
            ("battery_overtemp", "critical", "clear"),
        ]
        notes = notifications(gw)  # the ACKs above came after these writes
        assert [(n["code"], n["severity"], n["state"]) for n in notes] == wanted
        assert wait_for(lambda: len(receiver.taken) == 3)
        assert receiver.taken == notes and receiver.rejected == 0
        first, opened, cleared = notes
        assert first["device_id"] == IMEI and first["ts"] == "2026-01-01T00:00:01.000Z"
        assert first["values"] == {"value": 66, "subsystem": "thermal"}
        assert (opened["values"], cleared["values"]) == (
            {"cell_temp_max_c": 65},
            {"cell_temp_max_c": 50},
        )
        assert set(first) >= {"device_id", "code", "severity", "state", "values", "ts"}
        assert set(first) >= {"detected_at", "raw_id", "id"} and not first["suppressed"]

        parsed = {p["raw_id"]: p for p in read_records(gw.data_dir, "parsed")}
        assert parsed[first["raw_id"]]["alarms"] == [
            {"code": "EVB1-0x0201", "severity": "critical", "subsystem": "thermal", "value": 66}
        ]
        assert parsed[opened["raw_id"]]["alarms"] == [
            {"code": "battery_overtemp", "severity": "critical", "subsystem": "rule", "value": 65}
        ]
        assert parsed[cleared["raw_id"]]["alarms"] == [
            {"code": "battery_overtemp", "severity": "cleared", "subsystem": "rule", "value": 50}
        ]

        labels = {"code": "battery_overtemp", "severity": "critical"}
        assert gw.metric("gateway_notifications_total", state="open", **labels) == 1
        assert gw.metric("gateway_notifications_total", code="EVB1-0x0300") == 0  # info
        assert gw.metric("gateway_notification_deliveries_total", target="webhook") == 3
        for target in ("local", "webhook"):
            count = "gateway_notification_delivery_seconds_count"
            assert gw.metric(count, target=target) == 3
        assert gw.metric("gateway_notification_queue", target="webhook") == 0
        assert gw.stop() == 0
    finally:
        gw.kill()


def test_a_fault_frame_is_acked_only_once_its_notification_is_on_disk(tmp_path: Path) -> None:
    gw = start(tmp_path, RULES.format(overtemp=60, low_soc=10))
    try:
        blocker = block_notifications(gw)
        dev = Device(gw.ports["evb1"])
        dev.sock.send(fault(1))
        # The frame's raw and parsed records are written; its notification cannot be.
        assert wait_for(
            lambda: any(p["kind"] == "alarm" for p in read_records(gw.data_dir, "parsed"))
        )
        assert wait_for(lambda: gw.metric("gateway_sink_errors_total", stream="notifications") >= 1)
        # Another device's frame without a notification is not held up by it (this device's
        # next ACK is: replies leave in the order their frames arrived).
        other = Device(gw.ports["evb1"], imei="356307042441021")
        other.send(evb1_heartbeat(2), 2, HEARTBEAT)
        other.sock.close()
        blocker.unlink()
        # The retry writes it, and only then does the fault's ACK leave.
        assert dev.sock.recv_exact(ACK_BYTES, timeout=15) == evb1_ack(1, FAULT)
        [note] = notifications(gw)
        assert (note["code"], note["state"]) == ("battery_overtemp", "open")  # alarm_codes
        dev.sock.close()
        assert gw.stop() == 0
    finally:
        gw.kill()


def test_sighup_reloads_rules_and_keeps_the_state_of_unchanged_ones(tmp_path: Path) -> None:
    gw = start(tmp_path, RULES.format(overtemp=60, low_soc=10))
    try:
        dev = Device(gw.ports["evb1"])
        dev.send(telemetry(1, cell_t_max=65, soc_pct=15.0), 1, TELEMETRY)
        (tmp_path / "gateway.toml").write_text(RULES.format(overtemp=60, low_soc=20))
        gw.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: gw.events("notification rules reloaded"))
        dev.send(telemetry(2, cell_t_max=66, soc_pct=15.0), 2, TELEMETRY)
        dev.send(telemetry(3, cell_t_max=40, soc_pct=15.0), 3, TELEMETRY)
        dev.sock.close()
        # low_soc now fires at 15 %; battery_overtemp did not change, so it stayed open
        # across the reload (no second open) and its clear still came.
        assert [(n["code"], n["state"]) for n in notifications(gw)] == [
            ("battery_overtemp", "open"),
            ("low_soc", "open"),
            ("battery_overtemp", "clear"),
        ]
        assert gw.stop() == 0
    finally:
        gw.kill()


def test_under_the_accepted_policy_the_ack_does_not_wait(tmp_path: Path) -> None:
    listener = "[[listeners]]\ncodec = 'evb1'\nhost = '127.0.0.1'\nport = 0\n"
    config = tmp_path / "gateway.toml"
    config.write_text(
        listener + "ack_policy = 'accepted'\n" + RULES.format(overtemp=60, low_soc=10)
    )
    gw = GatewayProcess(tmp_path / "data", codecs=(), config=config)
    try:
        blocker = block_notifications(gw)
        dev = Device(gw.ports["evb1"])
        dev.send(fault(1), 1, FAULT)  # ACKed while its notification cannot be written
        assert notifications(gw) == []
        blocker.unlink()
        assert wait_for(lambda: len(notifications(gw)) == 1, timeout=15)
        dev.sock.close()
        assert gw.stop() == 0
    finally:
        gw.kill()


def test_a_crash_loses_no_acked_notification_and_resends_no_settled_one(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """The webhook is down while faults are ACKed (their notifications are on disk and being
    retried); the gateway is SIGKILLed and started again with the webhook up: it sends exactly
    the unsettled ones, and not the one delivered before."""
    toml = RULES.format(overtemp=60, low_soc=10) + (
        "[notifications.retry]\nfirst_s = 0.05\nmax_s = 0.2\nmax_attempts = 1000\n"
        f"[notifications.targets.webhook]\nurl = '{receiver.url}'\nsecret = '{SECRET}'\n"
    )
    cursors = tmp_path / "data" / "notification-cursors.json"
    gw = start(tmp_path, toml)
    try:
        dev = Device(gw.ports["evb1"])
        dev.send(fault(1, code=0x0201), 1, FAULT)
        assert wait_for(lambda: len(receiver.taken) == 1)
        [delivered] = receiver.taken
        # The cursor is saved within a second of moving; past that the kill would only make
        # the delivered one go again (allowed, but not what this test looks at).
        wait_for(lambda: cursors.exists() and delivered["id"] in cursors.read_text())
        receiver.statuses = [503]  # down
        dev.send(fault(2, code=0x0202), 2, FAULT)
        dev.send(fault(3, code=0x0203), 3, FAULT)
        assert wait_for(lambda: gw.metric("gateway_notification_retries_total") >= 4)
        dev.sock.close()
        gw.kill()
    finally:
        gw.kill()
    unsettled = notifications(gw)[1:]
    assert [n["code"] for n in unsettled] == ["EVB1-0x0202", "EVB1-0x0203"]
    receiver.statuses = [200]
    receiver.taken.clear()
    gw = start(tmp_path, toml)
    try:
        assert wait_for(lambda: len(receiver.taken) == 2)
        assert [n["id"] for n in receiver.taken] == [n["id"] for n in unsettled]
        assert gw.metric("gateway_notifications_recovered_total", target="webhook") == 2
        assert gw.stop() == 0
    finally:
        gw.kill()
    assert receiver.taken == unsettled  # none twice, the delivered one not again
    assert not (tmp_path / "data" / "dead-letters").exists()
    # Settled by the clean stop: a third start sends nothing.
    assert json.loads(cursors.read_text())["webhook"]["id"] == unsettled[-1]["id"]


def test_a_clean_stop_during_an_outage_leaves_the_notifications_for_the_next_start(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """SIGTERM while the webhook is down dead-lettered the queued notifications (reason
    ``shutdown``, cursor moved past them) where a SIGKILL would have kept them: a restart during
    an outage dropped critical alarms. Now the next start, with the webhook back, sends them."""
    toml = (
        "shutdown_timeout_s = 2\n"
        + RULES.format(overtemp=60, low_soc=10)
        + (
            "[notifications.retry]\nfirst_s = 0.05\nmax_s = 0.2\nmax_attempts = 1000\n"
            f"[notifications.targets.webhook]\nurl = '{receiver.url}'\nsecret = '{SECRET}'\n"
        )
    )
    receiver.statuses = [503]  # down from the start
    gw = start(tmp_path, toml)
    try:
        dev = Device(gw.ports["evb1"])
        dev.send(fault(1, code=0x0201), 1, FAULT)
        dev.send(fault(2, code=0x0202), 2, FAULT)
        assert wait_for(lambda: gw.metric("gateway_notification_retries_total") >= 2)
        dev.sock.close()
        assert gw.stop() == 0
    finally:
        gw.kill()
    assert not list((tmp_path / "data").glob("dead-letters/notifications-*"))
    assert gw.events("notifications left for the next start")
    queued = notifications(gw)
    assert [n["code"] for n in queued] == ["EVB1-0x0201", "EVB1-0x0202"]
    assert receiver.taken == []
    receiver.statuses = [200]  # back
    gw = start(tmp_path, toml)
    try:
        assert wait_for(lambda: len(receiver.taken) == 2)
        assert gw.metric("gateway_notifications_recovered_total", target="webhook") == 2
        assert gw.stop() == 0
    finally:
        gw.kill()
    assert receiver.taken == queued


def test_a_first_start_begins_at_the_end_and_a_lost_cursor_too(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """History written before the webhook was configured is not sent to it; a cursor whose
    notification was removed starts at the end with a warning."""
    gw = start(tmp_path, RULES.format(overtemp=60, low_soc=10))
    try:
        dev = Device(gw.ports["evb1"])
        dev.send(fault(1, code=0x0201), 1, FAULT)
        dev.sock.close()
        assert gw.stop() == 0
    finally:
        gw.kill()
    toml = RULES.format(overtemp=60, low_soc=10) + (
        f"[notifications.targets.webhook]\nurl = '{receiver.url}'\nsecret = '{SECRET}'\n"
    )
    cursors = tmp_path / "data" / "notification-cursors.json"
    for attempt in range(2):
        gw = start(tmp_path, toml)
        try:
            [note] = notifications(gw)
            assert json.loads(cursors.read_text())["webhook"]["id"] == note["id"]
            lost = gw.events(
                "notification cursor not in notifications/ (files removed?); starting at the end"
            )
            assert len(lost) == attempt
            assert gw.stop() == 0
        finally:
            gw.kill()
        cursors.write_text(json.dumps({"webhook": {"file": None, "id": "gone"}}))
    assert receiver.taken == []
