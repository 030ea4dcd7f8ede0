"""``gateway replay``: raw records in, parsed records exactly like live ones out.

Each raw record's payload is fed to a fresh session of its codec — the code path live ingest
takes — and its readings become parsed records through the same builder, so ids
(``<raw id>-<index>``), fields and per-device order match the live output record for record, and
replaying twice yields the same ids. The live notification rules run too (on each frame's
received-at time), so rule alarms in the parsed records match; with ``--notifications`` the
notifications they raise are written, marked ``replayed``, to the sink's notifications stream.

Inputs (:mod:`gateway.history.replay_inputs`): the local sink's ``raw/`` files and Firehose-style
objects (newline-delimited raw records, gzip or plain) given as files or directories or read from
``s3://bucket/prefix``, and legacy captures (hex per line, or binary) with the device id and codec
on the command line. Bad input — a corrupt line, a truncated
gzip member, an unknown codec, a missing bucket — is reported with file (or ``s3://`` object) and
line and skipped; nothing else stops. Records move in batches of a block of input lines, so the
per-record work is the decoding and the building of records, not the plumbing around them.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import msgspec
import uvloop

from gateway.common.settings_base import ConfigError
from gateway.common.sink import Sink
from gateway.history.replay_inputs import S3_SCHEME, InputOptions, ReplayInputs
from gateway.journal.store import Journal
from gateway.notify.settings import NotificationSettings
from gateway.pipeline.registry import CodecRegistry, UnknownCodecError, default_layout_dirs
from gateway.pipeline.settings import JsonCodecSettings, json_codec_factories
from gateway.sinks.kinesis import KinesisSetupError, KinesisSink
from gateway.sinks.settings import SinkSettings
from parser.codec import Codec, CodecOptions
from parser.errors import DecodeError
from parser.events import Frame, Login
from parser.kpl import MAX_PARTITION_KEY_CHARS
from parser.notification import Notification
from parser.records import ParsedRecord, RawRecord, iso_ms, parse_iso_ms, parsed_records, to_json
from parser.rules import evaluate_frame

BATCH_RECORDS = 2000


class CodecListener(Protocol):
    """What replay reads of a listener: its codec's options, so it decodes as live did."""

    @property
    def codec(self) -> str: ...
    @property
    def timezone(self) -> str: ...
    @property
    def variant(self) -> str: ...


class ReplaySettings(Protocol):
    """The parts of the gateway's settings a replay (and ``gateway parse``) reads;
    ``gateway.settings.Settings`` is one. A protocol, not that class: history/ sits below the
    assembler of every package's settings, so it names only the sections it reads."""

    @property
    def listeners(self) -> Sequence[CodecListener]: ...
    @property
    def layout_dirs(self) -> Sequence[Path]: ...
    @property
    def json_codecs(self) -> Mapping[str, JsonCodecSettings]: ...
    @property
    def notifications(self) -> NotificationSettings: ...
    @property
    def sink(self) -> SinkSettings: ...


@dataclass(frozen=True)
class ReplayOptions:
    """What to replay and how: the inputs, filters (``since``/``until`` ISO times, devices,
    codecs; empty: all), and whether to write notifications or only compare (``dry_run``)."""

    inputs: InputOptions = field(default_factory=InputOptions)
    since: str | None = None
    until: str | None = None
    devices: tuple[str, ...] = ()
    codecs: tuple[str, ...] = ()
    notifications: bool = False
    dry_run: bool = False


@dataclass
class Summary:
    raw_records: int = 0
    filtered_out: int = 0
    parsed_records: int = 0
    notifications: int = 0
    not_decoded: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    new: int = 0
    changed: int = 0
    unchanged: int = 0


def _parse_time(value: str | None, flag: str) -> str | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError([f"{flag} {value!r}: expected an ISO 8601 time"]) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return iso_ms(int(moment.timestamp() * 1000))


class Codecs(dict[str, Codec | None]):
    """Codecs by name, each made on first use (None: unknown); a hit is a plain dict lookup."""

    def __init__(self, settings: ReplaySettings) -> None:
        super().__init__()
        self.settings = settings
        self.registry = CodecRegistry.load(
            [*default_layout_dirs(), *settings.layout_dirs],
            configured=json_codec_factories(settings.json_codecs),
        )

    def __missing__(self, name: str) -> Codec | None:
        # The listener's options (GT06 time zone, model variant) make replay decode as live did.
        listener = next((ls for ls in self.settings.listeners if ls.codec == name), None)
        options = CodecOptions(
            timezone=listener.timezone if listener else "UTC",
            variant=listener.variant if listener else "standard",
        )
        try:
            codec: Codec | None = self.registry.create(name, options)
        except UnknownCodecError:
            codec = None
        self[name] = codec
        return codec


