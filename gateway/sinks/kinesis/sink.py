"""The Kinesis sink: shard-aware KPL aggregation, per-entry retries, a per-shard rate limiter.

One long-lived aiobotocore client. ``write`` turns a batch of user records into Kinesis entries
(aggregates grouped by the shard their partition keys hash to, each sent with an
``ExplicitHashKey`` inside that shard, or one entry per record), sends them in PutRecords calls
within the service limits, and resubmits *only* the entries that failed with a retriable code,
front of the queue first, after jittered exponential backoff. Whole-request throttling and
connection failures are retried the same way (botocore's own retries are off: we own them).
Records not delivered within their TTL (or by the shutdown deadline) are dead-lettered to a local
file with the error code and reported lost, so their frames are never ACKed and the devices
resend them. Nothing is counted as sent unless Kinesis returned a sequence number for it.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import json
import random
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import aiobotocore.session
import structlog
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from gateway.common.stats import Histogram
from gateway.settings import KinesisSettings, KinesisStreamSettings, LocalSinkSettings
from gateway.sinks.local import RotatingFile
from parser.kpl import MAX_RECORD_BYTES, AggregateBuilder, hash_key, put_payload_units

log = structlog.get_logger("gateway.sinks.kinesis")

MAX_ENTRIES_PER_CALL = 500
ROUTE_CACHE_KEYS = 100_000
MAX_BYTES_PER_CALL = 5 * 1024 * 1024
SHARD_RECORDS_PER_S = 1000
SHARD_BYTES_PER_S = 1024 * 1024
# Per-shard rate adaptation (ShardLimiter): cut on throttling, back to the configured rate
# within RECOVERY_S of the last cut.
THROTTLED_FACTOR = 0.7
MIN_FACTOR = 0.1
RECOVERY_S = 10.0
# The limiter's estimate assumes the rate of the moment, which recovers meanwhile: look again
# at least this often rather than sleep out a long estimate made at a throttled rate.
LIMITER_RECHECK_S = 1.0
# A record class that delivered nothing on its last try, then had nothing to write for this
# long, no longer counts as failing (KinesisSink.failing_for_s).
STALL_FORGOTTEN_AFTER_S = 10.0
# The per-shard throughput answer: the one that slows the shard's rate limiter.
SHARD_THROTTLED = "ProvisionedThroughputExceededException"
RETRIABLE = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "InternalFailure",
        "ServiceUnavailable",
        "ThrottlingException",
        "LimitExceededException",
        "KMSThrottlingException",
    }
)


class KinesisSetupError(Exception):
    """The configured streams cannot be used (missing stream, no region, no credentials)."""


class KinesisStats:
    """Counters of one record class (raw, parsed …) going to its stream."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.put_calls = 0
        self.put_latency = Histogram()
        self.user_records = 0  # delivered user records
        self.kinesis_records = 0  # delivered Kinesis records (aggregates or plain)
        self.bytes = 0
        self.payload_units = 0
        self.failed_entries: Counter[str] = Counter()  # by error code
        self.retries = 0  # entries resubmitted
        self.dead_letters = 0  # user records
        self.throttles: Counter[str] = Counter()  # by shard id
        self.request_errors: Counter[str] = Counter()  # whole calls that failed, by code


@dataclass(slots=True)
class _Entry:
    data: bytes
    key: str
    explicit_hash_key: str | None
    shard: str | None  # where we expect it to land
    indexes: list[int]  # the batch's user records it carries
    size: int = 0

    def __post_init__(self) -> None:
        self.size = len(self.data) + len(self.key.encode())


