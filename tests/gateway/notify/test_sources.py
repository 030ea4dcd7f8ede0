"""Every notification source through the real codecs: device bytes, decoded, then the one step
live ingest and replay share (``evaluate_frame``) with the settings' engine."""

from __future__ import annotations

from gateway.fleet import encoders as enc
from gateway.fleet.model import Fault, FaultKind, Severity, Subsystem
from gateway.notify.settings import NotificationSettings, TeltonikaEventSettings
from gateway.pipeline.registry import CodecRegistry, default_layout_dirs
from parser.records import RAW_SCHEMA, RawRecord
from parser.rules import Notification, evaluate_frame
from tests.gateway.fleet.states import IMEI, STATES

STATE = STATES[0]
SETTINGS = NotificationSettings(
    teltonika_events=[TeltonikaEventSettings(io_id=252, code="tcu_unplugged", severity="critical")]
)


def notify(codec_name: str, frame: bytes) -> list[Notification]:
    codec = CodecRegistry.load(default_layout_dirs()).create(codec_name)
    raw = RawRecord(RAW_SCHEMA, "raw1", IMEI, codec_name, "tcp", None, "", frame)
    _, notes = evaluate_frame(SETTINGS.engine(), raw, codec.decode(frame), 0.0, 0)
    return notes


def fault(kind: FaultKind) -> Fault:
    return Fault(kind, STATE.ts, 0x0102, Severity.CRITICAL, Subsystem.BMS, 40)


def test_an_evb1_fault_is_renamed_by_alarm_codes() -> None:
    [note] = notify("evb1", enc.evb1_fault(7, fault(FaultKind.ISOLATION)))
    assert (note.code, note.severity, note.state) == ("isolation_fault", "critical", "open")
    assert note.values == {"value": 40, "subsystem": "bms"}


def test_a_gt06_alarm_packet() -> None:
    [note] = notify("gt06", enc.gt06_alarm(STATE, fault(FaultKind.ISOLATION), 3))
    assert (note.code, note.severity) == ("power_cut", "critical")


def test_teltonika_panic_records_and_configured_event_io_ids() -> None:
    tail = enc.teltonika_record_tail
    packet = enc.teltonika_packet(
        [
            enc.teltonika_record(STATE.ts, 0, tail(STATE)),  # periodic: nothing
            enc.teltonika_record(STATE.ts, 2, tail(STATE, event_io=2)),  # panic
            enc.teltonika_record(STATE.ts, 1, tail(STATE, event_io=252)),  # configured
            enc.teltonika_record(STATE.ts, 1, tail(STATE, event_io=239)),  # not configured
        ]
    )
    notes = notify("teltonika", packet)
    assert [(n.code, n.severity) for n in notes] == [
        ("teltonika_panic", "critical"),
        ("tcu_unplugged", "critical"),
    ]
    assert len({n.id for n in notes}) == 2
