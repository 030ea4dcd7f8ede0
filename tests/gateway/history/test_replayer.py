"""The Replayer's typed options: filters select raw records, without a command line."""

from __future__ import annotations

import pytest

from gateway.common.settings_base import ConfigError
from gateway.history.replay import Replayer, ReplayOptions
from gateway.settings import Settings
from parser.records import RAW_SCHEMA, RawRecord
from tests.parser.streams import evb1_heartbeat


def raw(number: int, device: str, received_at: str, codec: str = "evb1") -> RawRecord:
    payload = evb1_heartbeat(number)
    return RawRecord(RAW_SCHEMA, f"{number:026x}", device, codec, "tcp", None, received_at, payload)


RAWS = [
    raw(1, "a", "2026-01-01T00:00:00.000Z"),
    raw(2, "b", "2026-01-01T00:00:01.000Z"),
    raw(3, "a", "2026-01-01T00:00:02.000Z"),
    raw(4, "a", "2026-01-01T00:00:03.000Z"),
]


def test_no_options_replay_every_raw_record() -> None:
    replayer = Replayer(Settings(), ReplayOptions())
    assert [p.raw_id for p in replayer.parsed(RAWS)] == [r.id for r in RAWS]
    assert replayer.summary.filtered_out == 0


def test_devices_and_a_time_window_select_raw_records() -> None:
    options = ReplayOptions(
        devices=("a",), since="2026-01-01T00:00:01+00:00", until="2026-01-01T00:00:03Z"
    )
    replayer = Replayer(Settings(), options)
    assert [p.raw_id for p in replayer.parsed(RAWS)] == [RAWS[2].id]
    assert (replayer.summary.raw_records, replayer.summary.filtered_out) == (4, 3)


def test_a_codec_filter_leaves_other_codecs_out() -> None:
    replayer = Replayer(Settings(), ReplayOptions(codecs=("gt06",)))
    assert replayer.parsed(RAWS) == []
    assert replayer.summary.filtered_out == 4


def test_a_time_that_is_not_iso_is_a_config_error_naming_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"--until 'soon': expected an ISO 8601 time"):
        Replayer(Settings(), ReplayOptions(until="soon"))