class Replayer:
    def __init__(self, settings: ReplaySettings, options: ReplayOptions) -> None:
        self.options = options
        self.settings = settings
        self.codecs = Codecs(settings)
        self.summary = Summary()
        self.since = _parse_time(options.since, "--since")
        self.until = _parse_time(options.until, "--until")
        self.devices = set(options.devices)
        self.codec_filter = set(options.codecs)
        self.filtering = bool(
            self.devices or self.codec_filter or self.since is not None or self.until is not None
        )
        self.inputs = ReplayInputs(options.inputs, self.warn, self.codecs.__getitem__)
        # The live rules, so rule alarms in the parsed records match live ones; a frame's time
        # is when it was received (hold times and reminders run on it as live on its clock).
        notify = settings.notifications
        self.engine = notify.engine() if notify.enabled else None
        self.notifications: list[Notification] = []

    def warn(self, where: str, reason: str, detail: str) -> None:
        self.summary.skipped[reason] += 1
        print(f"gateway replay: {where}: {detail}; skipped", file=sys.stderr)

    def wanted(self, raw: RawRecord) -> bool:
        return not (
            (self.devices and raw.device_id not in self.devices)
            or (self.codec_filter and raw.codec not in self.codec_filter)
            or (self.since is not None and raw.received_at < self.since)
            or (self.until is not None and raw.received_at >= self.until)
        )

    def parsed(self, raws: list[RawRecord]) -> list[ParsedRecord]:
        """The parsed records live ingest made of these raw records, in their order; raw
        records filtered out or not replayable contribute none. A batch per call keeps the
        per-record work to the decode and the record building."""
        summary = self.summary
        summary.raw_records += len(raws)
        if self.filtering:
            wanted = [raw for raw in raws if self.wanted(raw)]
            summary.filtered_out += len(raws) - len(wanted)
            raws = wanted
        codecs = self.codecs
        out: list[ParsedRecord] = []
        # Neighbouring raw records mostly share their received-at millisecond (a gateway
        # receives many frames per millisecond under load): parsed once per run of them.
        received_at, received_ms = "", 0
        for raw in raws:
            codec = codecs[raw.codec]
            if codec is None:
                self.warn(f"raw record {raw.id}", "unknown_codec", f"unknown codec {raw.codec!r}")
                continue
            try:
                # The codec's pure decode is what its session calls for a frame that checked out.
                readings = codec.decode(raw.payload)
            except DecodeError:
                # Not a data frame on its own (a Teltonika IMEI login) or one that did not
                # decode live either: ask a session, as live ingest did.
                session = codec.session()
                events = [*session.feed(raw.payload), *session.eof()]
                frame = next((e for e in events if isinstance(e, Frame | Login)), None)
                if frame is None or (isinstance(frame, Frame) and frame.error_code is not None):
                    summary.not_decoded += 1
                    continue
                readings = frame.readings
            if self.engine is None:
                out += parsed_records(raw, readings)
                continue
            if raw.received_at != received_at:
                received_at = raw.received_at
                received_ms = parse_iso_ms(received_at)
            records, notes = evaluate_frame(
                self.engine, raw, readings, received_ms / 1000, received_ms, replayed=True
            )
            out += records
            if notes:
                summary.notifications += len(notes)
                self.notifications += notes
        summary.parsed_records += len(out)
        return out


def _open_sink(settings: SinkSettings) -> tuple[Sink, Any]:
    if settings.kinesis is not None:
        kinesis = KinesisSink(settings.kinesis, settings.local)
        return kinesis, kinesis
    # A series of its own: replaying into a running gateway's data directory never writes
    # into the gateway's journal (whose shippers would send the copies on).
    local = Journal(settings.local, "replay")
    local.open()
    return local, None


