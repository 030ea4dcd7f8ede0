"""The lean PutRecords path: the body it builds against botocore's serializer, the request it
signs against botocore's signer, and what each kind of answer makes of a call (through
``put.put_records``, as the sink runs it) over a scripted HTTP session; then the sink with
either path against kinesalite behind the fault proxy."""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Callable, MutableMapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from aiobotocore.credentials import AioCredentials
from botocore.awsrequest import AWSPreparedRequest
from botocore.exceptions import ClientError, EndpointConnectionError
from structlog.testing import capture_logs

from gateway.journal.settings import LocalSinkSettings
from gateway.sinks.kinesis import KinesisSink
from gateway.sinks.kinesis.entries import Entry
from gateway.sinks.kinesis.lean import (
    CONTENT_TYPE,
    TARGET,
    LeanPutRecords,
    PutResult,
    read_answer,
    request_body,
)
from gateway.sinks.kinesis.limiter import ShardLimiter
from gateway.sinks.kinesis.put import PutOutcome, put_records
from gateway.sinks.kinesis.stats import KinesisStats
from gateway.sinks.settings import KinesisSettings, KinesisStreamSettings
from parser.kpl import deaggregate
from tests.gateway.sinks.kinesis.botocore_reference import serialized, signed_headers
from tests.gateway.sinks.kinesis.emulator import Kinesalite
from tests.gateway.sinks.kinesis.fault_proxy import FaultProxy

KEY, SECRET, TOKEN = "AKIDLEAN", "lean-secret-do-not-log", "lean-session-token-do-not-log"
ENDPOINT = "https://kinesis.eu-west-1.amazonaws.com"
AT = datetime.datetime(2026, 12, 7, 7, 30, 5, tzinfo=datetime.UTC)
THROTTLED = "ProvisionedThroughputExceededException"

ENTRIES = [
    Entry(b"\x00\x01binary\xff", "dev-1", None, None, [0]),
    Entry(b'{"a": "\\u00e9"}', 'dév "2"\n', "170141183460469231731687303715884105728", "s1", [1]),
    Entry(b"", "x" * 256, "0", "s0", [2, 3]),
]


def entries() -> list[Entry]:
    return [
        Entry(e.data, e.partition_key, e.explicit_hash_key, e.shard, e.indexes) for e in ENTRIES
    ]


def ok(shard: str = "s0") -> dict[str, str]:
    return {"SequenceNumber": "4962", "ShardId": shard}


def failed(code: str, message: str = "no") -> dict[str, str]:
    return {"ErrorCode": code, "ErrorMessage": message}


def answer(*records: dict[str, str]) -> tuple[int, bytes]:
    failures = sum("ErrorCode" in r for r in records)
    return 200, json.dumps({"FailedRecordCount": failures, "Records": list(records)}).encode()


def error(status: int, code: str, message: str = "(test)") -> tuple[int, bytes]:
    return status, json.dumps({"__type": code, "message": message}).encode()


class Response:
    def __init__(self, status: int, body: bytes) -> None:
        self.status_code = status
        self.headers = {"x-amzn-requestid": "req-1", "content-type": CONTENT_TYPE}
        self._body = body

    @property
    def content(self) -> Any:
        async def read() -> bytes:
            return self._body

        return read()


class ScriptedHttp:
    """An aiobotocore HTTP session that answers each request with the next step."""

    def __init__(self, steps: list[tuple[int, bytes] | BaseException]) -> None:
        self.steps = steps
        self.requests: list[AWSPreparedRequest] = []

    async def send(self, request: AWSPreparedRequest) -> Response:
        self.requests.append(request)
        step = self.steps.pop(0)
        if isinstance(step, BaseException):
            raise step
        return Response(*step)


def lean(http: ScriptedHttp, credentials: Any = None) -> LeanPutRecords:
    if credentials is None:
        credentials = AioCredentials(KEY, SECRET, TOKEN)
    return LeanPutRecords(http, ENDPOINT, "eu-west-1", credentials, clock=AT.timestamp)