class ShardMap:
    """Open shards of a stream by hash-key range (ListShards), for routing and rate limiting."""

    def __init__(self, shards: Iterable[tuple[int, int, str]]) -> None:
        ordered = sorted(shards)
        self.starts = [s for s, _, _ in ordered]
        self.ends = [e for _, e, _ in ordered]
        self.ids = [i for _, _, i in ordered]

    def shard_for(self, key_hash: int) -> tuple[str, int] | None:
        i = bisect.bisect_right(self.starts, key_hash) - 1
        if i < 0 or key_hash > self.ends[i]:
            return None
        return self.ids[i], self.starts[i]


@dataclass(slots=True)
class _Bucket:
    records: float
    bytes: float
    updated: float
    factor: float


@dataclass
class ShardLimiter:
    """Token buckets per shard (records/s and bytes/s) at an adaptive share of the shard limits.

    The share adapts like TCP's congestion window (AIMD): each call that came back throttled on
    a shard cuts its rate (x0.7, floor 10 %; once per call, not per entry, so one all-throttled
    answer is one cut), and time restores it (additively: the configured rate is back within
    ``RECOVERY_S`` of the last cut). 5xx answers and connection failures say nothing about a
    shard's throughput and leave the rate alone; the sender's backoff already slows them.

    The limiter may slow the sink, never stop it: a call needing more than a bucket holds goes
    once the bucket is full and leaves it in debt, so a 4 MiB batch for one shard is sent and the
    long-run rate still holds.
    """

    max_factor: float
    buckets: dict[str, _Bucket] = field(default_factory=dict)

    def _bucket(self, shard: str, now: float) -> _Bucket:
        bucket = self.buckets.get(shard)
        if bucket is None:
            # A new shard starts with a full second's allowance, as an idle one has.
            bucket = self.buckets[shard] = _Bucket(
                SHARD_RECORDS_PER_S * self.max_factor,
                SHARD_BYTES_PER_S * self.max_factor,
                now,
                self.max_factor,
            )
        elapsed = max(0.0, now - bucket.updated)
        bucket.factor = min(self.max_factor, bucket.factor + elapsed * self.max_factor / RECOVERY_S)
        rate = bucket.factor  # each bucket holds one second at its rate
        bucket.records = min(
            SHARD_RECORDS_PER_S * rate, bucket.records + elapsed * SHARD_RECORDS_PER_S * rate
        )
        bucket.bytes = min(
            SHARD_BYTES_PER_S * rate, bucket.bytes + elapsed * SHARD_BYTES_PER_S * rate
        )
        bucket.updated = now
        return bucket

    def wait_s(self, needs: dict[str, tuple[int, int]], now: float) -> float:
        """Seconds until every shard in ``needs`` (records, bytes) admits the call; 0 = go.

        An estimate at the rate of the moment: the rate recovers meanwhile (and with it what a
        full bucket holds), so a caller waits and asks again. A call larger than the bucket is
        admitted within ``RECOVERY_S`` plus what its debt and a full bucket take to refill.
        """
        wait = 0.0
        for shard, (records, size) in needs.items():
            b = self._bucket(shard, now)
            per_s_r = SHARD_RECORDS_PER_S * b.factor
            per_s_b = SHARD_BYTES_PER_S * b.factor
            # Capped at what a full bucket holds: a bigger call waits for a full bucket.
            short_r = max(0.0, min(records, per_s_r) - b.records) / per_s_r
            short_b = max(0.0, min(size, per_s_b) - b.bytes) / per_s_b
            wait = max(wait, short_r, short_b)
        return wait

    def take(self, needs: dict[str, tuple[int, int]], now: float) -> None:
        for shard, (records, size) in needs.items():
            b = self._bucket(shard, now)
            # A call bigger than the bucket leaves it negative: the debt is paid before the next.
            b.records -= records
            b.bytes -= size

    def throttled(self, shard: str, now: float) -> None:
        """One call came back throttled on ``shard``: send slower there for a while."""
        b = self._bucket(shard, now)
        b.factor = max(MIN_FACTOR, b.factor * THROTTLED_FACTOR)


