"""``gateway replay``: raw records in, parsed records exactly like live ones out.

Each raw record's payload is fed to a fresh session of its codec — the code path live ingest
takes — and its readings become parsed records through the same builder, so ids
(``<raw id>-<index>``), fields and per-device order match the live output record for record, and
replaying twice yields the same ids. Inputs: the local sink's ``raw/`` files and Firehose-style
objects (newline-delimited raw records, gzip or plain) given as files or directories or read from
``s3://bucket/prefix``, and legacy captures (hex per line, or binary) with the device id and codec
on the command line. Bad input — a corrupt line, a truncated gzip member, an unknown codec, a
missing bucket — is reported with file (or ``s3://`` object) and line and skipped; nothing else
stops.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
import time
import zlib
from collections import Counter
from collections.abc import AsyncGenerator, Iterator
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from tempfile import SpooledTemporaryFile
from typing import IO, TYPE_CHECKING, Any

import aiobotocore.session
import aiohttp
import msgspec
import uvloop
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from gateway.decode import parse_hex
from gateway.kinesis import KinesisSetupError, KinesisSink
from gateway.local_sink import LocalSink
from gateway.registry import CodecRegistry, UnknownCodecError, default_layout_dirs
from gateway.settings import ConfigError, Settings, load_settings
from gateway.sink import Sink
from parser.codec import Codec, CodecOptions
from parser.errors import DecodeError
from parser.events import Frame, Login
from parser.kpl import MAX_PARTITION_KEY_CHARS
from parser.records import RAW_SCHEMA, ParsedRecord, RawRecord, iso_ms, parsed_records, to_json

if TYPE_CHECKING:
    from aiobotocore.session import ClientCreatorContext
    from types_aiobotocore_s3 import S3Client

BATCH_RECORDS = 2000
GZIP_MAGIC = b"\x1f\x8b"
S3_SCHEME = "s3://"
LIST_PAGE_KEYS = 1000  # ListObjectsV2's maximum page
DOWNLOAD_CHUNK_BYTES = 1 << 20
# Objects are fetched one at a time, each whole before it is read: in memory up to this size, in
# a temporary file past it (Firehose objects reach 128 MiB). Then the synchronous gzip reader and
# line loop that read local files read the spool too, at the same speed and with the same errors.
SPOOL_MEMORY_BYTES = 8 << 20
# What fetching from S3 raises: botocore's own errors (including read timeouts and broken bodies
# while streaming) and aiohttp's for a body cut off mid-stream.
S3_ERRORS = (BotoCoreError, ClientError, aiohttp.ClientError)
S3_MISSING = {"NoSuchBucket": "no such bucket", "NoSuchKey": "no such object"}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("replay", help="re-parse raw records (archives, captures) like live ingest")
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="raw-record files or directories (JSON lines, gzip or plain), or s3://BUCKET/PREFIX",
    )
    p.add_argument(
        "--capture",
        type=Path,
        metavar="FILE",
        help="a legacy capture: hex per line or binary (needs --device-id and --codec)",
    )
    p.add_argument("--device-id", help="device id of a legacy capture")
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="settings: output sink (local or Kinesis), listener time zones",
    )
    p.add_argument("--data-dir", type=Path, metavar="DIR", help="write to this local sink")
    p.add_argument("--since", help="only frames received at or after this ISO time (UTC)")
    p.add_argument("--until", help="only frames received before this ISO time (UTC)")
    p.add_argument("--device", action="append", metavar="ID", help="only these devices")
    p.add_argument(
        "--codec",
        action="append",
        metavar="NAME",
        help="only these codecs (for --capture: the capture's codec)",
    )
    p.add_argument(
        "--s3-endpoint-url",
        metavar="URL",
        help="S3 endpoint for s3:// inputs (default: AWS_ENDPOINT_URL_S3, else AWS's)",
    )
    p.add_argument(
        "--s3-region",
        metavar="REGION",
        help="region for s3:// inputs (default: AWS_DEFAULT_REGION)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="write nothing; report how the output would differ from what is there",
    )


@dataclass
class Summary:
    files: int = 0
    lines: int = 0
    raw_records: int = 0
    filtered_out: int = 0
    parsed_records: int = 0
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


class Replayer:
    def __init__(self, args: argparse.Namespace, settings: Settings) -> None:
        self.args = args
        self.settings = settings
        self.registry = CodecRegistry.load([*default_layout_dirs(), *settings.layout_dirs])
        self.codecs: dict[str, Codec | None] = {}
        self.summary = Summary()
        self.since = _parse_time(args.since, "--since")
        self.until = _parse_time(args.until, "--until")
        self.devices = set(args.device or [])
        self.codec_filter = set(args.codec or [])
        self.decoder = msgspec.json.Decoder(RawRecord)

    def codec(self, name: str) -> Codec | None:
        if name not in self.codecs:
            # The listener's options (GT06 time zone) make replay decode as live did.
            listener = next((ls for ls in self.settings.listeners if ls.codec == name), None)
            options = CodecOptions(timezone=listener.timezone if listener else "UTC")
            try:
                self.codecs[name] = self.registry.create(name, options)
            except UnknownCodecError:
                self.codecs[name] = None
        return self.codecs[name]

    def warn(self, where: str, reason: str, detail: str) -> None:
        self.summary.skipped[reason] += 1
        print(f"gateway replay: {where}: {detail}; skipped", file=sys.stderr)

    # -- inputs ------------------------------------------------------------------------------

    async def sources(self) -> AsyncGenerator[Iterator[RawRecord], None]:
        """The inputs in command-line order, one synchronous iterator of raw records per file,
        S3 object or capture. Only fetching objects awaits; every line is read by ``_lines``."""
        if self.args.capture is not None:
            yield self.capture_records()
            return
        async with AsyncExitStack() as stack:
            client = None
            if any(item.startswith(S3_SCHEME) for item in self.args.inputs):
                # Before any input: a bad endpoint or profile is a usage error, not a skip.
                try:
                    client = await stack.enter_async_context(self._s3_client())
                except (ValueError, BotoCoreError) as exc:
                    raise ConfigError([f"S3 client: {exc}"]) from None
            for item in self.args.inputs:
                if client is not None and item.startswith(S3_SCHEME):
                    async with aclosing(self.object_records(client, item)) as objects:
                        async for records in objects:
                            yield records
                    continue
                for path in self.raw_files(Path(item)):
                    self.summary.files += 1
                    yield self.file_records(path)

    def raw_files(self, path: Path) -> Iterator[Path]:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            yield path
        else:
            self.warn(str(path), "missing_input", "no such file or directory")

    def file_records(self, path: Path) -> Iterator[RawRecord]:
        try:
            with path.open("rb") as f:
                yield from self._lines(str(path), f)
        except OSError as exc:
            self.warn(str(path), "unreadable", f"cannot read: {exc.strerror or exc}")

    def _lines(self, name: str, f: IO[bytes]) -> Iterator[RawRecord]:
        """The raw records of one file or fetched object: JSON lines, gzip (by magic) or plain."""
        head = f.read(2)
        f.seek(0)
        stream: IO[bytes] = gzip.GzipFile(fileobj=f, mode="rb") if head == GZIP_MAGIC else f  # type: ignore[assignment]
        number = 0
        try:
            for number, line in enumerate(stream, 1):
                self.summary.lines += 1
                if not line.strip():
                    continue
                try:
                    # Typed decoding validates every field and base64-decodes the payload.
                    raw = self.decoder.decode(line)
                except msgspec.DecodeError as exc:
                    self.warn(f"{name}:{number}", "corrupt_line", f"not a raw record ({exc})")
                    continue
                yield raw
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            self.warn(f"{name}:{number + 1}", "truncated_gzip", f"damaged gzip data ({exc})")

    def _s3_client(self) -> ClientCreatorContext[S3Client]:
        # Unset flags leave endpoint and region to botocore: AWS_ENDPOINT_URL_S3 (or the config
        # file's endpoint_url), AWS_DEFAULT_REGION; credentials come from the standard chain.
        return aiobotocore.session.get_session().create_client(
            "s3",
            region_name=self.args.s3_region,
            endpoint_url=self.args.s3_endpoint_url,
            config=AioConfig(retries={"mode": "standard"}, connect_timeout=5, read_timeout=60),
        )

    async def object_records(
        self, client: S3Client, url: str
    ) -> AsyncGenerator[Iterator[RawRecord], None]:
        """The objects under ``s3://bucket/prefix`` in key order (Firehose's names sort by time),
        each fetched to a spool and then read like a local file."""
        bucket, _, prefix = url.removeprefix(S3_SCHEME).partition("/")
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": LIST_PAGE_KEYS}
        )
        found = False
        try:
            async for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"]
                    if key.endswith("/"):  # a console "folder" marker, no data
                        continue
                    found = True
                    self.summary.files += 1
                    name = f"{S3_SCHEME}{bucket}/{key}"
                    with SpooledTemporaryFile(SPOOL_MEMORY_BYTES) as spool:
                        if await self._fetch(client, bucket, key, spool):
                            spool.seek(0)
                            yield self._lines(name, spool)
        except S3_ERRORS as exc:
            self._s3_warn(url, exc)
            return
        if not found:
            self.warn(url, "missing_input", "no objects under this prefix")

    async def _fetch(self, client: S3Client, bucket: str, key: str, spool: IO[bytes]) -> bool:
        """Streams the object's body into ``spool``; False (reported) if it cannot be read."""
        try:
            response = await client.get_object(Bucket=bucket, Key=key)
            async with response["Body"] as body:
                async for chunk in body.iter_chunks(DOWNLOAD_CHUNK_BYTES):
                    spool.write(chunk)
        except (*S3_ERRORS, OSError) as exc:
            self._s3_warn(f"{S3_SCHEME}{bucket}/{key}", exc)
            return False
        return True

    def _s3_warn(self, where: str, exc: Exception) -> None:
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            if code in S3_MISSING:
                self.warn(where, "missing_input", S3_MISSING[code])
                return
            detail = f"{code}: {error.get('Message', '')}"
            if code == "AccessDenied":
                detail = "access denied (needs s3:ListBucket and s3:GetObject)"
        elif isinstance(exc, NoCredentialsError):
            detail = "no AWS credentials (environment, profile or instance role)"
        else:
            detail = str(exc) or type(exc).__name__
        self.warn(where, "unreadable", f"cannot read: {detail}")

    def capture_records(self) -> Iterator[RawRecord]:
        """A legacy capture's frames as raw records with ids derived from their content."""
        args = self.args
        path: Path = args.capture
        if not args.device_id or not args.codec or len(args.codec) != 1:
            raise ConfigError(["--capture needs --device-id ID and one --codec NAME"])
        codec_name = args.codec[0]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError([f"--capture {path}: cannot read: {exc.strerror}"]) from None
        text = data.decode("ascii", "replace")
        chunks: list[bytes]
        if all(c in "0123456789abcdefABCDEF \t\r\n" for c in text):
            chunks = []
            for number, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        chunks.append(parse_hex(line))
                    except ValueError as exc:
                        self.warn(f"{path}:{number}", "corrupt_line", str(exc))
        else:
            chunks = [data]
        codec = self.codec(codec_name)
        if codec is None:
            raise ConfigError([f"--codec {codec_name!r}: unknown codec"])
        received_at = iso_ms(int(path.stat().st_mtime * 1000))
        session = codec.session()
        index = 0
        self.summary.files += 1
        for chunk in chunks:
            for event in session.feed(chunk):
                if isinstance(event, Frame | Login):
                    digest = hashlib.sha256(
                        f"{args.device_id}|{codec_name}|{index}|".encode() + event.payload
                    ).hexdigest()
                    index += 1
                    # Time part 0: the capture has no arrival times; the rest is stable.
                    yield RawRecord(
                        RAW_SCHEMA,
                        f"{0:012x}{digest[:14]}",
                        args.device_id,
                        codec_name,
                        "capture",
                        None,
                        received_at,
                        event.payload,
                    )

    # -- processing ------------------------------------------------------------------------

    def parsed(self, raw: RawRecord) -> list[ParsedRecord] | None:
        """The parsed records live ingest made of this raw record (None: not replayable)."""
        summary = self.summary
        summary.raw_records += 1
        if (
            (self.devices and raw.device_id not in self.devices)
            or (self.codec_filter and raw.codec not in self.codec_filter)
            or (self.since is not None and raw.received_at < self.since)
            or (self.until is not None and raw.received_at >= self.until)
        ):
            summary.filtered_out += 1
            return None
        codec = self.codec(raw.codec)
        if codec is None:
            self.warn(f"raw record {raw.id}", "unknown_codec", f"unknown codec {raw.codec!r}")
            return None
        try:
            # The codec's pure decode is what its session calls for a frame that checked out.
            readings = codec.decode(raw.payload)
        except DecodeError:
            # Not a data frame on its own (a Teltonika IMEI login) or one that did not decode
            # live either: ask a session, as live ingest did.
            session = codec.session()
            events = [*session.feed(raw.payload), *session.eof()]
            frame = next((e for e in events if isinstance(e, Frame | Login)), None)
            if frame is None or (isinstance(frame, Frame) and frame.error_code is not None):
                summary.not_decoded += 1
                return []
            readings = frame.readings
        records = parsed_records(raw, readings)
        summary.parsed_records += len(records)
        return records


