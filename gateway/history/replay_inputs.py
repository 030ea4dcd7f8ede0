"""What ``gateway replay`` reads: raw records from files, S3 objects and legacy captures.

Files and fetched objects are newline-delimited raw records, gzip (by magic, any number of
members, as Firehose concatenates them) or plain. They are read in blocks of whole lines and
decoded a block at a time — one C-level pass per block instead of a Python call per line — with a
line-by-line pass only for a block that holds a bad line, so bad input is still reported with
file (or ``s3://`` object) and line and skipped.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from tempfile import SpooledTemporaryFile
from typing import IO, TYPE_CHECKING

import aiobotocore.session
import aiohttp
import msgspec
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from gateway.common.hex_text import parse_hex
from gateway.common.settings_base import ConfigError
from parser.codec import Codec
from parser.events import Reject
from parser.records import RAW_SCHEMA, RawRecord, all_timestamps, iso_ms

if TYPE_CHECKING:
    from aiobotocore.session import ClientCreatorContext
    from types_aiobotocore_s3 import S3Client

GZIP_MAGIC = b"\x1f\x8b"
GZIP_WBITS = 31  # zlib's window bits for a gzip header and trailer (CRC-32 and size checked)
# Decompressed bytes per block (about 120 raw records): bounds what one bad block re-reads line
# by line, and keeps a block's records in the CPU caches (16-32 KiB measured best; 128 KiB ~7 %
# slower per record, 256 KiB ~10 %).
BLOCK_BYTES = 32 << 10
# Longer than any raw record (a 1 MiB frame is 1.4 MB of base64): a line past this is cut to
# LINE_TOO_LONG, which stands in for it (and its line number) and is reported, not held whole.
MAX_LINE_BYTES = 4 << 20
LINE_TOO_LONG = b"\0line too long"
READ_BYTES = 64 << 10
S3_SCHEME = "s3://"
LIST_PAGE_KEYS = 1000  # ListObjectsV2's maximum page
DOWNLOAD_CHUNK_BYTES = 1 << 20
# Objects are fetched one at a time, each whole before it is read: in memory up to this size, in
# a temporary file past it (Firehose objects reach 128 MiB). Then the reader that reads local
# files reads the spool too, at the same speed and with the same errors.
SPOOL_MEMORY_BYTES = 8 << 20
# What fetching from S3 raises: botocore's own errors (including read timeouts and broken bodies
# while streaming) and aiohttp's for a body cut off mid-stream.
S3_ERRORS = (BotoCoreError, ClientError, aiohttp.ClientError)
S3_MISSING = {"NoSuchBucket": "no such bucket", "NoSuchKey": "no such object"}

Warn = Callable[[str, str, str], None]


class _UncheckedRawRecord(RawRecord, frozen=True, gc=False):
    """A raw record decoded without ``received_at``'s pattern: the reader checks a whole block's
    with :func:`parser.records.all_timestamps` instead, and a block that fails is decoded again
    line by line as a :class:`RawRecord`, pattern and all."""

    received_at: str


class DamagedGzip(Exception):
    """Gzip data that is cut off or corrupt; the whole lines before it were read."""


def line_blocks(f: IO[bytes]) -> Iterator[bytes]:
    """The lines of a file, gzip or plain, in blocks of whole lines of about ``BLOCK_BYTES``.

    Every block but the last ends with a newline. Damaged gzip data raises :class:`DamagedGzip`
    once the whole lines before it are out; a partial line before the damage is dropped, as
    ``gzip.GzipFile`` drops it. A line over ``MAX_LINE_BYTES`` comes out as ``LINE_TOO_LONG``.
    """
    head = f.read(2)
    f.seek(0)
    chunks = _gunzip(f) if head == GZIP_MAGIC else iter(partial(f.read, BLOCK_BYTES), b"")
    parts: list[bytes] = []  # a line not yet ended, in pieces (joined once: linear, however long)
    pending = 0  # bytes in parts
    too_long = False  # inside a line past MAX_LINE_BYTES: its bytes are dropped
    for read in chunks:
        data, cut = read, read.rfind(b"\n") + 1
        if too_long:
            end = read.find(b"\n")
            if end < 0:
                continue
            parts, data, cut, too_long = [LINE_TOO_LONG], read[end:], cut - end, False
        if cut:
            parts.append(data[:cut])
            yield b"".join(parts)
            parts = [data[cut:]]
            pending = len(parts[0])
        else:
            parts.append(data)
            pending += len(data)
            if pending > MAX_LINE_BYTES:
                parts, pending, too_long = [], 0, True
    if too_long:
        yield LINE_TOO_LONG
    elif tail := b"".join(parts):
        yield tail


def _gunzip(f: IO[bytes]) -> Iterator[bytes]:
    """The decompressed data of every gzip member of ``f``, at most ``BLOCK_BYTES`` a chunk."""
    data = b""
    while True:
        member = zlib.decompressobj(GZIP_WBITS)
        while not member.eof:
            if not data:
                data = f.read(READ_BYTES)
                if not data:
                    raise DamagedGzip("compressed file ended before the end-of-stream marker")
            try:
                chunk = member.decompress(data, BLOCK_BYTES)
            except zlib.error as exc:
                raise DamagedGzip(str(exc)) from None
            data = member.unconsumed_tail
            if chunk:
                yield chunk
        # Zero bytes may pad a member (tape blocks): gzip(1) and gzip.GzipFile skip them, so
        # this reader does too; anything else must be the next member's header.
        data = member.unused_data.lstrip(b"\0")
        while not data:
            data = f.read(READ_BYTES)
            if not data:
                return
            data = data.lstrip(b"\0")


@dataclass(frozen=True)
class InputOptions:
    """Where ``gateway replay`` reads raw records: ``paths`` (files, directories and
    ``s3://BUCKET/PREFIX``), or a legacy ``capture`` of ``device_id`` in the one codec of
    ``codecs``."""

    paths: tuple[str, ...] = ()
    capture: Path | None = None
    device_id: str | None = None
    codecs: tuple[str, ...] = ()
    # Unset: botocore's AWS_ENDPOINT_URL_S3 (or the config file's endpoint_url), AWS_DEFAULT_REGION.
    s3_endpoint_url: str | None = None
    s3_region: str | None = None


class ReplayInputs:
    """The inputs as raw records: one iterator of batches per file, S3 object or capture.
    Counts files and lines; reports bad input through ``warn``."""

    def __init__(
        self, options: InputOptions, warn: Warn, codec: Callable[[str], Codec | None]
    ) -> None:
        self.options = options
        self.warn = warn
        self.codec = codec
        self.files = 0
        self.lines = 0
        self.decoder = msgspec.json.Decoder(RawRecord)
        self.block_decoder = msgspec.json.Decoder(_UncheckedRawRecord)

    async def sources(self) -> AsyncGenerator[Iterator[list[RawRecord]], None]:
        """The inputs in command-line order. Only fetching objects awaits; every line is read
        by ``records``."""
        if self.options.capture is not None:
            yield self.capture_records()
            return
        async with AsyncExitStack() as stack:
            client = None
            if any(item.startswith(S3_SCHEME) for item in self.options.paths):
                # Before any input: a bad endpoint or profile is a usage error, not a skip.
                try:
                    client = await stack.enter_async_context(self._s3_client())
                except (ValueError, BotoCoreError) as exc:
                    raise ConfigError([f"S3 client: {exc}"]) from None
            for item in self.options.paths:
                if client is not None and item.startswith(S3_SCHEME):
                    async with aclosing(self.object_records(client, item)) as objects:
                        async for records in objects:
                            yield records
                    continue
                for path in self.raw_files(Path(item)):
                    self.files += 1
                    yield self.file_records(path)

    def raw_files(self, path: Path) -> Iterator[Path]:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            yield path
        else:
            self.warn(str(path), "missing_input", "no such file or directory")

    def file_records(self, path: Path) -> Iterator[list[RawRecord]]:
        try:
            with path.open("rb") as f:
                yield from self.records(str(path), f)
        except OSError as exc:
            self.warn(str(path), "unreadable", f"cannot read: {exc.strerror or exc}")

    def records(self, name: str, f: IO[bytes]) -> Iterator[list[RawRecord]]:
        """The raw records of one file or fetched object, a block of lines at a time."""
        decode = self.block_decoder.decode
        number = 0  # lines read so far
        try:
            for block in line_blocks(f):
                lines = block.split(b"\n")
                if not lines[-1]:
                    lines.pop()  # the block's last newline ends a line, it starts none
                batch: list[RawRecord]
                try:
                    # Typed decoding validates every field and base64-decodes the payload. Per
                    # line, not decode_lines: that one also takes two records on one line.
                    batch = list(map(decode, lines))
                    valid = all_timestamps([raw.received_at for raw in batch]) and all(
                        self.codec(codec) is not None for codec in {raw.codec for raw in batch}
                    )
                except msgspec.DecodeError:
                    valid = False
                if not valid:
                    batch = self._good_lines(name, number, lines)
                number += len(lines)
                self.lines += len(lines)
                yield batch
        except DamagedGzip as exc:
            self.warn(f"{name}:{number + 1}", "truncated_gzip", f"damaged gzip data ({exc})")

    def _good_lines(self, name: str, before: int, lines: list[bytes]) -> list[RawRecord]:
        """The raw records of a block that did not pass whole: blank lines skipped, bad ones
        and those of unknown codecs reported with their line number."""
        batch = []
        for number, line in enumerate(lines, before + 1):
            if not line.strip():
                continue
            if line == LINE_TOO_LONG:
                self.warn(f"{name}:{number}", "line_too_long", f"over {MAX_LINE_BYTES} bytes")
                continue
            try:
                raw = self.decoder.decode(line)
            except msgspec.DecodeError as exc:
                self.warn(f"{name}:{number}", "corrupt_line", f"not a raw record ({exc})")
                continue
            if self.codec(raw.codec) is None:
                self.warn(f"{name}:{number}", "unknown_codec", f"unknown codec {raw.codec!r}")
                continue
            batch.append(raw)
        return batch

    def _s3_client(self) -> ClientCreatorContext[S3Client]:
        # Credentials come from the standard chain.
        return aiobotocore.session.get_session().create_client(
            "s3",
            region_name=self.options.s3_region,
            endpoint_url=self.options.s3_endpoint_url,
            config=AioConfig(retries={"mode": "standard"}, connect_timeout=5, read_timeout=60),
        )

    async def object_records(
        self, client: S3Client, url: str
    ) -> AsyncGenerator[Iterator[list[RawRecord]], None]:
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
                    self.files += 1
                    name = f"{S3_SCHEME}{bucket}/{key}"
                    with SpooledTemporaryFile(SPOOL_MEMORY_BYTES) as spool:
                        if await self._fetch(client, bucket, key, spool):
                            spool.seek(0)
                            yield self.records(name, spool)
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

    def capture_records(self) -> Iterator[list[RawRecord]]:
        """A legacy capture's frames as raw records (one batch) with ids derived from their
        content."""
        device_id = self.options.device_id
        path = self.options.capture
        codecs = self.options.codecs
        if path is None or not device_id or len(codecs) != 1:
            raise ConfigError(["--capture needs --device-id ID and one --codec NAME"])
        codec_name = codecs[0]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError([f"--capture {path}: cannot read: {exc.strerror}"]) from None
        text = data.decode("ascii", "replace")
        chunks: list[tuple[str, bytes]]  # where (for reports), bytes
        if all(c in "0123456789abcdefABCDEF \t\r\n" for c in text):
            chunks = []
            for number, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        chunks.append((f"{path}:{number}", parse_hex(line)))
                    except ValueError as exc:
                        self.warn(f"{path}:{number}", "corrupt_line", str(exc))
        else:
            chunks = [(str(path), data)]
        codec = self.codec(codec_name)
        if codec is None:
            raise ConfigError([f"--codec {codec_name!r}: unknown codec"])
        received_at = iso_ms(int(path.stat().st_mtime * 1000))
        session = codec.session()
        self.files += 1
        records: list[RawRecord] = []
        fed = [(where, session.feed(chunk)) for where, chunk in chunks]
        fed.append((f"{path}: at its end", session.eof()))
        for where, events in fed:
            for event in events:
                if isinstance(event, Reject):
                    # Skipped bytes or a frame that failed its checks: said, never silent.
                    self.warn(where, event.reason, event.detail)
                    continue
                digest = hashlib.sha256(
                    f"{device_id}|{codec_name}|{len(records)}|".encode() + event.payload
                ).hexdigest()
                # Time part 0: the capture has no arrival times; the rest is stable.
                records.append(
                    RawRecord(
                        RAW_SCHEMA,
                        f"{0:012x}{digest[:14]}",
                        device_id,
                        codec_name,
                        "capture",
                        None,
                        received_at,
                        event.payload,
                    )
                )
        yield records