async def call(
    step: tuple[int, bytes] | BaseException, stats: KinesisStats | None = None
) -> tuple[PutOutcome, KinesisStats, list[MutableMapping[str, Any]]]:
    stats = stats or KinesisStats("raw")
    with capture_logs() as logs:
        outcome = await put_records(
            None, lean(ScriptedHttp([step])), "ev-raw", entries(), stats, ShardLimiter(1.0), set()
        )
    return outcome, stats, logs


# -- the request --------------------------------------------------------------------------------


def test_the_body_is_what_botocore_serializes() -> None:
    body = request_body("ev-raw", ENTRIES)
    params = {
        "StreamName": "ev-raw",
        "Records": [
            {
                "Data": e.data,
                "PartitionKey": e.partition_key,
                **({"ExplicitHashKey": e.explicit_hash_key} if e.explicit_hash_key else {}),
            }
            for e in ENTRIES
        ],
    }
    reference = serialized(params)
    assert json.loads(body) == json.loads(reference["body"])
    assert reference["headers"]["X-Amz-Target"] == TARGET
    assert reference["headers"]["Content-Type"] == CONTENT_TYPE
    # Each record's data travels as standard base64, as the API says.
    sent = json.loads(body)["Records"]
    assert [base64.b64decode(r["Data"], validate=True) for r in sent] == [e.data for e in ENTRIES]
    assert "ExplicitHashKey" not in sent[0]


@pytest.mark.asyncio
async def test_the_request_is_signed_as_botocore_signs_it() -> None:
    http = ScriptedHttp([answer(ok(), ok("s1"), ok())])
    results = await lean(http).put("ev-raw", ENTRIES)
    assert [r.SequenceNumber for r in results] == ["4962"] * 3
    (request,) = http.requests
    assert (request.method, request.url) == ("POST", ENDPOINT + "/")
    body = request_body("ev-raw", ENTRIES)
    assert request.body == body
    headers = dict(request.headers.items())
    expected = signed_headers(
        ENDPOINT, body, AT.replace(tzinfo=None), "eu-west-1", (KEY, SECRET, TOKEN)
    )
    assert {name: headers[name] for name in expected} == expected
    assert headers["Host"] == "kinesis.eu-west-1.amazonaws.com"
    assert (headers["X-Amz-Target"], headers["Content-Type"]) == (TARGET, CONTENT_TYPE)


@pytest.mark.asyncio
async def test_refreshed_credentials_sign_the_next_call() -> None:
    credentials = AioCredentials(KEY, SECRET, TOKEN)
    http = ScriptedHttp([answer(ok(), ok(), ok()), answer(ok(), ok(), ok())])
    sender = lean(http, credentials)
    await sender.put("ev-raw", ENTRIES)
    credentials.access_key, credentials.token = "AKIDROTATED", "rotated-token"
    await sender.put("ev-raw", ENTRIES)
    second = dict(http.requests[1].headers.items())
    assert second["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDROTATED/")
    assert second["X-Amz-Security-Token"] == "rotated-token"


# -- the answer ---------------------------------------------------------------------------------


