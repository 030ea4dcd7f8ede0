"""An HTTP/1.1 reverse proxy in front of kinesalite that injects the faults no emulator has.

kinesalite never throttles and never fails single entries (``/work/shared/research/kinesis.md``
section 1), so tests put this proxy between the client and the emulator and steer it at run time
with a ``FaultPolicy``:

- ``fail_entries_ratio``: that fraction of each PutRecords request's entries fail. As on the real
  service a failed entry is *not* stored: the proxy strips it from the request it forwards and
  splices an ``ErrorCode`` entry into the answer at its index, fixing ``FailedRecordCount``. Each
  injected failure is kept in ``ProxyStats.failed_entries`` so tests can tell a resend from a
  duplicate. ``fail_error_codes`` are chosen from at random: throttling and internal failures
  are retried; a KMS error (``KMS_ACCESS_DENIED``: the stream's key is not usable) is an
  entry refused for good.
- ``throttle_requests`` / ``throttle_next``: PutRecord(s) answered with the 400
  ProvisionedThroughputExceededException, not forwarded (every one while set / the next N).
- ``unavailable_requests``: PutRecord(s) answered with the 503 ServiceUnavailable the service
  gives while it is degraded, not forwarded.
- ``refuse_connections``: "Kinesis is down". Open connections are reset at once, new ones on
  accept. The listener stays bound so the port cannot be lost: clients see a reset or a
  disconnect, not ECONNREFUSED. A request in flight when the outage starts may have been stored,
  as with a real timeout.
- ``delay_s``: latency before each request is forwarded or answered.

It runs its own event loop in a background thread, so sync and asyncio tests alike can use it;
``policy``, ``update()`` and ``stats()`` are thread-safe.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import hashlib
import json
import logging
import random
import socket
import struct
import threading
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

PUT_RECORDS = "Kinesis_20131202.PutRecords"
WRITE_TARGETS = frozenset({PUT_RECORDS, "Kinesis_20131202.PutRecord"})
THROUGHPUT_EXCEEDED = "ProvisionedThroughputExceededException"
INTERNAL_FAILURE = "InternalFailure"
KMS_ACCESS_DENIED = "KMSAccessDeniedException"
SERVICE_UNAVAILABLE = "ServiceUnavailable"
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
# Above kinesalite's own 7 MiB request limit, so its 413 answer stays visible through the proxy.
MAX_BODY_BYTES = 16 * 1024 * 1024
# The service's PutRecords limits. A request outside them is forwarded untouched: stripping entries
# could turn a request the service rejects whole into one that succeeds.
MAX_PUT_ENTRIES = 500
MAX_PARTITION_KEY_CHARS = 256
MAX_DATA_BYTES = 1024 * 1024
CONTROL_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class FaultPolicy:
    """What the proxy does to the next requests; replaced whole, so a request sees one policy."""

    fail_entries_ratio: float = 0.0
    fail_error_codes: tuple[str, ...] = (THROUGHPUT_EXCEEDED, INTERNAL_FAILURE)
    throttle_requests: bool = False
    throttle_next: int = 0
    unavailable_requests: bool = False
    refuse_connections: bool = False
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.fail_entries_ratio <= 1.0:
            raise ValueError(f"fail_entries_ratio {self.fail_entries_ratio} is not in [0, 1]")
        if not self.fail_error_codes:
            raise ValueError("fail_error_codes is empty")
        if self.throttle_next < 0 or self.delay_s < 0:
            raise ValueError("throttle_next and delay_s must not be negative")


@dataclass(frozen=True, slots=True)
class FailedEntry:
    """A PutRecords entry the proxy failed, and therefore did not forward."""

    partition_key: str
    data_sha256: str
    error_code: str
    explicit_hash_key: str | None = None


@dataclass(frozen=True, slots=True)
class ProxyStats:
    """A snapshot of the proxy's counters."""

    requests_by_target: Mapping[str, int] = field(default_factory=dict)
    entries_forwarded: int = 0
    entries_failed_by_code: Mapping[str, int] = field(default_factory=dict)
    failed_entries: tuple[FailedEntry, ...] = ()
    throttled_requests: int = 0
    unavailable_answers: int = 0
    refused_connections: int = 0
    largest_put_records_bytes: int = 0  # the largest PutRecords body that reached the proxy
    connections: int = 0


def data_sha256(data: bytes) -> str:
    """How a FailedEntry names its record's data."""
    return hashlib.sha256(data).hexdigest()


