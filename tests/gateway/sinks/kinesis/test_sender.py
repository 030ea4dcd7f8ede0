"""The Kinesis sink's sender against a scripted client: what it does with each kind of answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from structlog.testing import capture_logs

from gateway.journal.settings import LocalSinkSettings
from gateway.sinks.kinesis import KinesisSink
from gateway.sinks.kinesis.sink import STALL_FORGOTTEN_AFTER_S
from gateway.sinks.settings import KinesisSettings, KinesisStreamSettings

pytestmark = pytest.mark.asyncio

Answer = Callable[[list[dict[str, Any]]], dict[str, Any]]


def delivered(request: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "FailedRecordCount": 0,
        "Records": [{"SequenceNumber": str(i), "ShardId": "shardId-0"} for i in request],
    }


def all_throttled(request: list[dict[str, Any]]) -> dict[str, Any]:
    code = "ProvisionedThroughputExceededException"
    return {
        "FailedRecordCount": len(request),
        "Records": [{"ErrorCode": code, "ErrorMessage": "Rate exceeded"} for _ in request],
    }


class ScriptedClient:
    """Answers each PutRecords with the next step: an answer function or an exception."""

    def __init__(self, steps: list[Answer | BaseException], then: Answer = delivered) -> None:
        self.steps = steps
        self.then = then
        self.calls = 0
        self.list_shards_calls = 0

    async def list_shards(self, StreamName: str) -> dict[str, Any]:
        self.list_shards_calls += 1
        raise KeyError("HashKeyRange")  # an answer of a shape nobody expected

    async def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        step = self.steps.pop(0) if self.steps else self.then
        if isinstance(step, BaseException):
            raise step
        return step(Records)


def sink(tmp_path: Path, client: ScriptedClient) -> KinesisSink:
    settings = KinesisSettings(
        raw=KinesisStreamSettings(name="raw-stream"),
        parsed=KinesisStreamSettings(name="parsed-stream"),
        retry_first_s=0.01,
        retry_max_s=0.05,
        record_ttl_s=30.0,
    )
    out = KinesisSink(settings, LocalSinkSettings(data_dir=tmp_path))
    out._client = client  # no shard maps: records are sent unrouted, as before ListShards
    return out


RECORDS = [b'{"n": %d}' % i for i in range(20)]
KEYS = [f"device-{i % 3}" for i in range(20)]


@pytest.mark.parametrize(
    "failure",
    [RuntimeError("a library bug"), KeyError("Records"), lambda request: {"Records": []}],
    ids=["RuntimeError", "KeyError", "answer-without-results"],
)
async def test_an_unexpected_failure_of_put_records_is_retried_not_fatal(
    tmp_path: Path, failure: Answer | BaseException
) -> None:
    client = ScriptedClient([failure, failure, failure])
    out = sink(tmp_path, client)
    with capture_logs() as logs:
        lost = await out.write("raw", RECORDS, KEYS)
    assert lost == []
    assert client.calls == 4
    stats = out.stats["raw"]
    assert stats.user_records == len(RECORDS) and stats.dead_letters == 0
    kind = next(iter(stats.request_errors))
    assert stats.request_errors == {kind: 3}
    errors = [e for e in logs if e["event"] == "PutRecords raised an unexpected error; retrying"]
    # One line per failure with its type; the traceback only the first time.
    assert [(e["error"], e["exc_info"]) for e in errors] == [
        (kind, True),
        (kind, False),
        (kind, False),
    ]


async def test_a_stream_that_delivers_nothing_counts_as_failing_until_it_delivers(
    tmp_path: Path,
) -> None:
    # Every answer is a 200 with all entries throttled: no call "fails", nothing is delivered.
    client = ScriptedClient([all_throttled] * 12)
    out = sink(tmp_path, client)
    assert out.failing_for_s() == 0.0
    write = asyncio.create_task(out.write("parsed", RECORDS, KEYS))

    async def calls(n: int) -> None:
        while client.calls < n:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(calls(6), timeout=10)
    stalled = out.failing_for_s()
    assert stalled > 0.0
    await asyncio.sleep(0.05)
    assert out.failing_for_s() >= stalled + 0.05  # still nothing delivered: it keeps growing
    assert await write == []
    assert client.calls == 13
    assert out.failing_for_s() == 0.0  # delivered, and idle


async def test_a_stream_whose_records_are_all_refused_counts_as_failing(tmp_path: Path) -> None:
    # Records given up on at once (the stream deleted, the credentials revoked) are not a sink
    # that works: it stays failing across writes until one delivers.
    denied = ClientError(
        {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}},
        "PutRecords",
    )
    client = ScriptedClient([denied, denied])
    out = sink(tmp_path, client)
    assert await out.write("raw", RECORDS, KEYS) == list(range(len(RECORDS)))
    first = out.failing_for_s()
    assert first > 0.0
    assert await out.write("raw", RECORDS, KEYS) == list(range(len(RECORDS)))
    assert out.failing_for_s() > first
    assert await out.write("raw", RECORDS, KEYS) == []
    assert out.failing_for_s() == 0.0


async def test_a_stall_is_forgotten_once_the_stream_has_had_nothing_to_write(
    tmp_path: Path,
) -> None:
    # Otherwise /readyz would keep new devices away for good, and without devices no write
    # would ever show that Kinesis is back.
    client = ScriptedClient([RuntimeError("down")] * 100)
    out = sink(tmp_path, client)
    out.give_up_at(time.monotonic() + 0.2)  # the write gives up (as at shutdown)
    with capture_logs():
        await out.write("raw", RECORDS, KEYS)
    assert out.failing_for_s() > 0.0
    out._written_at["raw"] -= STALL_FORGOTTEN_AFTER_S  # idle that long since
    assert out.failing_for_s() == 0.0


async def test_an_unexpected_failure_of_a_shard_map_refresh_does_not_end_the_refreshes(
    tmp_path: Path,
) -> None:
    client = ScriptedClient([])
    out = sink(tmp_path, client)
    refresher = asyncio.create_task(out._refresh_loop())

    async def refreshed() -> None:
        out._refresh_needed.add("raw-stream")  # a record landed on an unexpected shard
        calls = client.list_shards_calls
        while client.list_shards_calls == calls:
            assert not refresher.done(), refresher
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(refreshed(), timeout=10)
        await asyncio.wait_for(refreshed(), timeout=10)  # the failure did not end the loop
    finally:
        refresher.cancel()
