"""One PutRecords call and what its answer means for each entry: delivered, retry, or refused.

Nothing is counted as sent unless Kinesis returned a sequence number for it. Whatever goes wrong
with the call as a whole (throttling, a 5xx, a connection failure, an answer of an unexpected
shape) is a retriable failure of all of its entries; botocore's own retries are off: we own them.
The call goes the lean way (``lean``) when the sink has one, else through botocore's client.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog
from botocore.exceptions import BotoCoreError, ClientError

from gateway.sinks.kinesis.entries import Entry
from gateway.sinks.kinesis.lean import LeanPutRecords, PutResult
from gateway.sinks.kinesis.limiter import ShardLimiter
from gateway.sinks.kinesis.stats import KinesisStats
from parser.kpl import put_payload_units

log = structlog.get_logger("gateway.sinks.kinesis")

# PutRecords limits: entries and bytes per call (a record's 1 MiB: parser.kpl.MAX_RECORD_BYTES).
MAX_ENTRIES_PER_CALL = 500
MAX_BYTES_PER_CALL = 5 * 1024 * 1024
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


@dataclass(slots=True)
class PutOutcome:
    """What one call did with its entries."""

    retry: list[Entry] = field(default_factory=list)  # to send again, at the front
    refused: list[tuple[Entry, str, str]] = field(default_factory=list)  # code, message
    delivered: int = 0  # entries with a sequence number
    resharded: bool = False  # an entry landed on a shard the map did not predict


def next_call(pending: list[Entry]) -> list[Entry]:
    """The longest prefix of ``pending`` one PutRecords call may carry."""
    size = 0
    for count, entry in enumerate(pending):
        if count == MAX_ENTRIES_PER_CALL or size + entry.size > MAX_BYTES_PER_CALL:
            return pending[:count]
        size += entry.size
    return pending


async def botocore_put(client: Any, stream_name: str, call: list[Entry]) -> list[PutResult]:
    """``call`` sent by botocore's client: the per-entry results of its answer."""
    request = [
        {
            "Data": e.data,
            "PartitionKey": e.partition_key,
            **({"ExplicitHashKey": e.explicit_hash_key} if e.explicit_hash_key else {}),
        }
        for e in call
    ]
    response = await client.put_records(StreamName=stream_name, Records=request)
    return msgspec.convert(response["Records"], list[PutResult])


async def put_records(
    client: Any,
    lean: LeanPutRecords | None,
    stream_name: str,
    call: list[Entry],
    stats: KinesisStats,
    limiter: ShardLimiter,
    unexpected: set[str],
) -> PutOutcome:
    """Send ``call`` to ``stream_name`` (by ``lean`` if given, else by botocore's ``client``);
    never raises.

    ``unexpected``: the exception types already logged with a traceback (once each, so a
    repeating one cannot flood the log).
    """
    for entry in call:
        entry.attempts += 1
    started = time.monotonic()
    stats.put_calls += 1
    try:
        if lean is None:
            results = await botocore_put(client, stream_name, call)
        else:
            results = await lean.put(stream_name, call)
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
                "PutRecords failed; retrying", stream=stream_name, code=code, entries=len(call)
            )
            return PutOutcome(retry=call)
        log.error("PutRecords refused", stream=stream_name, code=code, error=describe(exc))
        return PutOutcome(refused=[(e, code, describe(exc)) for e in call])
    except (BotoCoreError, OSError, TimeoutError) as exc:
        kind = type(exc).__name__
        stats.request_errors[kind] += 1
        log.warning(
            "Kinesis unreachable; retrying", stream=stream_name, error=kind, entries=len(call)
        )
        return PutOutcome(retry=call)
    except Exception as exc:  # a writer that dies stops the whole gateway
        # A bug in a library or an answer of an unexpected shape: retried like an outage.
        kind = type(exc).__name__
        stats.request_errors[kind] += 1
        first = kind not in unexpected
        unexpected.add(kind)
        log.error(
            "PutRecords raised an unexpected error; retrying",
            stream=stream_name,
            error=kind,
            detail=str(exc)[:200],
            entries=len(call),
            exc_info=first,
        )
        return PutOutcome(retry=call)
    stats.put_latency.observe(time.monotonic() - started)
    outcome = PutOutcome()
    throttled: set[str] = set()
    for entry, result in zip(call, results, strict=True):
        if result.ErrorCode is None:
            outcome.delivered += 1
            stats.kinesis_records += 1
            stats.user_records += len(entry.indexes)
            stats.bytes += entry.size
            stats.payload_units += put_payload_units(entry.size)
            if entry.shard is not None and result.ShardId not in (None, entry.shard):
                outcome.resharded = True
            continue
        code = result.ErrorCode
        stats.failed_entries[code] += 1
        if code in RETRIABLE:
            outcome.retry.append(entry)
            if entry.shard is not None and code == SHARD_THROTTLED:
                stats.throttles[entry.shard] += 1
                throttled.add(entry.shard)
        else:
            outcome.refused.append((entry, code, result.ErrorMessage or ""))
    for shard in throttled:  # one cut per call: a call's entries report one overload
        limiter.throttled(shard, time.monotonic())
    return outcome


def describe(exc: Exception) -> str:
    """An AWS error as ``Code: message``; any other exception as its text."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}"
    return str(exc)