class HttpError(Exception):
    """A message we cannot frame; ``status`` is the answer owed to the peer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True, slots=True)
class HttpMessage:
    """A whole HTTP/1.1 request or response; the body is always framed by Content-Length."""

    start_line: bytes
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @classmethod
    def response(cls, status: int, headers: list[tuple[str, str]], body: bytes) -> HttpMessage:
        start = f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()
        return cls(start, tuple(headers), b"").with_body(body)

    @property
    def status(self) -> int:
        return int(self.start_line.split(b" ", 2)[1])

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((value for key, value in self.headers if key.lower() == name), None)

    def closes_connection(self) -> bool:
        tokens = {t.strip().lower() for t in (self.header("connection") or "").split(",")}
        if b"HTTP/1.0" in self.start_line:
            return "keep-alive" not in tokens
        return "close" in tokens

    def with_body(self, body: bytes) -> HttpMessage:
        framing = {"content-length", "transfer-encoding"}
        headers = [(k, v) for k, v in self.headers if k.lower() not in framing]
        return HttpMessage(self.start_line, (*headers, ("Content-Length", str(len(body)))), body)

    def to_bytes(self) -> bytes:
        head = b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in self.headers)
        return self.start_line + b"\r\n" + head + b"\r\n" + self.body


async def read_message(
    reader: asyncio.StreamReader, response_to: HttpMessage | None = None
) -> HttpMessage | None:
    """The next request (or the response to ``response_to``); None on EOF between messages."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        if not error.partial:
            return None
        raise
    except asyncio.LimitOverrunError:
        raise HttpError(431, "header section too large") from None
    start_line, *lines = head[:-4].split(b"\r\n")
    headers = []
    for line in lines:
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon or not name or name != name.strip():
            raise HttpError(400, f"bad header line {line!r}")
        headers.append((name, value.strip()))
    message = HttpMessage(start_line, tuple(headers), b"")
    length = message.header("content-length")
    if message.header("transfer-encoding") is not None:
        if message.header("transfer-encoding") != "chunked":
            raise HttpError(501, "only chunked transfer coding is supported")
        body = await _read_chunked(reader)
    elif length is not None:
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            raise HttpError(413, f"bad or too large Content-Length {length!r}")
        body = await reader.readexactly(int(length))
    elif response_to is not None and _has_body(message, response_to):
        body = await _read_until_eof(reader)
    else:
        body = b""
    return message.with_body(body)


def _has_body(response: HttpMessage, request: HttpMessage) -> bool:
    """Whether a response without framing headers has a body that runs until EOF (RFC 9112 6.3)."""
    try:
        status = response.status
    except (IndexError, ValueError):
        raise HttpError(502, f"bad status line {response.start_line!r}") from None
    return status >= 200 and status not in (204, 304) and not request.start_line.startswith(b"HEAD")


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            raise HttpError(400, f"bad chunk size {size_line!r}") from None
        if len(body) + size > MAX_BODY_BYTES:
            raise HttpError(413, "chunked body too large")
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailer fields: not needed by anything behind us
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


