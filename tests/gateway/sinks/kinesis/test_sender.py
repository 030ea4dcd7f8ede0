"""The Kinesis sink's sender against a scripted client: what it does with each kind of answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from gateway.journal.settings import LocalSinkSettings
from gateway.sinks.kinesis import KinesisSink
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