def _existing(data_dir: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for path in sorted((data_dir / "parsed").glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            try:
                out[json.loads(line)["id"]] = line
            except (ValueError, KeyError):
                continue
    return out


async def _replay(replayer: Replayer) -> None:
    options, settings, summary = replayer.options, replayer.settings, replayer.summary
    existing = _existing(settings.sink.local.data_dir) if options.dry_run else {}
    sink: Sink | None = None
    kinesis: KinesisSink | None = None
    if not options.dry_run:
        sink, kinesis = _open_sink(settings.sink)
        if kinesis is not None:
            try:
                await kinesis.open()
            except KinesisSetupError as exc:
                raise ConfigError([f"sink.kinesis: {exc}"]) from None
    records: list[bytes] = []
    keys: list[str] = []
    progress = sys.stderr.isatty()
    started = last_report = time.monotonic()
    if options.notifications and kinesis is not None and "notifications" not in kinesis.streams:
        raise ConfigError(["--notifications with [sink.kinesis] needs its notifications stream"])

    async def flush() -> None:
        if sink is not None and records:
            await sink.write("parsed", records, keys)
        notes = replayer.notifications
        if sink is not None and notes and options.notifications:
            await sink.write(
                "notifications",
                [msgspec.json.encode(n) for n in notes],
                [n.device_id[:MAX_PARTITION_KEY_CHARS] for n in notes],
            )
        notes.clear()
        records.clear()
        keys.clear()

    sources = replayer.inputs.sources()
    try:
        async for source in sources:
            for raws in source:
                out = replayer.parsed(raws)
                if options.dry_run:
                    replayer.notifications.clear()  # counted in the summary only
                    for record, encoded in zip(out, map(to_json, out), strict=True):
                        before = existing.get(record.id)
                        if before is None:
                            summary.new += 1
                        elif before == encoded:
                            summary.unchanged += 1
                        else:
                            summary.changed += 1
                else:
                    records += map(to_json, out)
                    keys += [(r.device_id or "unknown")[:MAX_PARTITION_KEY_CHARS] for r in out]
                    if len(records) >= BATCH_RECORDS:
                        await flush()
                if progress and time.monotonic() - last_report > 0.5:
                    last_report = time.monotonic()
                    rate = summary.raw_records / max(1e-9, last_report - started)
                    print(
                        f"\r{summary.raw_records:,} raw records, {rate:,.0f}/s, "
                        f"{summary.parsed_records:,} parsed",
                        end="",
                        file=sys.stderr,
                    )
        await flush()
    finally:
        await sources.aclose()
        if progress:
            print(file=sys.stderr)
        if kinesis is not None:
            await kinesis.close()
        elif isinstance(sink, Journal):
            sink.close()


def run(settings: ReplaySettings, options: ReplayOptions) -> int:
    """Replay, then print the summary as one JSON line; returns the exit status."""
    inputs = options.inputs
    if not inputs.paths and inputs.capture is None:
        raise ConfigError(["give raw-record files or directories, or --capture FILE"])
    # A named input that is not there is a wrong command line (`replay data/raw` when the data
    # is in data/demo/raw), not bad data to skip: nothing would be replayed.
    local: list[str | Path] = [
        *(i for i in inputs.paths if not i.startswith(S3_SCHEME)),
        *filter(None, [inputs.capture]),
    ]
    missing = [str(path) for path in map(Path, local) if not path.exists()]
    if missing:
        raise ConfigError([f"{path}: no such file or directory" for path in missing])
    if any(
        i.startswith(S3_SCHEME) and not i[len(S3_SCHEME) :].partition("/")[0] for i in inputs.paths
    ):
        raise ConfigError([f"an S3 input needs a bucket: {S3_SCHEME}BUCKET/PREFIX"])
    replayer = Replayer(settings, options)
    # The start-up heap (imports, settings, codecs) lives as long as the process: frozen, the
    # collector's full passes stop walking it while records stream through (~2 % of a replay).
    gc.freeze()
    started = time.monotonic()
    uvloop.run(_replay(replayer))
    seconds = time.monotonic() - started
    s = replayer.summary
    line: dict[str, Any] = {
        "files": replayer.inputs.files,
        "lines": replayer.inputs.lines,
        "raw_records": s.raw_records,
        "filtered_out": s.filtered_out,
        "parsed_records": s.parsed_records,
        "notifications": s.notifications,
        "not_decoded": s.not_decoded,
        "skipped": dict(s.skipped),
        "seconds": round(seconds, 3),
        "raw_records_per_s": round(s.raw_records / max(seconds, 1e-9)),
    }
    if options.dry_run:
        line.update(dry_run=True, new=s.new, changed=s.changed, unchanged=s.unchanged)
    print(json.dumps(line))
    return 0