async def _read_until_eof(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while chunk := await reader.read(65536):
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise HttpError(502, "upstream body too large")
    return bytes(body)


class FaultProxy:
    """The proxy on ``127.0.0.1:port`` (0: any) in front of ``upstream`` (``http://host:port``)."""

    def __init__(self, upstream: str, *, seed: int = 0, port: int = 0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream must be http://host:port, not {upstream!r}")
        self._upstream = (parts.hostname, parts.port)
        self.port = port
        self._rng = random.Random(seed)  # used on the proxy's loop only
        self._lock = threading.Lock()
        self._policy = FaultPolicy()
        self._stats = ProxyStats()
        self._requests: Counter[str] = Counter()
        self._failed_by_code: Counter[str] = Counter()
        self._failed: list[FailedEntry] = []
        self._clients: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fault-proxy", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Listen on a background thread; returns once the port is bound."""
        self._thread.start()
        try:
            self._control(self._listen())
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Close the listener and every connection, then end the thread."""
        if self._thread.is_alive():
            self._control(self._shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CONTROL_TIMEOUT_S)
            self._loop.close()

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _control(self, coroutine: Any) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CONTROL_TIMEOUT_S)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve_client, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        """Close the listener, reset the connections, cancel what is still running."""
        if self._server is not None:
            self._server.close()
        for writer in self._clients:
            _reset(writer)
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _refuse_clients(self) -> None:
        for writer in list(self._clients):
            self._refuse(writer)

    def _refuse(self, writer: asyncio.StreamWriter) -> None:
        self._count(refused_connections=1)
        self._clients.discard(writer)
        _reset(writer)

    @property
    def policy(self) -> FaultPolicy:
        with self._lock:
            return self._policy

    @policy.setter
    def policy(self, policy: FaultPolicy) -> None:
        with self._lock:
            outage_starts = policy.refuse_connections and not self._policy.refuse_connections
            self._policy = policy
        if outage_starts and self._thread.is_alive():
            self._control(self._refuse_clients())  # so the outage has begun when this returns

    def update(self, **changes: Any) -> FaultPolicy:
        """Replace the named policy fields, e.g. ``update(fail_entries_ratio=0.3)``."""
        with self._lock:
            policy = dataclasses.replace(self._policy, **changes)
        self.policy = policy
        return policy

    def stats(self) -> ProxyStats:
        with self._lock:
            return dataclasses.replace(
                self._stats,
                requests_by_target=dict(self._requests),
                entries_failed_by_code=dict(self._failed_by_code),
                failed_entries=tuple(self._failed),
            )

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = ProxyStats()
            self._requests.clear()
            self._failed_by_code.clear()
            self._failed.clear()

    def _count(self, **increments: int) -> None:
        with self._lock:
            changes = {name: getattr(self._stats, name) + n for name, n in increments.items()}
            self._stats = dataclasses.replace(self._stats, **changes)

    def _take_throttle(self) -> bool:
        """Whether to throttle this write; consumes one of ``throttle_next``."""
        with self._lock:
            policy = self._policy
            if policy.throttle_next:
                self._policy = dataclasses.replace(policy, throttle_next=policy.throttle_next - 1)
            return policy.throttle_requests or policy.throttle_next > 0

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._count(connections=1)
        if self.policy.refuse_connections:
            self._refuse(writer)
            return
        self._clients.add(writer)
        upstream = _Upstream(*self._upstream)
        try:
            while True:
                try:
                    request = await read_message(reader)
                except HttpError as error:
                    writer.write(_plain_answer(error.status, str(error)).to_bytes())
                    return
                if request is None:
                    return
                policy = self.policy
                if policy.refuse_connections:  # set while this request was arriving
                    self._refuse(writer)
                    return
                try:
                    response = await self._answer(request, policy, upstream)
                except Exception as error:  # upstream down or garbled, or a bug here: say so
                    logger.warning("fault proxy answers 502", exc_info=True)
                    upstream.close()
                    response = _plain_answer(502, f"fault proxy: {error!r}")
                if writer.is_closing():  # reset by an outage that began meanwhile
                    return
                writer.write(response.to_bytes())
                await writer.drain()
                if request.closes_connection() or response.closes_connection():
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._clients.discard(writer)
            upstream.close()
            writer.close()

    async def _answer(
        self, request: HttpMessage, policy: FaultPolicy, upstream: _Upstream
    ) -> HttpMessage:
        target = request.header("x-amz-target") or ""
        with self._lock:
            self._requests[target] += 1
        if policy.delay_s:
            await asyncio.sleep(policy.delay_s)
        if target == PUT_RECORDS:
            with self._lock:
                largest = max(self._stats.largest_put_records_bytes, len(request.body))
                self._stats = dataclasses.replace(self._stats, largest_put_records_bytes=largest)
        if target in WRITE_TARGETS and policy.unavailable_requests:
            self._count(unavailable_answers=1)
            return _json_answer(503, {"__type": SERVICE_UNAVAILABLE, "message": "(fault proxy)"})
        if target in WRITE_TARGETS and self._take_throttle():
            self._count(throttled_requests=1)
            message = "Rate exceeded for shard shardId-000000000000 (fault proxy)."
            return _json_answer(400, {"__type": THROUGHPUT_EXCEEDED, "message": message})
        if target != PUT_RECORDS:
            return await upstream.exchange(request)
        try:
            payload = json.loads(request.body)
            entries = payload["Records"]
        except (ValueError, KeyError, TypeError):
            return await upstream.exchange(request)  # let the emulator answer the bad request
        failing = self._choose_failures(entries, policy)
        if not failing:
            self._count(entries_forwarded=len(entries) if isinstance(entries, list) else 0)
            return await upstream.exchange(request)
        kept = [entry for index, entry in enumerate(entries) if index not in failing]
        self._count(entries_forwarded=len(kept))
        if kept:
            forwarded = request.with_body(json.dumps({**payload, "Records": kept}).encode())
            response = await upstream.exchange(forwarded)
            if response.status != 200:
                return response  # the whole request failed: nothing to splice or to record
            answer = json.loads(response.body)
        else:
            response = _json_answer(200, {})
            answer = {"FailedRecordCount": 0, "Records": []}
        stream = payload.get("StreamName") or payload.get("StreamARN") or "?"
        upstream_results = iter(answer["Records"])
        results, failed = [], []
        for index, entry in enumerate(entries):
            if index not in failing:
                results.append(next(upstream_results))
                continue
            code = failing[index]
            results.append({"ErrorCode": code, "ErrorMessage": _error_message(code, stream)})
            data = base64.b64decode(entry["Data"])
            failed.append(
                FailedEntry(
                    entry["PartitionKey"], data_sha256(data), code, entry.get("ExplicitHashKey")
                )
            )
        answer["Records"] = results
        answer["FailedRecordCount"] = answer.get("FailedRecordCount", 0) + len(failed)
        with self._lock:
            self._failed += failed
            self._failed_by_code.update(entry.error_code for entry in failed)
        return response.with_body(json.dumps(answer).encode())

    def _choose_failures(self, entries: Any, policy: FaultPolicy) -> dict[int, str]:
        """Index → error code of the entries to fail: round(ratio * n) of them, chosen at random."""
        if policy.fail_entries_ratio == 0.0 or not _within_limits(entries):
            return {}
        indices = self._rng.sample(
            range(len(entries)), round(policy.fail_entries_ratio * len(entries))
        )
        return {index: self._rng.choice(policy.fail_error_codes) for index in indices}


class _Upstream:
    """One keep-alive connection to the upstream, opened on demand and reopened when closed."""

    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def exchange(self, request: HttpMessage) -> HttpMessage:
        """Send the request and read the response."""
        response = None
        if self._reader is not None and not self._reader.at_eof():
            try:
                response = await self._send(request)
            except ConnectionError:
                response = None
        if response is None:
            # Node closes idle keep-alive connections after 5 s; a connection closed before any
            # answer byte means the request was not processed, so it is safe to send again.
            self.close()
            self._reader, self._writer = await asyncio.open_connection(*self._address)
            response = await self._send(request)
        if response is None:
            raise ConnectionResetError("upstream closed the connection without answering")
        if request.closes_connection() or response.closes_connection():
            self.close()
        return response

    async def _send(self, request: HttpMessage) -> HttpMessage | None:
        assert self._reader is not None and self._writer is not None
        self._writer.write(request.to_bytes())
        # kinesalite answers an oversize request (413) and closes before taking the whole body:
        # its answer may still be waiting to be read.
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            await self._writer.drain()
        return await read_message(self._reader, response_to=request)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def _within_limits(entries: Any) -> bool:
    """Whether a PutRecords entry list is one the service would accept as a whole."""
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_PUT_ENTRIES:
        return False
    for entry in entries:
        key = entry.get("PartitionKey") if isinstance(entry, dict) else None
        data = entry.get("Data") if isinstance(entry, dict) else None
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_PARTITION_KEY_CHARS:
            return False
        try:
            if (
                not isinstance(data, str)
                or len(base64.b64decode(data, validate=True)) > MAX_DATA_BYTES
            ):
                return False
        except binascii.Error:
            return False
    return True


def _error_message(code: str, stream: str) -> str:
    if code == THROUGHPUT_EXCEEDED:
        return f"Rate exceeded for shard in stream {stream} (fault proxy)."
    if code == KMS_ACCESS_DENIED:
        return f"Access to the KMS key of stream {stream} was denied (fault proxy)."
    return "Internal service failure (fault proxy)."


def _json_answer(status: int, body: dict[str, Any]) -> HttpMessage:
    headers = [("Content-Type", JSON_CONTENT_TYPE), ("x-amzn-RequestId", str(uuid.uuid4()))]
    return HttpMessage.response(status, headers, json.dumps(body).encode())


def _plain_answer(status: int, text: str) -> HttpMessage:
    headers = [("Content-Type", "text/plain"), ("Connection", "close")]
    return HttpMessage.response(status, headers, text.encode())


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a dead endpoint or a load balancer does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
