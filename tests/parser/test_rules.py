"""Notification engine: readings in, notifications out, driven by a fake clock."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parser.records import (
    RAW_SCHEMA,
    Alarm,
    MetricValue,
    RawRecord,
    Reading,
    iso_ms,
    parsed_records,
)
from parser.rules import (
    NOTIFICATION_SCHEMA,
    Notification,
    NotificationEngine,
    Rule,
    evaluate_frame,
    notification_id,
    parse_rules,
)

T0_MS = 1_560_161_086_000  # 2019-06-10T10:04:46.000Z
OVERTEMP = Rule("battery_overtemp", "cell_temp_max_c", ">=", 60.0, "critical", hold_s=10.0)
LOW_SOC = Rule("low_soc", "soc_pct", "<", 10.0, "warning", clear_threshold=15.0)


def reading(ts_ms: int | None = T0_MS, **metrics: MetricValue) -> Reading:
    return Reading("telemetry", ts_ms, metrics=dict(metrics))


def alarm_reading(*alarms: Alarm) -> Reading:
    return Reading("alarm", T0_MS, alarms=alarms)


def engine(
    rules: list[Rule] | None = None,
    *,
    reminder_s: float | None = None,
    rate_per_s: float = 1000.0,
    burst: int = 1000,
    **kwargs: Any,
) -> NotificationEngine:
    return NotificationEngine(
        [OVERTEMP, LOW_SOC] if rules is None else rules,
        reminder_s=reminder_s,
        rate_per_s=rate_per_s,
        burst=burst,
        **kwargs,
    )


class Clock:
    """Feeds one reading at a time at a chosen monotonic ``now``."""

    def __init__(self, eng: NotificationEngine, device_id: str = "dev1") -> None:
        self.eng = eng
        self.device_id = device_id

    def at(self, now: float, r: Reading) -> list[Notification]:
        return self.eng.evaluate(self.device_id, "raw1", [r], now, T0_MS + int(now * 1000))

    def states(self, now: float, r: Reading) -> list[tuple[str, str]]:
        return [(n.code, n.state) for n in self.at(now, r)]


# --- rules: open, hold, reminder, clear -------------------------------------------------------


def test_open_without_hold_is_immediate_and_carries_what_triggered_it() -> None:
    clock = Clock(engine())
    [n] = clock.at(5.0, reading(soc_pct=8.5))
    assert n == Notification(
        NOTIFICATION_SCHEMA,
        notification_id("raw1", 0, "low_soc", "open"),
        "dev1",
        "low_soc",
        "warning",
        "open",
        {"soc_pct": 8.5},
        "2019-06-10T10:04:46.000Z",
        iso_ms(T0_MS + 5000),
        "raw1",
        False,
        False,
    )
    # JSON-ready: encodes with the field order of the record contract.
    doc = msgspec.json.decode(msgspec.json.encode(n))
    assert list(doc) == [
        "schema",
        "id",
        "device_id",
        "code",
        "severity",
        "state",
        "values",
        "ts",
        "detected_at",
        "raw_id",
        "suppressed",
        "replayed",
    ]


def test_hold_time_must_elapse_continuously() -> None:
    clock = Clock(engine())
    assert clock.states(0.0, reading(cell_temp_max_c=61)) == []
    assert clock.states(9.9, reading(cell_temp_max_c=62)) == []
    # Dipping below the threshold restarts the hold.
    assert clock.states(10.0, reading(cell_temp_max_c=59)) == []
    assert clock.states(11.0, reading(cell_temp_max_c=60)) == []
    assert clock.states(20.9, reading(cell_temp_max_c=60)) == []
    assert clock.states(21.0, reading(cell_temp_max_c=60)) == [("battery_overtemp", "open")]
    assert clock.states(22.0, reading(cell_temp_max_c=65)) == []
    assert clock.states(23.0, reading(cell_temp_max_c=50)) == [("battery_overtemp", "clear")]
    # After a clear the hold starts over.
    assert clock.states(24.0, reading(cell_temp_max_c=70)) == []
    assert clock.states(34.0, reading(cell_temp_max_c=70)) == [("battery_overtemp", "open")]


def test_reminders_at_the_interval_while_open_and_none_after_clear() -> None:
    clock = Clock(engine(reminder_s=60.0))
    assert clock.states(0.0, reading(soc_pct=5)) == [("low_soc", "open")]
    assert clock.states(59.0, reading(soc_pct=5)) == []
    assert clock.states(60.0, reading(soc_pct=5)) == [("low_soc", "reminder")]
    assert clock.states(100.0, reading(soc_pct=5)) == []
    assert clock.states(125.0, reading(soc_pct=5)) == [("low_soc", "reminder")]
    assert clock.states(130.0, reading(soc_pct=20)) == [("low_soc", "clear")]
    assert clock.states(500.0, reading(soc_pct=20)) == []


def test_no_reminders_when_not_configured() -> None:
    clock = Clock(engine(reminder_s=None))
    assert clock.states(0.0, reading(soc_pct=5)) == [("low_soc", "open")]
    assert clock.states(10_000.0, reading(soc_pct=5)) == []


def test_hysteresis_clears_only_past_clear_threshold() -> None:
    clock = Clock(engine())
    assert clock.states(0.0, reading(soc_pct=9.9)) == [("low_soc", "open")]
    assert clock.states(1.0, reading(soc_pct=12)) == []  # above threshold, below clear
    assert clock.states(2.0, reading(soc_pct=14.9)) == []
    [n] = clock.at(3.0, reading(soc_pct=15))
    assert (n.state, n.values, n.severity) == ("clear", {"soc_pct": 15}, "warning")
    # Between the two thresholds does not re-open.
    assert clock.states(4.0, reading(soc_pct=12)) == []
    assert clock.states(5.0, reading(soc_pct=9)) == [("low_soc", "open")]


def test_without_clear_threshold_it_clears_as_soon_as_false() -> None:
    clock = Clock(engine([Rule("hot", "t", ">", 10.0, "info")]))
    assert clock.states(0.0, reading(t=11)) == [("hot", "open")]
    assert clock.states(1.0, reading(t=10)) == [("hot", "clear")]


def test_missing_or_non_numeric_metric_leaves_state_unchanged() -> None:
    clock = Clock(engine(reminder_s=1.0))
    assert clock.states(0.0, reading(cell_temp_max_c=70)) == []
    # Pending hold survives readings without the metric (or with a null, a string, a NaN).
    assert clock.states(3.0, reading(soc_pct=50)) == []
    assert clock.states(4.0, reading(cell_temp_max_c=None)) == []
    assert clock.states(5.0, reading(cell_temp_max_c="hot")) == []
    assert clock.states(6.0, reading(cell_temp_max_c=float("nan"))) == []
    assert clock.states(7.0, Reading("heartbeat", None)) == []
    assert clock.states(10.0, reading(cell_temp_max_c=70)) == [("battery_overtemp", "open")]
    # An open condition is neither cleared nor reminded by readings without the metric.
    assert clock.states(50.0, reading(soc_pct=50)) == []
    assert clock.states(51.0, reading(cell_temp_max_c=20)) == [("battery_overtemp", "clear")]


def test_bool_metrics_compare_as_numbers() -> None:
    clock = Clock(engine([Rule("isolation_fault", "isolation_ok", "==", 0.0, "critical")]))
    assert clock.states(0.0, reading(isolation_ok=True)) == []
    assert clock.states(1.0, reading(isolation_ok=False)) == [("isolation_fault", "open")]
    assert clock.states(2.0, reading(isolation_ok=True)) == [("isolation_fault", "clear")]


def test_state_is_per_device_and_readings_keep_their_order_and_ts() -> None:
    eng = engine()
    batch = [reading(T0_MS, soc_pct=5), reading(T0_MS + 1000, soc_pct=50), reading(None, soc_pct=1)]
    out = eng.evaluate("a", "raw-a", batch, 0.0, T0_MS)
    assert [(n.state, n.ts) for n in out] == [
        ("open", "2019-06-10T10:04:46.000Z"),
        ("clear", "2019-06-10T10:04:47.000Z"),
        ("open", None),
    ]
    assert all(n.raw_id == "raw-a" and n.device_id == "a" for n in out)
    assert [n.state for n in eng.evaluate("b", "raw-b", [reading(soc_pct=5)], 0.0, T0_MS)] == [
        "open"
    ]


def test_only_devices_with_a_condition_open_or_pending_hold_state() -> None:
    eng = engine()
    assert eng.evaluate("a", "r", [reading(speed_kmh=50), Reading("login", None)], 0.0, T0_MS) == []
    assert eng.evaluate("a", "r", [reading(soc_pct=50, cell_temp_max_c=30)], 0.0, T0_MS) == []
    assert eng.tracked_devices == 0
    eng.evaluate("a", "r", [reading(cell_temp_max_c=61)], 1.0, T0_MS)  # pending hold
    assert eng.tracked_devices == 1
    eng.evaluate("a", "r", [reading(cell_temp_max_c=59)], 2.0, T0_MS)  # idle again
    assert eng.tracked_devices == 0
    eng.evaluate("a", "r", [reading(soc_pct=5), reading(soc_pct=50)], 3.0, T0_MS)  # open, clear
    assert eng.tracked_devices == 0


# --- protocol alarms ----------------------------------------------------------------------------


def test_protocol_alarms_at_or_above_min_severity_open_once_each() -> None:
    eng = engine()
    r = alarm_reading(
        Alarm("EVB1-0x0102", "critical", "bms", 7),
        Alarm("fence_in", "info", "tcu", 4),
        Alarm("vibration", "warning", "tcu", 3),
        Alarm("EVB1-0x0200", "unknown-9", "unknown-5", None),
    )
    out = eng.evaluate("dev1", "raw1", [r], 0.0, T0_MS)
    assert [(n.code, n.severity, n.state) for n in out] == [
        ("EVB1-0x0102", "critical", "open"),
        ("vibration", "warning", "open"),
        ("EVB1-0x0200", "warning", "open"),  # unknown-N counts as a warning
    ]
    assert out[0].values == {"value": 7, "subsystem": "bms"}
    # Events, not conditions: the same alarm again is a new notification, and none ever clears.
    again = eng.evaluate("dev1", "raw2", [r, reading(soc_pct=80)], 1.0, T0_MS)
    assert [n.state for n in again] == ["open", "open", "open"]


@pytest.mark.parametrize(
    ("minimum", "codes"),
    [("info", ["i", "w", "c"]), ("warning", ["w", "c"]), ("critical", ["c"])],
)
def test_alarm_min_severity(minimum: Any, codes: list[str]) -> None:
    eng = engine(alarm_min_severity=minimum)
    r = alarm_reading(Alarm("i", "info"), Alarm("w", "warning"), Alarm("c", "critical"))
    assert [n.code for n in eng.evaluate("d", "r", [r], 0.0, T0_MS)] == codes


def test_alarm_reading_metrics_are_evaluated_too() -> None:
    eng = engine()
    r = Reading(
        "alarm", T0_MS, metrics={"soc_pct": 3}, alarms=(Alarm("teltonika_panic", "critical"),)
    )
    out = eng.evaluate("d", "r", [r], 0.0, T0_MS)
    assert [(n.code, n.state) for n in out] == [("teltonika_panic", "open"), ("low_soc", "open")]


# --- storm control ------------------------------------------------------------------------------


def test_rate_limit_marks_suppressed_and_counts_them() -> None:
    eng = engine(rate_per_s=1.0, burst=2)
    r = alarm_reading(*(Alarm(f"a{i}", "critical") for i in range(5)))
    out = eng.evaluate("d", "r", [r], 0.0, T0_MS)
    # Nothing dropped: all five come back, three of them marked.
    assert [n.suppressed for n in out] == [False, False, True, True, True]
    assert eng.suppressed == 3
    # 1.5 s later one token has come back (and half of another).
    out = eng.evaluate("d", "r", [r], 1.5, T0_MS)
    assert [n.suppressed for n in out] == [False, True, True, True, True]
    assert eng.suppressed == 7
    # The bucket never holds more than the burst.
    out = eng.evaluate("d", "r", [r], 1000.0, T0_MS)
    assert [n.suppressed for n in out] == [False, False, True, True, True]
    assert eng.suppressed == 10


def test_suppressed_open_still_moves_the_state() -> None:
    eng = engine([LOW_SOC], rate_per_s=0.0, burst=1)
    clock = Clock(eng)
    [first] = clock.at(0.0, reading(soc_pct=1))
    [cleared] = clock.at(1.0, reading(soc_pct=50))
    assert (first.state, first.suppressed) == ("open", False)
    assert (cleared.state, cleared.suppressed) == ("clear", True)
    assert eng.suppressed == 1


def test_clock_going_backwards_does_not_mint_tokens() -> None:
    eng = engine(rate_per_s=1.0, burst=1)
    r = alarm_reading(Alarm("a", "critical"))
    assert not eng.evaluate("d", "r", [r], 10.0, T0_MS)[0].suppressed
    assert eng.evaluate("d", "r", [r], 5.0, T0_MS)[0].suppressed
    assert eng.evaluate("d", "r", [r], 10.5, T0_MS)[0].suppressed
    assert not eng.evaluate("d", "r", [r], 11.0, T0_MS)[0].suppressed


# --- bounded state ------------------------------------------------------------------------------


def test_lru_bound_evicts_least_recently_seen_device() -> None:
    eng = engine([LOW_SOC], max_devices=2)
    for device in ("a", "b"):
        assert [n.state for n in eng.evaluate(device, "r", [reading(soc_pct=1)], 0, T0_MS)] == [
            "open"
        ]
    eng.evaluate("a", "r", [reading(soc_pct=1)], 1, T0_MS)  # touch a: b is now the oldest
    eng.evaluate("healthy", "r", [reading(soc_pct=50)], 2, T0_MS)  # holds no state: no eviction
    assert eng.tracked_devices == 2
    eng.evaluate("c", "r", [reading(soc_pct=2)], 2, T0_MS)
    assert eng.tracked_devices == 2
    # a kept its open state; b was evicted, so its still-low SoC opens again (documented).
    assert eng.evaluate("a", "r", [reading(soc_pct=1)], 3, T0_MS) == []
    assert [n.state for n in eng.evaluate("b", "r", [reading(soc_pct=1)], 4, T0_MS)] == ["open"]
    assert eng.tracked_devices == 2


# --- rule parsing -------------------------------------------------------------------------------


def test_parse_rules_accepts_toml_shapes() -> None:
    rules = parse_rules(
        [
            {
                "code": "battery_overtemp",
                "metric": "cell_temp_max_c",
                "op": ">=",
                "threshold": 60,
                "hold_s": 10,
                "severity": "critical",
                "clear_threshold": 55,
            },
            {
                "code": "low_soc",
                "metric": "soc_pct",
                "op": "<",
                "threshold": 10.0,
                "severity": "info",
            },
        ]
    )
    assert rules == [
        Rule("battery_overtemp", "cell_temp_max_c", ">=", 60.0, "critical", 10.0, 55.0),
        Rule("low_soc", "soc_pct", "<", 10.0, "info"),
    ]
    assert parse_rules([]) == []


GOOD: dict[str, Any] = {"code": "c", "metric": "m", "op": ">=", "threshold": 1, "severity": "info"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"code": None}, r"rules\[1\]\.code: missing"),
        ({"metric": None}, r"rules\[1\]\.metric: missing"),
        ({"code": ""}, r"rules\[1\]\.code: a non-empty string"),
        ({"code": "first"}, r"rules\[1\]\.code: 'first' is used by an earlier rule"),
        ({"metric": 3}, r"rules\[1\]\.metric: a non-empty string"),
        ({"op": "=>"}, r"rules\[1\]\.op: one of >=, >, <=, <, ==, !="),
        ({"threshold": "60"}, r"rules\[1\]\.threshold: a finite number"),
        ({"threshold": True}, r"rules\[1\]\.threshold: a finite number"),
        ({"threshold": float("inf")}, r"rules\[1\]\.threshold: a finite number"),
        ({"hold_s": -1}, r"rules\[1\]\.hold_s: must be >= 0"),
        ({"severity": "fatal"}, r"rules\[1\]\.severity: one of info, warning, critical"),
        ({"clear_threshold": 2}, r"rules\[1\]\.clear_threshold: >= needs clear_threshold <="),
        (
            {"op": "<", "clear_threshold": 0},
            r"rules\[1\]\.clear_threshold: < needs clear_threshold >=",
        ),
        ({"op": "==", "clear_threshold": 1}, r"rules\[1\]\.clear_threshold: not allowed with =="),
        ({"hold": 10}, r"rules\[1\]\.hold: unknown key"),
    ],
)
def test_parse_rules_errors_name_index_and_key(change: dict[str, Any], message: str) -> None:
    entry = {**GOOD, **change}
    entry = {k: v for k, v in entry.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        parse_rules([{**GOOD, "code": "first"}, entry])


def test_parse_rules_rejects_non_table_entry() -> None:
    with pytest.raises(ValueError, match=r"rules\[0\]: a table"):
        parse_rules(["cell_temp_max_c >= 60"])  # type: ignore[list-item]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"reminder_s": 0.0},
        {"rate_per_s": -1.0},
        {"burst": 0},
        {"max_devices": 0},
        {"alarm_min_severity": "fatal"},
        {"event_codes": {252: ("", "warning")}},
        {"event_codes": {252: ("unplug", "fatal")}},
    ],
)
def test_engine_rejects_bad_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        engine(**kwargs)


# --- ids, alarm codes, Teltonika events, reload -------------------------------------------------


def test_notification_ids_are_stable_and_tell_reading_code_and_state_apart() -> None:
    one = notification_id("raw1", 0, "low_soc", "open")
    assert one == notification_id("raw1", 0, "low_soc", "open")
    assert len(one) == 32 and int(one, 16) >= 0
    others = {
        notification_id("raw2", 0, "low_soc", "open"),
        notification_id("raw1", 1, "low_soc", "open"),
        notification_id("raw1", 0, "other", "open"),
        notification_id("raw1", 0, "low_soc", "clear"),
    }
    assert one not in others and len(others) == 4


def test_alarm_codes_rename_protocol_alarms_in_notifications() -> None:
    eng = engine(alarm_codes={"EVB1-0x0102": "isolation_fault"})
    r = alarm_reading(Alarm("EVB1-0x0102", "critical", "bms", 40), Alarm("sos", "critical"))
    out = eng.evaluate("d", "r", [r], 0.0, T0_MS)
    assert [(n.code, n.values["value"]) for n in out] == [("isolation_fault", 40), ("sos", None)]


def test_an_alarm_mapped_to_a_rule_code_joins_that_rules_condition() -> None:
    eng = engine(alarm_codes={"EVB1-0x0101": "battery_overtemp"})
    clock = Clock(eng)
    fault = alarm_reading(Alarm("EVB1-0x0101", "critical", "thermal", 66))
    # The unit's report opens the condition at once, without the rule's hold time.
    assert clock.states(0.0, fault) == [("battery_overtemp", "open")]
    # The temperatures that follow keep it open: no second open, and a repeated report is
    # the same condition too.
    assert clock.states(1.0, reading(cell_temp_max_c=66)) == []
    assert clock.states(30.0, reading(cell_temp_max_c=64)) == []
    assert clock.states(31.0, fault) == []
    # The rule's metric clears it; the next episode opens again.
    assert clock.states(40.0, reading(cell_temp_max_c=50)) == [("battery_overtemp", "clear")]
    assert eng.tracked_devices == 0
    assert clock.states(50.0, fault) == [("battery_overtemp", "open")]
    # Within one frame: the alarm reading, then a telemetry reading above the threshold.
    other = Clock(eng, "dev2")
    both = other.eng.evaluate("dev2", "r", [fault, reading(cell_temp_max_c=70)], 0.0, T0_MS)
    assert [(n.code, n.state) for n in both] == [("battery_overtemp", "open")]


def test_configured_teltonika_event_io_ids_raise_notifications() -> None:
    eng = engine(event_codes={252: ("unplug", "critical"), 1: ("din1", "info")})
    unplug = Reading("telemetry", T0_MS, io={"252": 1}, attrs={"priority": 1, "event_io_id": 252})
    periodic = Reading("telemetry", T0_MS, attrs={"priority": 0, "event_io_id": 0})
    other = Reading("telemetry", T0_MS, attrs={"event_io_id": 239})
    alarms: dict[int, list[Alarm]] = {}
    out = eng.evaluate("d", "r", [periodic, unplug, other], 0.0, T0_MS, alarms=alarms)
    assert [(n.code, n.severity, n.state, n.values) for n in out] == [
        ("unplug", "critical", "open", {"event_io_id": 252, "value": 1})
    ]
    assert alarms == {1: [Alarm("unplug", "critical", "tcu", 252)]}
    # Configured explicitly, an info event notifies whatever alarm_min_severity says.
    din = Reading("telemetry", T0_MS, attrs={"event_io_id": 1})
    assert [n.code for n in eng.evaluate("d", "r", [din], 1.0, T0_MS)] == ["din1"]


def test_adopt_keeps_state_of_unchanged_rules_only() -> None:
    old = engine(rate_per_s=0.0, burst=3)
    Clock(old).at(0.0, reading(soc_pct=5, cell_temp_max_c=70))  # low_soc open, overtemp pending
    changed = Rule("battery_overtemp", "cell_temp_max_c", ">=", 65.0, "critical", hold_s=10.0)
    new = engine([changed, LOW_SOC], rate_per_s=0.0, burst=3)
    new.adopt(old)
    clock = Clock(new)
    # low_soc is still open (no second open; it clears); the changed rule starts over.
    assert clock.states(10.0, reading(soc_pct=50, cell_temp_max_c=70)) == [("low_soc", "clear")]
    assert clock.states(20.0, reading(cell_temp_max_c=70)) == [("battery_overtemp", "open")]
    # The rate limit's bucket came along: one token was spent before the reload.
    assert [n.suppressed for n in clock.at(30.0, reading(soc_pct=1))] == [True]


# --- one frame: parsed records and notifications (live and replay) ------------------------------


def raw_record(device_id: str | None = "dev1", raw_id: str = "raw1") -> RawRecord:
    return RawRecord(RAW_SCHEMA, raw_id, device_id, "evb1", "tcp", None, iso_ms(T0_MS), b"")


def test_evaluate_frame_puts_rule_notifications_in_the_readings_alarms() -> None:
    eng = engine()
    fault = Alarm("EVB1-0x0101", "critical", "thermal", 66)
    readings = (reading(soc_pct=50), reading(soc_pct=5), Reading("alarm", T0_MS, alarms=(fault,)))
    parsed, notes = evaluate_frame(eng, raw_record(), readings, 0.0, T0_MS)
    assert [(n.code, n.state) for n in notes] == [("low_soc", "open"), ("EVB1-0x0101", "open")]
    assert [p.alarms for p in parsed] == [
        (),
        (Alarm("low_soc", "warning", "rule", 5),),
        (fault,),  # a protocol alarm is in the record already, once
    ]
    # Apart from the alarms, the records are what parsed_records makes.
    assert [p.id for p in parsed] == [p.id for p in parsed_records(raw_record(), readings)]
    parsed, notes = evaluate_frame(eng, raw_record(raw_id="raw2"), (reading(soc_pct=20),), 1, 0)
    assert [n.state for n in notes] == ["clear"]
    assert parsed[0].alarms == (Alarm("low_soc", "cleared", "rule", 20),)


def test_evaluate_frame_is_the_same_for_live_and_replay() -> None:
    readings = (reading(soc_pct=5), alarm_reading(Alarm("sos", "critical")))
    live = evaluate_frame(engine(), raw_record(), readings, 0.0, T0_MS)
    replay = evaluate_frame(engine(), raw_record(), readings, 0.0, T0_MS, replayed=True)
    assert live[0] == replay[0]
    assert [msgspec.structs.replace(n, replayed=False) for n in replay[1]] == live[1]
    assert all(n.replayed for n in replay[1])


def test_evaluate_frame_without_engine_or_device_has_no_notifications() -> None:
    readings = (reading(soc_pct=5),)
    expected = parsed_records(raw_record(), readings)
    assert evaluate_frame(None, raw_record(), readings, 0.0, T0_MS) == (expected, [])
    anonymous = raw_record(device_id=None)
    assert evaluate_frame(engine(), anonymous, readings, 0.0, T0_MS)[1] == []


# --- property -----------------------------------------------------------------------------------

steps = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.floats(min_value=0, max_value=30),  # time advance, s
        st.one_of(st.none(), st.integers(min_value=0, max_value=100)),  # soc_pct (None: absent)
        st.one_of(st.none(), st.floats(min_value=40, max_value=80)),  # cell_temp_max_c
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(steps=steps, reminder_s=st.one_of(st.none(), st.floats(min_value=1, max_value=60)))
def test_open_and_clear_alternate_per_device_and_code(
    steps: list[tuple[str, float, int | None, float | None]], reminder_s: float | None
) -> None:
    eng = engine(reminder_s=reminder_s, rate_per_s=0.5, burst=3)
    now = 0.0
    is_open: dict[tuple[str, str], bool] = {}
    emitted = 0
    for device, advance, soc, temp in steps:
        now += advance
        metrics: dict[str, MetricValue] = {}
        if soc is not None:
            metrics["soc_pct"] = soc
        if temp is not None:
            metrics["cell_temp_max_c"] = temp
        for n in eng.evaluate(device, "r", [Reading("telemetry", T0_MS, metrics=metrics)], now, 0):
            emitted += 1
            key = (n.device_id, n.code)
            was_open = is_open.get(key, False)
            if n.state == "open":
                assert not was_open, f"second open for {key} without a clear"
                is_open[key] = True
            else:
                assert was_open, f"{n.state} for {key} that is not open"
                is_open[key] = n.state == "reminder"
    assert 0 <= eng.suppressed <= emitted


def test_snapshot_and_restore_carry_rule_state_through_json() -> None:
    eng = engine()
    clock = Clock(eng)
    assert clock.states(1.0, reading(soc_pct=5)) == [("low_soc", "open")]
    clock.at(2.0, reading(cell_temp_max_c=70))  # overtemp pending since 2.0
    saved = json.loads(json.dumps(eng.snapshot()))
    again = engine()
    assert again.restore(saved)
    later = Clock(again)
    assert later.states(3.0, reading(soc_pct=5)) == []  # still open: no second open
    assert later.states(12.0, reading(cell_temp_max_c=70)) == [("battery_overtemp", "open")]
    assert later.states(13.0, reading(soc_pct=50)) == [("low_soc", "clear")]
    # Made under other rules, or not a snapshot at all: nothing is taken.
    other = engine([LOW_SOC])
    assert not other.restore(saved) and other.tracked_devices == 0
    assert not engine().restore({"rules": "x"})
