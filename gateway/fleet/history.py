"""A fleet's history written fast: days of simulated time in seconds, records as live ingest
writes them, and the ground truth beside them.

Running ``gateway simulate`` against a gateway for a week takes a week. Here each device's unit
(``protocol_units.py``, the simulator's own) runs on a simulated clock instead, with no socket:
what it writes is fed to a session of its codec, the session's replies go back to the unit (so
logins, ACKs, windows and heartbeats behave as live), and every frame becomes its raw record,
parsed records and notifications through the builders the pipeline and replay share
(:class:`~parser.records.RawRecord`, :func:`parser.rules.evaluate_frame`). Files are laid out
as the local sink's (``raw/``, ``parsed/``, ``notifications/``; one file per stream per day) and
``truth.jsonl`` holds each vehicle's :class:`~gateway.fleet.truth.DayTruth` per day.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import msgspec

from gateway.fleet.model import Vehicle
from gateway.fleet.protocol_units import UNITS
from gateway.fleet.simulator import DEFAULT_IMEI_BASE, IMEI_DIGITS
from gateway.fleet.stats import CodecStats
from gateway.fleet.truth import TruthMeter
from gateway.fleet.unit import DeviceUnit, UnitSettings
from parser.codec import Codec, Session
from parser.events import Frame, Login
from parser.records import RAW_SCHEMA, RawRecord, iso_ms, raw_record_id, to_json
from parser.rules import NotificationEngine, evaluate_frame

DAY_S = 86_400
STREAMS = ("raw", "parsed", "notifications")
TRUTH_FILE = "truth.jsonl"
RECEIVE_LATENCY_MS = 40  # from a frame's writing to its arrival; any small constant does


@dataclass(frozen=True, slots=True)
class HistoryConfig:
    devices: int
    start: int  # Unix seconds, a UTC midnight
    days: int
    codecs: tuple[str, ...] = ("evb1",)
    frame_s: float = 10.0  # one telemetry frame (Teltonika: record) per device this often
    faults_per_min: float = 0.0
    seed: int = 0
    imei_base: int = DEFAULT_IMEI_BASE


class _Device:
    """One unit and its codec session, on the simulated clock."""

    def __init__(self, unit: DeviceUnit, session: Session, peer: str) -> None:
        self.unit = unit
        self.session = session
        self.peer = peer


class FleetHistory:
    """Writes ``config``'s days under ``data_dir``; ``run`` returns the ground truth."""

    def __init__(
        self,
        config: HistoryConfig,
        codec: Callable[[str], Codec],
        engine: NotificationEngine | None,
    ) -> None:
        if config.start % DAY_S:
            raise ValueError("start must be a UTC midnight")
        self.config = config
        self._codec = codec
        self._engine = engine
        self._encode_notification = msgspec.json.Encoder().encode
        self.meters: dict[str, TruthMeter] = {}
        self.records = dict.fromkeys(STREAMS, 0)

    def run(self, data_dir: Path) -> dict[str, dict[str, dict[str, float | int]]]:
        """Every day's files and ``truth.jsonl``; the truth as ``{device: {date: values}}``."""
        config = self.config
        devices = [self._device(index) for index in range(config.devices)]
        for day in range(config.days):
            day_start = config.start + day * DAY_S
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(day_start))
            files: dict[str, IO[bytes]] = {}
            try:
                for stream in STREAMS:
                    (data_dir / stream).mkdir(parents=True, exist_ok=True)
                    files[stream] = (data_dir / stream / f"{stream}-{stamp}-1-0001.jsonl").open(
                        "wb"
                    )
                for index, device in enumerate(devices):
                    # Devices sample at their own phase within the period, as a fleet does.
                    phase = config.frame_s * index / max(1, config.devices)
                    self._day(device, day_start + phase, day_start + DAY_S, files)
            finally:
                for f in files.values():
                    f.close()
        truth = {device_id: meter.days for device_id, meter in self.meters.items()}
        with (data_dir / TRUTH_FILE).open("w", encoding="utf-8") as out:
            for device_id, days in truth.items():
                for date, values in days.items():
                    line = {"device_id": device_id, "date": date, **values.as_dict()}
                    out.write(json.dumps(line) + "\n")
        return {d: {date: v.as_dict() for date, v in days.items()} for d, days in truth.items()}

    def _device(self, index: int) -> _Device:
        config = self.config
        codec = config.codecs[index % len(config.codecs)]
        device_id = str(config.imei_base + index).zfill(IMEI_DIGITS)
        # Seeded as the live simulator seeds them: the same device gets the same car.
        vehicle = Vehicle(
            random.Random(f"{config.seed}:vehicle:{index}"),
            float(config.start),
            faults_per_min=config.faults_per_min,
        )
        self.meters[device_id] = TruthMeter(vehicle)
        unit = UNITS[codec](
            device_id,
            vehicle,
            CodecStats(codec, None, None),
            settings=UnitSettings(),
            rng=random.Random(f"{config.seed}:unit:{index}"),
            epoch_offset_s=0.0,  # the unit's clock is the simulated wall clock
        )
        unit.start(float(config.start))
        device = _Device(unit, self._codec(codec).session(), f"10.0.{index >> 8}.{index & 255}:1")
        return device

    def _day(self, device: _Device, first: float, end: float, files: dict[str, IO[bytes]]) -> None:
        unit = device.unit
        period = self.config.frame_s
        if not unit.logged_in:
            self._deliver(device, unit.connected(first), first, files)
        now = first
        while now < end:
            unit.sample(now)
            self._deliver(device, unit.pump(now), now, files)
            now += period

    def _deliver(
        self, device: _Device, out: list[bytes], now: float, files: dict[str, IO[bytes]]
    ) -> None:
        """What the unit wrote, through its codec session into records; replies back to it."""
        unit = device.unit
        codec = unit.codec
        for data in out:
            now_ms = int(now * 1000) + RECEIVE_LATENCY_MS
            for event in device.session.feed(data):
                if not isinstance(event, Frame | Login):
                    continue  # a Teltonika keepalive byte
                if isinstance(event, Frame) and event.error_code is not None:
                    raise AssertionError(f"{codec} frame did not decode: {event.error_detail}")
                raw = RawRecord(
                    RAW_SCHEMA,
                    raw_record_id(event.device_id, codec, event.payload),
                    event.device_id,
                    codec,
                    "tcp",
                    device.peer,
                    iso_ms(now_ms),
                    event.payload,
                )
                parsed, notes = evaluate_frame(
                    self._engine, raw, event.readings, now_ms / 1000, now_ms
                )
                files["raw"].write(to_json(raw) + b"\n")
                self.records["raw"] += 1
                if parsed:
                    files["parsed"].write(b"\n".join(map(to_json, parsed)) + b"\n")
                    self.records["parsed"] += len(parsed)
                for note in notes:
                    files["notifications"].write(self._encode_notification(note) + b"\n")
                    self.records["notifications"] += 1
                if event.reply:
                    replies = unit.received(event.reply, now + RECEIVE_LATENCY_MS / 1000)
                    if replies:  # the next frames the ACK let out of the window
                        self._deliver(device, replies, now, files)