def test_a_partial_failure_reads_entry_by_entry() -> None:
    status, body = answer(ok(), failed(THROTTLED, "Rate exceeded for shard s1"), ok("s9"))
    assert read_answer(status, {}, body) == [
        PutResult("4962", "s0"),
        PutResult(ErrorCode=THROTTLED, ErrorMessage="Rate exceeded for shard s1"),
        PutResult("4962", "s9"),
    ]


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (
            400,
            b'{"__type":"ProvisionedThroughputExceededException","message":"slow"}',
            THROTTLED,
            "slow",
        ),
        (
            503,
            b'{"__type":"ServiceUnavailable","message":"(proxy)"}',
            "ServiceUnavailable",
            "(proxy)",
        ),
        (
            400,
            b'{"__type":"com.amazonaws.kinesis.v20131202#ResourceNotFoundException","Message":"gone"}',
            "ResourceNotFoundException",
            "gone",
        ),
        (400, b'{"__type":"ExpiredTokenException:http://internal/"}', "ExpiredTokenException", ""),
        (500, b"<html>Internal Server Error</html>", "500", "<html>Internal Server Error</html>"),
        (502, b"", "502", ""),
        (413, b"[1, 2]", "413", ""),
    ],
)
def test_an_error_answer_is_botocores_client_error(
    status: int, body: bytes, code: str, message: str
) -> None:
    with pytest.raises(ClientError) as raised:
        read_answer(status, {"x-amzn-requestid": "req-9"}, body)
    response: Any = raised.value.response
    assert response["Error"] == {"Code": code, "Message": message}
    assert response["ResponseMetadata"] == {"HTTPStatusCode": status, "RequestId": "req-9"}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"Records": null}',
        b'{"Records": [1]}',
        b'{"Records": [{"ShardId": 5}]}',
    ],
)
def test_a_malformed_answer_raises_a_decode_error(body: bytes) -> None:
    with pytest.raises(msgspec.MsgspecError):
        read_answer(200, {}, body)


# -- what a call does with each answer ----------------------------------------------------------


@pytest.mark.asyncio
async def test_partial_failure_retries_the_failed_entries_and_refuses_the_refused() -> None:
    outcome, stats, _ = await call(
        answer(ok(), failed(THROTTLED), failed("KMSAccessDeniedException", "key disabled"))
    )
    assert outcome.delivered == 1
    assert [e.indexes for e in outcome.retry] == [[1]]
    assert [(e.indexes, code, msg) for e, code, msg in outcome.refused] == [
        ([2, 3], "KMSAccessDeniedException", "key disabled")
    ]
    assert stats.failed_entries == {THROTTLED: 1, "KMSAccessDeniedException": 1}
    assert stats.throttles == {"s1": 1}
    assert (stats.user_records, stats.kinesis_records, stats.put_calls) == (1, 1, 1)
    assert not stats.request_errors


@pytest.mark.asyncio
async def test_an_entry_landing_on_an_unexpected_shard_asks_for_a_new_map() -> None:
    outcome, _, _ = await call(answer(ok("s7"), ok("s1"), ok("s0")))
    assert outcome.delivered == 3 and not outcome.resharded  # the first was not routed
    outcome, _, _ = await call(answer(ok(), ok("s2"), ok()))
    assert outcome.resharded


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("step", "kind"),
    [
        (error(400, THROTTLED), THROTTLED),
        (error(400, "LimitExceededException"), "LimitExceededException"),
        (error(503, "ServiceUnavailable"), "ServiceUnavailable"),
        ((500, b"<html>oops</html>"), "500"),
        (EndpointConnectionError(endpoint_url=ENDPOINT), "EndpointConnectionError"),
        (TimeoutError(), "TimeoutError"),
    ],
)
async def test_a_failed_request_retries_every_entry(
    step: tuple[int, bytes] | BaseException, kind: str
) -> None:
    outcome, stats, _ = await call(step)
    assert [e.indexes for e in outcome.retry] == [e.indexes for e in ENTRIES]
    assert not outcome.refused and outcome.delivered == 0
    assert stats.request_errors == {kind: 1}
    # Whole-request throttling cuts the rate of every shard the call carried.
    assert stats.throttles == ({"s0": 1, "s1": 1} if kind == THROTTLED else {})


@pytest.mark.asyncio
async def test_a_refusing_answer_refuses_every_entry() -> None:
    outcome, stats, _ = await call(
        error(400, "ResourceNotFoundException", "Stream ev-raw not found")
    )
    assert not outcome.retry
    assert {(code, msg) for _, code, msg in outcome.refused} == {
        ("ResourceNotFoundException", "ResourceNotFoundException: Stream ev-raw not found")
    }
    assert stats.request_errors == {"ResourceNotFoundException": 1}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "step",
    [(200, b"<html>captive portal</html>"), (200, b'{"Records": []}'), (200, b'{"Records": 3}')],
    ids=["not-json", "wrong-count", "wrong-shape"],
)
async def test_a_malformed_answer_is_a_retried_request_error_not_a_crash(
    step: tuple[int, bytes],
) -> None:
    outcome, stats, logs = await call(step)
    assert len(outcome.retry) == len(ENTRIES) and outcome.delivered == 0
    assert sum(stats.request_errors.values()) == 1
    assert [e["event"] for e in logs] == ["PutRecords raised an unexpected error; retrying"]


