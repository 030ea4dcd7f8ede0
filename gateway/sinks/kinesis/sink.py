"""The Kinesis sink: shard-aware KPL aggregation, per-entry retries, a per-shard rate limiter.

One long-lived aiobotocore client, and beside it the lean PutRecords path (``lean``) that sends
the data. ``write`` turns a batch of one record class's user records into Kinesis entries
(``entries``), sends them in PutRecords calls within the service limits (``put``) and each
shard's rate (``limiter``), and resubmits *only* the entries that failed with a
retriable code, front of the queue first, after jittered exponential backoff. Records refused
for good are dead-lettered (``dead_letters``) with the error code and reported lost. The gateway's
shippers (``expire=False``) retry everything else until Kinesis takes it, the journal keeping it
meanwhile; the tools that write straight to Kinesis (replay, parse) also give a record up, as
``Expired``, once it outlived ``record_ttl_s``.

Names: a *record class* is what the pipeline writes (raw, parsed, notifications); each goes to
its own Kinesis stream, named by ``stream_name``.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from typing import Any

import aiobotocore.session
import msgspec
import structlog
from aiobotocore.config import AioConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoRegionError,
    ReadTimeoutError,
)

from gateway.common.backoff import Backoff
from gateway.journal.settings import LocalSinkSettings
from gateway.sinks.dead_letters import DeadLetter, DeadLetterFile
from gateway.sinks.kinesis.entries import Entry, build_entries
from gateway.sinks.kinesis.lean import LeanPutRecords
from gateway.sinks.kinesis.limiter import ShardLimiter
from gateway.sinks.kinesis.put import describe, next_call, put_records
from gateway.sinks.kinesis.shards import ShardRoutes, list_shards, open_shard_map
from gateway.sinks.kinesis.stats import KinesisStats
from gateway.sinks.settings import KinesisSettings, KinesisStreamSettings
from parser.kpl import MAX_RECORD_BYTES
from parser.records import iso_ms

log = structlog.get_logger("gateway.sinks.kinesis")

# The limiter's estimate assumes the rate of the moment, which recovers meanwhile: look again
# at least this often rather than sleep out a long estimate made at a throttled rate.
LIMITER_RECHECK_S = 1.0
# How long the gateway's start waits for each stream's shard map before it goes on without it.
START_CHECK_S = 3.0


def _unanswered(exc: BotoCoreError | ClientError | TimeoutError) -> bool:
    """Kinesis did not answer the question (down, unreachable, overloaded), as opposed to an
    answer that says the settings cannot work."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = exc.response.get("Error", {}).get("Code", "")
        return status >= 500 or code in {"LimitExceededException", "ThrottlingException"}
    return isinstance(
        exc, TimeoutError | EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError
    )


class KinesisSetupError(Exception):
    """The configured streams cannot be used (missing stream, no region, no credentials)."""