class KinesisSink:
    """Writes record classes to their streams; see the module docstring for the guarantees."""

    def __init__(self, settings: KinesisSettings, local: LocalSinkSettings) -> None:
        self.settings = settings
        self.streams: dict[str, KinesisStreamSettings] = {
            "raw": settings.raw,
            "parsed": settings.parsed,
        }
        if settings.notifications is not None:
            self.streams["notifications"] = settings.notifications
        self.stats = {cls: KinesisStats(cls) for cls in self.streams}
        self._maps: dict[str, ShardMap] = {}
        self._routes: dict[str, dict[str, tuple[str, int] | None]] = {}
        self._refresh_needed: set[str] = set()
        self._limiters = {
            s.name: ShardLimiter(settings.rate_limit_pct / 100) for s in self.streams.values()
        }
        self._dead = RotatingFile(local.data_dir / "dead-letters", "dead-letters", local)
        self._dead_thread = ThreadPoolExecutor(1, thread_name_prefix="dead-letters")
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._deadline: float | None = None  # set at shutdown: give up by then
        self._refresher: asyncio.Task[None] | None = None
        self.shard_map_refreshes = 0
        # Per record class: its first attempt since it last delivered an entry (none: it did),
        # its writes in progress and when the last one ended (see failing_for_s).
        self._stalled_since: dict[str, float] = {}
        self._writing: Counter[str] = Counter()
        self._written_at: dict[str, float] = {}
        self._unexpected: set[str] = set()  # exception types already logged with a traceback

    async def open(self) -> None:
        config = AioConfig(
            retries={"total_max_attempts": 1},  # retries are ours, per entry
            # Records are within the service limits by construction (bounded frames, bounded
            # aggregates, partition keys cut to 256): botocore's validation is pure overhead.
            parameter_validation=False,
            connect_timeout=5,
            read_timeout=self.settings.request_timeout_s,
            max_pool_connections=len(self.streams) * 2,
        )
        session = aiobotocore.session.get_session()
        try:
            self._client = await self._stack.enter_async_context(
                session.create_client(
                    "kinesis",
                    region_name=self.settings.region,
                    endpoint_url=self.settings.endpoint_url,
                    config=config,
                )
            )
            for stream in self.streams.values():
                await self._refresh(stream.name)
        except NoRegionError:
            await self._stack.aclose()
            raise KinesisSetupError(
                "no AWS region: set sink.kinesis.region or AWS_DEFAULT_REGION"
            ) from None
        except (BotoCoreError, ClientError) as exc:
            await self._stack.aclose()
            raise KinesisSetupError(_describe(exc)) from None
        self._refresher = asyncio.create_task(self._refresh_loop(), name="kinesis-shard-maps")

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        await self._stack.aclose()
        self._dead_thread.shutdown(wait=True)
        self._dead.close()

    def give_up_at(self, deadline: float) -> None:
        """Shutdown: records not delivered by ``deadline`` (monotonic) are dead-lettered."""
        self._deadline = deadline

    async def _refresh(self, name: str) -> None:
        shards = [
            (int(r["StartingHashKey"]), int(r["EndingHashKey"]), shard["ShardId"])
            for shard in await list_shards(self._client, name)
            if "EndingSequenceNumber" not in shard["SequenceNumberRange"]  # open shards only
            for r in (shard["HashKeyRange"],)
        ]
        self._maps[name] = ShardMap(shards)
        self._routes.pop(name, None)
        self.shard_map_refreshes += 1

    async def _refresh_loop(self) -> None:
        """Relearn a stream's shards when a record landed elsewhere, and every refresh period."""
        next_full = time.monotonic() + self.settings.shard_map_refresh_s
        while True:
            await asyncio.sleep(1.0)
            due = set(self._refresh_needed)
            if time.monotonic() >= next_full:
                due |= {s.name for s in self.streams.values()}
                next_full = time.monotonic() + self.settings.shard_map_refresh_s
            for name in due:
                try:
                    await self._refresh(name)
                    self._refresh_needed.discard(name)
                except (BotoCoreError, ClientError, OSError) as exc:
                    log.warning("shard map refresh failed", stream=name, error=_describe(exc))
                except Exception as exc:  # an odd answer must not end the refreshes for good
                    log.warning("shard map refresh failed", stream=name, error=type(exc).__name__)

    # -- writing -----------------------------------------------------------------------------

    def _entries(
        self, stream: KinesisStreamSettings, records: list[bytes], keys: list[str]
    ) -> list[_Entry]:
        shard_map = self._maps.get(stream.name)
        if not stream.aggregate:
            return [
                _Entry(r, k, None, _predict(shard_map, k), [i])
                for i, (r, k) in enumerate(zip(records, keys, strict=True))
            ]
        by_shard: dict[tuple[str, int] | None, list[int]] = {}
        # Devices repeat: remember each key's shard (MD5 + bisect per record otherwise).
        routes = self._routes.setdefault(stream.name, {})
        if len(routes) > ROUTE_CACHE_KEYS:
            routes.clear()
        for i, key in enumerate(keys):
            if key in routes:
                shard = routes[key]
            else:
                shard = routes[key] = shard_map.shard_for(hash_key(key)) if shard_map else None
            if shard in by_shard:
                by_shard[shard].append(i)
            else:
                by_shard[shard] = [i]
        entries: list[_Entry] = []
        limit = self.settings.aggregate_max_bytes
        for shard, indexes in by_shard.items():
            # The EHK in the aggregate's table routes every user record with it: a consumer that
            # checks each record's hash against the shard it landed on (the KCL) accepts them
            # even if our shard map was stale.
            ehk = None if shard is None else str(shard[1])
            groups: list[tuple[AggregateBuilder, list[int]]] = [(AggregateBuilder(ehk), [])]
            for i in indexes:
                key, data = keys[i], records[i]
                builder = groups[-1][0]
                # size_with is exact but costs; it is only needed near the limit (a key adds at
                # most 4 bytes per character plus a few bytes of framing).
                near = builder.size + len(data) + 4 * len(key) + 32 > limit
                if near and len(builder) and builder.size_with(key, data) > limit:
                    builder = AggregateBuilder(ehk)
                    groups.append((builder, []))
                builder.add(key, data)
                groups[-1][1].append(i)
            entries += [
                _Entry(b.build(), b.first_partition_key, ehk, shard and shard[0], members)
                for b, members in groups
                if len(b)
            ]
        return entries

    async def write(self, stream: str, records: list[bytes], keys: list[str]) -> list[int]:
        """Deliver a batch; returns the indexes of the records dead-lettered instead."""
        if self._idle_for_s(stream, time.monotonic()) > STALL_FORGOTTEN_AFTER_S:
            self._stalled_since.pop(stream, None)  # an old stall says nothing about this write
        self._writing[stream] += 1
        try:
            return await self._write(stream, records, keys)
        finally:
            self._writing[stream] -= 1
            self._written_at[stream] = time.monotonic()

    async def _write(self, stream: str, records: list[bytes], keys: list[str]) -> list[int]:
        target = self.streams[stream]
        stats = self.stats[stream]
        limiter = self._limiters[target.name]
        pending = self._entries(target, records, keys)
        lost: list[int] = []
        too_big = [e for e in pending if e.size > MAX_RECORD_BYTES]
        if too_big:  # cannot happen with bounded frames; never send what AWS must refuse
            pending = [e for e in pending if e.size <= MAX_RECORD_BYTES]
            lost += await self._dead_letter(
                stream, target.name, too_big, records, keys, "RecordTooLarge", "over 1 MiB"
            )
        started = time.monotonic()
        expires = started + self.settings.record_ttl_s
        delay = self.settings.retry_first_s
        while pending:
            now = time.monotonic()
            self._stalled_since.setdefault(stream, now)
            deadline = expires if self._deadline is None else min(expires, self._deadline)
            if now >= deadline:
                lost += await self._dead_letter(
                    stream,
                    target.name,
                    pending,
                    records,
                    keys,
                    "Expired",
                    "not delivered within the record TTL or shutdown deadline",
                )
                break
            call: list[_Entry] = []
            size = 0
            for entry in pending:
                if len(call) == MAX_ENTRIES_PER_CALL or size + entry.size > MAX_BYTES_PER_CALL:
                    break
                call.append(entry)
                size += entry.size
            needs: dict[str, tuple[int, int]] = {}
            for entry in call:
                if entry.shard is not None:
                    n, b = needs.get(entry.shard, (0, 0))
                    needs[entry.shard] = (n + 1, b + entry.size)
            wait = limiter.wait_s(needs, now)
            if wait > 0:
                await asyncio.sleep(min(wait, LIMITER_RECHECK_S, max(0.0, deadline - now)))
                continue
            limiter.take(needs, now)
            failed, permanent = await self._put(stream, call, limiter)
            for entry, code, message in permanent:
                lost += await self._dead_letter(
                    stream, target.name, [entry], records, keys, code, message
                )
            # Only the failed entries go again, at the front: the call was a prefix of pending.
            pending = failed + pending[len(call) :]
            if failed:
                stats.retries += len(failed)
                # Failed entries stay at the front; back off before trying again.
                await asyncio.sleep(
                    min(delay * random.uniform(0.5, 1.0), max(0.0, deadline - time.monotonic()))
                )
                delay = min(delay * 2, self.settings.retry_max_s)
            else:
                delay = self.settings.retry_first_s
        return lost

    async def _put(
        self, stream: str, call: list[_Entry], limiter: ShardLimiter
    ) -> tuple[list[_Entry], list[tuple[_Entry, str, str]]]:
        """One PutRecords: (entries to retry, entries failed for good with code and message).

        Never raises: whatever goes wrong with the call is a retriable failure of all of it.
        """
        name = self.streams[stream].name
        stats = self.stats[stream]
        request = [
            {
                "Data": e.data,
                "PartitionKey": e.key,
                **({"ExplicitHashKey": e.explicit_hash_key} if e.explicit_hash_key else {}),
            }
            for e in call
        ]
        started = time.monotonic()
        stats.put_calls += 1
        try:
            response = await self._client.put_records(StreamName=name, Records=request)
            results = response["Records"]
            if len(results) != len(call):
                raise ValueError(f"{len(results)} results for {len(call)} records")
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            stats.request_errors[code] += 1
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in RETRIABLE or status >= 500:
                if code == SHARD_THROTTLED:
                    shards = {e.shard for e in call if e.shard}
                    stats.throttles.update(shards)
                    for shard in shards:
                        limiter.throttled(shard, time.monotonic())
                log.warning(
                    "PutRecords failed; retrying", stream=name, code=code, entries=len(call)
                )
                return call, []
            log.error("PutRecords refused", stream=name, code=code, error=_describe(exc))
            return [], [(e, code, _describe(exc)) for e in call]
        except (BotoCoreError, OSError, TimeoutError) as exc:
            kind = type(exc).__name__
            stats.request_errors[kind] += 1
            log.warning("Kinesis unreachable; retrying", stream=name, error=kind, entries=len(call))
            return call, []
        except Exception as exc:  # a writer that dies stops the whole gateway
            # A bug in a library or an answer of an unexpected shape: retried like an outage.
            # The traceback is logged the first time only, so a repeating one cannot flood.
            kind = type(exc).__name__
            stats.request_errors[kind] += 1
            first = kind not in self._unexpected
            self._unexpected.add(kind)
            log.error(
                "PutRecords raised an unexpected error; retrying",
                stream=name,
                error=kind,
                detail=str(exc)[:200],
                entries=len(call),
                exc_info=first,
            )
            return call, []
        stats.put_latency.observe(time.monotonic() - started)
        failed: list[_Entry] = []
        permanent: list[tuple[_Entry, str, str]] = []
        throttled: set[str] = set()
        for entry, result in zip(call, results, strict=True):
            code = result.get("ErrorCode")
            if code is None:
                stats.kinesis_records += 1
                stats.user_records += len(entry.indexes)
                stats.bytes += entry.size
                stats.payload_units += put_payload_units(entry.size)
                if entry.shard is not None and result.get("ShardId") not in (None, entry.shard):
                    self._refresh_needed.add(name)  # resharded: learn the new map
                continue
            stats.failed_entries[code] += 1
            if code in RETRIABLE:
                failed.append(entry)
                if entry.shard is not None and code == SHARD_THROTTLED:
                    stats.throttles[entry.shard] += 1
                    throttled.add(entry.shard)
            else:
                permanent.append((entry, code, result.get("ErrorMessage", "")))
        if len(failed) + len(permanent) < len(call):
            self._stalled_since.pop(stream, None)
        for shard in throttled:  # one cut per call: a call's entries report one overload
            limiter.throttled(shard, time.monotonic())
        return failed, permanent

    def failing_for_s(self) -> float:
        """How long some record class has been trying to deliver and delivered nothing.

        Counted from its first attempt after its last delivered entry, whatever kept it from
        delivering (calls failing, every entry throttled, a limiter wait, records refused for
        good); 0 when every class delivered since it last tried. A class with nothing to write
        for ``STALL_FORGOTTEN_AFTER_S`` stops counting: /readyz turns new devices away while
        this is high, and with no devices nothing would ever show that Kinesis is back.
        """
        now = time.monotonic()
        stalls = [
            now - since
            for stream, since in self._stalled_since.items()
            if self._idle_for_s(stream, now) <= STALL_FORGOTTEN_AFTER_S
        ]
        return max(stalls, default=0.0)

    def _idle_for_s(self, stream: str, now: float) -> float:
        """How long ``stream`` has had no write in progress (0: one is, or none ever was)."""
        if self._writing[stream]:
            return 0.0
        return now - self._written_at.get(stream, now)

    async def _dead_letter(
        self,
        stream: str,
        name: str,
        entries: list[_Entry],
        records: list[bytes],
        keys: list[str],
        code: str,
        message: str,
    ) -> list[int]:
        """Write the entries' user records to the dead-letter file; return their indexes."""
        indexes = [i for e in entries for i in e.indexes]
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        lines = [
            json.dumps(
                {
                    "at": at,
                    "class": stream,
                    "stream": name,
                    "error_code": code,
                    "error_message": message,
                    "partition_key": keys[i],
                    "data": base64.b64encode(records[i]).decode(),
                }
            ).encode()
            for i in indexes
        ]
        self.stats[stream].dead_letters += len(indexes)
        log.error(
            "records dead-lettered; their frames are not ACKed",
            stream=name,
            code=code,
            records=len(indexes),
        )
        if lines:
            data = b"\n".join(lines) + b"\n"
            await asyncio.get_running_loop().run_in_executor(
                self._dead_thread, self._dead.write, data
            )
        return indexes


async def list_shards(client: Any, stream: str) -> list[dict[str, Any]]:
    """Every shard of ``stream`` (open and closed), following ListShards' pages."""
    shards: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"StreamName": stream}
    while True:
        response = await client.list_shards(**kwargs)
        shards += response["Shards"]
        if not response.get("NextToken"):
            return shards
        kwargs = {"NextToken": response["NextToken"]}


def _predict(shard_map: ShardMap | None, key: str) -> str | None:
    if shard_map is None:
        return None
    found = shard_map.shard_for(hash_key(key))
    return None if found is None else found[0]


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}"
    return str(exc)