@pytest.mark.asyncio
async def test_no_credentials_fails_the_call_as_botocore_would() -> None:
    with capture_logs() as logs:
        outcome = await put_records(
            None,
            LeanPutRecords(ScriptedHttp([]), ENDPOINT, "eu-west-1", None),
            "ev-raw",
            entries(),
            KinesisStats("raw"),
            ShardLimiter(1.0),
            set(),
        )
    assert len(outcome.retry) == len(ENTRIES)
    assert [(e["event"], e["error"]) for e in logs] == [
        ("Kinesis unreachable; retrying", "NoCredentialsError")
    ]


@pytest.mark.asyncio
async def test_credentials_never_reach_the_log() -> None:
    steps: list[tuple[int, bytes] | BaseException] = [
        error(403, "UnrecognizedClientException", "The security token is invalid"),
        error(400, THROTTLED),
        (200, b"garbage"),
        EndpointConnectionError(endpoint_url=ENDPOINT),
    ]
    text = ""
    for step in steps:
        _, _, logs = await call(step)
        text += repr(logs)
    assert text and SECRET not in text and TOKEN not in text


# -- against kinesalite, through the fault proxy ------------------------------------------------


@pytest.mark.asyncio
async def test_lean_and_botocore_deliver_the_same_records(
    tmp_path: Path,
    kinesalite: Kinesalite,
    make_stream: Callable[[int], str],
    fault_proxy: FaultProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "test-token")
    fault_proxy.update(fail_entries_ratio=0.3)  # both paths retry, entry by entry
    records = [
        b'{"device_id":"dev-%d","n":%d,"pad":"%s"}' % (i % 17, i, b"x" * i) for i in range(400)
    ]
    keys = [f"dev-{i % 17}" for i in range(400)]
    delivered = {}
    for lean_path in (True, False):
        stream = make_stream(4)
        settings = KinesisSettings(
            raw=KinesisStreamSettings(name=stream),
            parsed=KinesisStreamSettings(name=make_stream(1)),
            region="us-east-1",
            endpoint_url=fault_proxy.url,
            retry_first_s=0.01,
            retry_max_s=0.05,
        )
        sink = KinesisSink(
            settings, LocalSinkSettings(data_dir=tmp_path / str(lean_path)), lean=lean_path
        )
        await sink.open()
        try:
            assert (sink._lean is not None) == lean_path
            assert await sink.write("raw", records, keys) == []
            assert sink.stats["raw"].retries > 0 and sink.stats["raw"].user_records == len(records)
        finally:
            await sink.close()
        delivered[lean_path] = [
            (r["ShardId"], key, data)
            for r in kinesalite.read_all(stream)
            for key, _, data in deaggregate(r["Data"]) or []
        ]
    # Every record once (a failed entry is not stored), on the same shards, in the same order.
    assert len(delivered[True]) == len(records)
    assert sorted(delivered[True]) == sorted(delivered[False])
    for shard in {s for s, _, _ in delivered[True]}:
        assert [r for r in delivered[True] if r[0] == shard] == [
            r for r in delivered[False] if r[0] == shard
        ]


@pytest.mark.asyncio
async def test_an_endpoint_with_a_path_keeps_botocores_put_records() -> None:
    # Only "/" is signed here; botocore signs whatever path the endpoint has.
    class Session:
        async def get_credentials(self) -> AioCredentials:
            return AioCredentials(KEY, SECRET, TOKEN)

    meta = SimpleNamespace(endpoint_url="https://gateway.example/kinesis", region_name="eu-west-1")
    assert await LeanPutRecords.for_client(Session(), SimpleNamespace(meta=meta)) is None