class KinesisSink:
    """Writes record classes to their streams; see the module docstring for the guarantees."""

    def __init__(
        self,
        settings: KinesisSettings,
        local: LocalSinkSettings,
        *,
        expire: bool = True,
        lean: bool = True,
    ) -> None:
        """``expire=False`` (the gateway's shippers): never give a record up for taking long,
        only for being refused; the journal keeps it meanwhile. The tools that write straight
        to Kinesis (replay, parse) give up at ``record_ttl_s``. ``lean=False``: PutRecords
        through botocore's client as well (bench/kinesis.py's baseline), as it goes anyway to
        an endpoint URL with a path (``LeanPutRecords.for_client``)."""
        self.settings = settings
        self._expire = expire
        self._use_lean = lean
        # Record class -> the settings of the Kinesis stream it goes to.
        self.streams: dict[str, KinesisStreamSettings] = {
            "raw": settings.raw,
            "parsed": settings.parsed,
        }
        if settings.notifications is not None:
            self.streams["notifications"] = settings.notifications
        self.stats = {record_class: KinesisStats(record_class) for record_class in self.streams}
        # By stream name: two record classes may share a stream, and its shards.
        self._routes: dict[str, ShardRoutes] = {}
        self._refresh_needed: set[str] = set()
        self._limiters = {
            s.name: ShardLimiter(settings.rate_limit_pct / 100) for s in self.streams.values()
        }
        self._dead_letters = DeadLetterFile(local, "dead-letters")
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._lean: LeanPutRecords | None = None
        self._refresher: asyncio.Task[None] | None = None
        self.shard_map_refreshes = 0
        self._unexpected: set[str] = set()  # exception types already logged with a traceback

    async def open(self) -> None:
        """The client and each stream's shard map. Raises ``KinesisSetupError`` for what no
        wait would fix (no region, no such stream, credentials refused); a Kinesis that does
        not answer (unreachable, 5xx, throttled) fails the start only for the tools: the
        gateway's shippers (``expire=False``) start anyway, the journal keeps the records, and
        the shard maps are learnt once Kinesis answers."""
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
            if self._use_lean:
                self._lean = await LeanPutRecords.for_client(session, self._client)
            for stream in self.streams.values():
                try:
                    if self._expire:
                        await self._refresh(stream.name)
                    else:  # a hung Kinesis must not hold the start for a request timeout
                        await asyncio.wait_for(self._refresh(stream.name), START_CHECK_S)
                except (BotoCoreError, ClientError, TimeoutError) as exc:
                    if self._expire or not _unanswered(exc):
                        raise
                    log.warning(
                        "Kinesis does not answer; journaling, shipping once it does",
                        stream=stream.name,
                        error=describe(exc) if str(exc) else "no answer in time",
                    )
                    self._refresh_needed.add(stream.name)
        except NoRegionError:
            await self._stack.aclose()
            raise KinesisSetupError(
                "no AWS region: set sink.kinesis.region or AWS_DEFAULT_REGION"
            ) from None
        except (BotoCoreError, ClientError) as exc:
            await self._stack.aclose()
            raise KinesisSetupError(describe(exc)) from None
        self._refresher = asyncio.create_task(self._refresh_loop(), name="kinesis-shard-maps")

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        await self._stack.aclose()
        self._dead_letters.close()

    async def _refresh(self, stream_name: str) -> None:
        shard_map = open_shard_map(await list_shards(self._client, stream_name))
        self._routes[stream_name] = ShardRoutes(shard_map)
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
            for stream_name in due:
                try:
                    await self._refresh(stream_name)
                    self._refresh_needed.discard(stream_name)
                except (BotoCoreError, ClientError, OSError) as exc:
                    log.warning("shard map refresh failed", stream=stream_name, error=describe(exc))
                except Exception as exc:  # an odd answer must not end the refreshes for good
                    log.warning(
                        "shard map refresh failed", stream=stream_name, error=type(exc).__name__
                    )

    # -- writing -----------------------------------------------------------------------------

    async def write(self, record_class: str, records: list[bytes], keys: list[str]) -> list[int]:
        """Deliver a batch; returns the indexes of the records dead-lettered instead."""
        target = self.streams[record_class]
        stream_name = target.name
        stats = self.stats[record_class]
        limiter = self._limiters[stream_name]
        routes = self._routes.setdefault(stream_name, ShardRoutes())
        pending = build_entries(
            records,
            keys,
            routes,
            aggregate=target.aggregate,
            aggregate_max_bytes=self.settings.aggregate_max_bytes,
        )
        lost: list[int] = []
        too_big = [e for e in pending if e.size > MAX_RECORD_BYTES]
        if too_big:  # cannot happen with bounded frames; never send what AWS must refuse
            pending = [e for e in pending if e.size <= MAX_RECORD_BYTES]
            lost += await self._dead_letter(
                record_class, too_big, records, keys, "RecordTooLarge", "over 1 MiB"
            )
        started = time.monotonic()
        deadline = started + self.settings.record_ttl_s if self._expire else float("inf")
        backoff = Backoff(self.settings.retry_first_s, self.settings.retry_max_s)
        while pending:
            now = time.monotonic()
            if now >= deadline:
                lost += await self._dead_letter(
                    record_class,
                    pending,
                    records,
                    keys,
                    "Expired",
                    "not delivered within the record TTL",
                )
                break
            call = next_call(pending)
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
            outcome = await put_records(
                self._client, self._lean, stream_name, call, stats, limiter, self._unexpected
            )
            if outcome.resharded:
                self._refresh_needed.add(stream_name)  # learn the new map
            for entry, code, message in outcome.refused:
                lost += await self._dead_letter(record_class, [entry], records, keys, code, message)
            # Only the failed entries go again, at the front: the call was a prefix of pending.
            pending = outcome.retry + pending[len(call) :]
            if outcome.retry:
                stats.retries += len(outcome.retry)
                # Failed entries stay at the front; back off before trying again.
                await asyncio.sleep(
                    min(backoff.next_delay_s(), max(0.0, deadline - time.monotonic()))
                )
            else:
                backoff.reset()
        return lost

    async def _dead_letter(
        self,
        record_class: str,
        entries: list[Entry],
        records: list[bytes],
        keys: list[str],
        code: str,
        message: str,
    ) -> list[int]:
        """Write the entries' user records to the dead-letter file; return their indexes."""
        stream_name = self.streams[record_class].name
        at = iso_ms(time.time_ns() // 1_000_000)
        letters = [
            DeadLetter(
                at,
                record_class,
                "kinesis",
                code,
                message,
                entry.attempts,
                msgspec.Raw(records[i]),
                stream_name,
                keys[i],
            )
            for entry in entries
            for i in entry.indexes
        ]
        self.stats[record_class].dead_letters += len(letters)
        log.error(
            "records dead-lettered; their frames are not ACKed",
            stream=stream_name,
            code=code,
            records=len(letters),
        )
        await self._dead_letters.write(letters)
        return [i for entry in entries for i in entry.indexes]