def _open_sink(settings: Settings) -> tuple[Sink, Any]:
    if settings.sink.kinesis is not None:
        kinesis = KinesisSink(settings.sink.kinesis, settings.sink.local)
        return kinesis, kinesis
    local = LocalSink(settings.sink.local)
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
    args, settings, summary = replayer.args, replayer.settings, replayer.summary
    existing = _existing(settings.sink.local.data_dir) if args.dry_run else {}
    sink: Sink | None = None
    kinesis: KinesisSink | None = None
    if not args.dry_run:
        sink, kinesis = _open_sink(settings)
        if kinesis is not None:
            try:
                await kinesis.open()
            except KinesisSetupError as exc:
                raise ConfigError([f"sink.kinesis: {exc}"]) from None
    records: list[bytes] = []
    keys: list[str] = []
    progress = sys.stderr.isatty()
    started = last_report = time.monotonic()

    async def flush() -> None:
        if sink is not None and records:
            await sink.write("parsed", records, keys)
        records.clear()
        keys.clear()

    sources = replayer.sources()
    try:
        async for source in sources:
            for raw in source:
                out = replayer.parsed(raw)
                if not out:
                    continue
                for record in out:
                    encoded = to_json(record)
                    if args.dry_run:
                        before = existing.get(record.id)
                        if before is None:
                            summary.new += 1
                        elif before == encoded:
                            summary.unchanged += 1
                        else:
                            summary.changed += 1
                        continue
                    records.append(encoded)
                    keys.append((record.device_id or "unknown")[:MAX_PARTITION_KEY_CHARS])
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
        elif isinstance(sink, LocalSink):
            sink.close()


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["sink"] = {"local": {"data_dir": args.data_dir}}
    settings = load_settings(args.config, overrides)
    if not args.inputs and args.capture is None:
        raise ConfigError(["give raw-record files or directories, or --capture FILE"])
    if any(
        i.startswith(S3_SCHEME) and not i[len(S3_SCHEME) :].partition("/")[0] for i in args.inputs
    ):
        raise ConfigError([f"an S3 input needs a bucket: {S3_SCHEME}BUCKET/PREFIX"])
    replayer = Replayer(args, settings)
    started = time.monotonic()
    uvloop.run(_replay(replayer))
    seconds = time.monotonic() - started
    s = replayer.summary
    line: dict[str, Any] = {
        "files": s.files,
        "lines": s.lines,
        "raw_records": s.raw_records,
        "filtered_out": s.filtered_out,
        "parsed_records": s.parsed_records,
        "not_decoded": s.not_decoded,
        "skipped": dict(s.skipped),
        "seconds": round(seconds, 3),
        "raw_records_per_s": round(s.raw_records / max(seconds, 1e-9)),
    }
    if args.dry_run:
        line.update(dry_run=True, new=s.new, changed=s.changed, unchanged=s.unchanged)
    print(json.dumps(line))
    return 0
