"""kinesalite and the fault proxy, driven by aiobotocore over loopback."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from tests.gateway.sinks.kinesis.emulator import Kinesalite
from tests.gateway.sinks.kinesis.fault_proxy import (
    INTERNAL_FAILURE,
    SERVICE_UNAVAILABLE,
    THROUGHPUT_EXCEEDED,
    FaultProxy,
    HttpMessage,
    data_sha256,
    read_message,
)

if TYPE_CHECKING:
    from types_aiobotocore_kinesis.client import KinesisClient
    from types_aiobotocore_kinesis.type_defs import PutRecordsRequestEntryTypeDef

pytestmark = pytest.mark.asyncio

NO_RETRIES = {"total_max_attempts": 1}


@asynccontextmanager
async def kinesis(endpoint: str, **config: Any) -> AsyncIterator[KinesisClient]:
    """A client with dummy credentials passed in, so the environment cannot interfere."""
    async with get_session().create_client(
        "kinesis",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=AioConfig(connect_timeout=2, read_timeout=10, **config),
    ) as client:
        yield client


def entries(count: int, prefix: str = "r") -> list[PutRecordsRequestEntryTypeDef]:
    return [{"Data": f"{prefix}-{i}".encode(), "PartitionKey": f"device-{i}"} for i in range(count)]


def data_bytes(entry: PutRecordsRequestEntryTypeDef) -> bytes:
    assert isinstance(entry["Data"], bytes)
    return entry["Data"]


async def test_records_put_with_aiobotocore_are_read_back(
    kinesalite: Kinesalite, stream: str
) -> None:
    last_shard = kinesalite.list_shards(stream)[-1]
    async with kinesis(kinesalite.endpoint) as client:
        answer = await client.put_records(StreamName=stream, Records=entries(200))
        routed = await client.put_records(
            StreamName=stream,
            Records=[
                {
                    "Data": b"routed",
                    "PartitionKey": "device-0",
                    "ExplicitHashKey": last_shard["HashKeyRange"]["StartingHashKey"],
                }
            ],
        )
    assert answer["FailedRecordCount"] == 0
    records = kinesalite.read_all(stream)
    assert sorted(r["Data"] for r in records) == sorted(
        [b"routed"] + [f"r-{i}".encode() for i in range(200)]
    )
    assert {r["PartitionKey"] for r in records} == {f"device-{i}" for i in range(200)}
    assert len({r["ShardId"] for r in records}) == 4
    by_sequence = {r["SequenceNumber"]: r for r in records}
    for sent, result in zip(entries(200), answer["Records"], strict=True):
        stored = by_sequence[result["SequenceNumber"]]
        assert (stored["Data"], stored["ShardId"]) == (sent["Data"], result["ShardId"])
    assert routed["Records"][0]["ShardId"] == last_shard["ShardId"]


async def test_proxy_passes_other_calls_through_on_one_keep_alive_connection(
    kinesalite: Kinesalite, fault_proxy: FaultProxy, stream: str
) -> None:
    async with kinesis(fault_proxy.url) as client:
        assert stream in (await client.list_streams())["StreamNames"]
        for _ in range(3):
            await client.put_records(StreamName=stream, Records=entries(10))
        summary = await client.describe_stream_summary(StreamName=stream)
    assert summary["StreamDescriptionSummary"]["OpenShardCount"] == 4
    assert len(kinesalite.read_all(stream)) == 30
    stats = fault_proxy.stats()
    assert stats.connections == 1
    assert stats.entries_forwarded == 30
    assert stats.requests_by_target == {
        "Kinesis_20131202.ListStreams": 1,
        "Kinesis_20131202.PutRecords": 3,
        "Kinesis_20131202.DescribeStreamSummary": 1,
    }


async def test_failed_entries_are_not_stored_and_only_resends_repeat(
    kinesalite: Kinesalite, fault_proxy: FaultProxy, stream: str
) -> None:
    sent = entries(100)
    fault_proxy.update(fail_entries_ratio=0.3)
    async with kinesis(fault_proxy.url) as client:
        answer = await client.put_records(StreamName=stream, Records=sent)
        results = list(zip(sent, answer["Records"], strict=True))
        failed = [entry for entry, result in results if "ErrorCode" in result]
        stored_once = next(entry for entry, result in results if "ErrorCode" not in result)
        assert answer["FailedRecordCount"] == len(failed) == 30
        assert {r.get("ErrorCode") for r in answer["Records"]} == {
            None,
            THROUGHPUT_EXCEEDED,
            INTERNAL_FAILURE,
        }
        assert all(r["ErrorMessage"] for r in answer["Records"] if "ErrorCode" in r)
        assert all(r["SequenceNumber"] for r in answer["Records"] if "ErrorCode" not in r)
        assert Counter(r["Data"] for r in kinesalite.read_all(stream)) == Counter(
            e["Data"] for e in sent if e not in failed
        )

        stats = fault_proxy.stats()
        assert stats.entries_forwarded == 70
        assert sum(stats.entries_failed_by_code.values()) == 30
        assert sorted((f.partition_key, f.data_sha256) for f in stats.failed_entries) == sorted(
            (e["PartitionKey"], data_sha256(data_bytes(e))) for e in failed
        )

        # Resend the failed entries and, wrongly, one that had succeeded: only that one repeats.
        fault_proxy.update(fail_entries_ratio=0.0)
        resent = await client.put_records(StreamName=stream, Records=[*failed, stored_once])
        assert resent["FailedRecordCount"] == 0
    stored = Counter(r["Data"] for r in kinesalite.read_all(stream))
    assert set(stored) == {e["Data"] for e in sent}
    assert {data for data, n in stored.items() if n > 1} == {stored_once["Data"]}


async def test_all_entries_failed_are_answered_without_forwarding(
    kinesalite: Kinesalite, fault_proxy: FaultProxy, stream: str
) -> None:
    fault_proxy.update(fail_entries_ratio=1.0, fail_error_codes=(INTERNAL_FAILURE,))
    async with kinesis(fault_proxy.url) as client:
        answer = await client.put_records(StreamName=stream, Records=entries(5))
    assert answer["FailedRecordCount"] == 5
    assert {r.get("ErrorCode") for r in answer["Records"]} == {INTERNAL_FAILURE}
    assert kinesalite.read_all(stream) == []
    assert fault_proxy.stats().entries_forwarded == 0


async def test_a_request_the_service_rejects_is_forwarded_untouched(
    fault_proxy: FaultProxy, stream: str
) -> None:
    fault_proxy.update(fail_entries_ratio=0.5)
    async with kinesis(fault_proxy.url, parameter_validation=False) as client:
        with pytest.raises(ClientError) as raised:
            await client.put_records(StreamName=stream, Records=entries(501))
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert fault_proxy.stats().failed_entries == ()


async def test_throttled_request_is_a_client_error_and_not_stored(
    kinesalite: Kinesalite, fault_proxy: FaultProxy, stream: str
) -> None:
    fault_proxy.update(throttle_requests=True)
    async with kinesis(fault_proxy.url, retries=NO_RETRIES) as client:
        with pytest.raises(ClientError) as raised:
            await client.put_records(StreamName=stream, Records=entries(3))
        assert raised.value.response["Error"]["Code"] == THROUGHPUT_EXCEEDED
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        await client.describe_stream_summary(StreamName=stream)  # reads are not throttled
    assert kinesalite.read_all(stream) == []
    assert fault_proxy.stats().throttled_requests == 1


async def test_unavailable_is_a_503_not_stored_and_the_largest_call_is_measured(
    kinesalite: Kinesalite, fault_proxy: FaultProxy, stream: str
) -> None:
    fault_proxy.update(unavailable_requests=True)
    async with kinesis(fault_proxy.url, retries=NO_RETRIES) as client:
        with pytest.raises(ClientError) as raised:
            await client.put_records(StreamName=stream, Records=entries(300))
        assert raised.value.response["Error"]["Code"] == SERVICE_UNAVAILABLE
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        fault_proxy.update(unavailable_requests=False)
        await client.put_records(StreamName=stream, Records=entries(2))
    assert len(kinesalite.read_all(stream)) == 2
    stats = fault_proxy.stats()
    assert stats.unavailable_answers == 1
    # 300 entries of ~20 bytes of JSON each, whether or not they were forwarded.
    assert 300 * 20 < stats.largest_put_records_bytes < 300 * 80


async def test_botocore_retries_a_throttled_request_by_itself(
    kinesalite: Kinesalite, fault_proxy: FaultProxy, stream: str
) -> None:
    fault_proxy.update(throttle_next=1)
    async with kinesis(fault_proxy.url, retries={"mode": "standard", "total_max_attempts": 2}) as c:
        answer = await c.put_records(StreamName=stream, Records=entries(3))
    assert answer["FailedRecordCount"] == 0
    assert len(kinesalite.read_all(stream)) == 3
    assert fault_proxy.policy.throttle_next == 0
    assert fault_proxy.stats().requests_by_target["Kinesis_20131202.PutRecords"] == 2


async def test_refused_connections_fail_calls_until_cleared(
    kinesalite: Kinesalite, fault_proxy: FaultProxy, stream: str
) -> None:
    async with kinesis(fault_proxy.url, retries=NO_RETRIES) as client:
        await client.put_records(StreamName=stream, Records=entries(1, "before"))
        fault_proxy.update(refuse_connections=True)  # resets the kept-alive connection too
        for _ in range(2):
            with pytest.raises((EndpointConnectionError, ConnectionClosedError)):
                await client.put_records(StreamName=stream, Records=entries(1, "down"))
        fault_proxy.update(refuse_connections=False)
        await client.put_records(StreamName=stream, Records=entries(1, "after"))
    assert sorted(r["Data"] for r in kinesalite.read_all(stream)) == [b"after-0", b"before-0"]
    assert fault_proxy.stats().refused_connections >= 2


async def test_delay_adds_latency(fault_proxy: FaultProxy, stream: str) -> None:
    async with kinesis(fault_proxy.url) as client:
        await client.list_streams()
        fault_proxy.update(delay_s=0.3)
        started = time.monotonic()
        await client.describe_stream_summary(StreamName=stream)
    assert time.monotonic() - started >= 0.3


async def test_megabyte_bodies_pass_both_ways(
    kinesalite: Kinesalite, fault_proxy: FaultProxy, stream: str
) -> None:
    blobs = [bytes([i]) * (1024 * 1024 - 100) for i in range(4)]
    fault_proxy.update(fail_entries_ratio=0.25)
    async with kinesis(fault_proxy.url) as client:
        answer = await client.put_records(
            StreamName=stream,
            Records=[{"Data": blob, "PartitionKey": "one-shard"} for blob in blobs],
        )
        assert answer["FailedRecordCount"] == 1
        shard = next(r["ShardId"] for r in answer["Records"] if "ShardId" in r)
        iterator = await client.get_shard_iterator(
            StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )
        read = await client.get_records(ShardIterator=iterator["ShardIterator"])
    assert sorted(r["Data"] for r in read["Records"]) == sorted(
        blob for blob, r in zip(blobs, answer["Records"], strict=True) if "ShardId" in r
    )


@pytest.mark.parametrize("step", [1, 7, 10_000])
async def test_read_message_frames_bodies_and_leaves_the_next_message_unread(step: int) -> None:
    wire = (
        b"HTTP/1.1 413 Payload Too Large\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        b"HTTP/1.1 200 OK\r\n"
    )
    reader = asyncio.StreamReader()

    async def feed() -> None:
        for start in range(0, len(wire), step):
            reader.feed_data(wire[start : start + step])
            await asyncio.sleep(0)

    feeder = asyncio.create_task(feed())
    request = HttpMessage(b"POST / HTTP/1.1", (), b"")
    first = await read_message(reader, response_to=request)
    second = await read_message(reader, response_to=request)
    await feeder
    assert first is not None and second is not None
    assert (first.status, first.body, first.header("content-length")) == (413, b"abcde", "5")
    assert first.header("transfer-encoding") is None
    assert (second.status, second.body, second.closes_connection()) == (200, b"{}", True)
    reader.feed_eof()
    assert await reader.read() == b"HTTP/1.1 200 OK\r\n"
