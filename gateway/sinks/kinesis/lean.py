"""PutRecords without botocore's request machinery: the body built as bytes, signed once, sent
through the client's own HTTP session.

botocore spends most of a shipper's CPU on PutRecords (issue 17): a dict per entry, base64 to a
``str`` per entry, ``json.dumps`` of the whole multi-megabyte request, then its hooks and
parsers. Here msgspec writes the JSON body in one pass (``bytes`` fields come out as base64),
SHA-256 runs once over it for SigV4 (``sigv4``), and the answer is decoded straight into
``PutResult``s. The aiobotocore client stays for everything else (ListShards …) and lends its
HTTP session: the same connection pool, TLS settings, proxies and timeouts, and its failures
come out as botocore's exceptions (``EndpointConnectionError``, ``ReadTimeoutError`` …). An
error answer is raised as botocore's ``ClientError`` with the code botocore's JSON parser would
give it, so ``put.put_records`` treats both paths alike.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import msgspec
from botocore.awsrequest import AWSPreparedRequest
from botocore.compat import HTTPHeaders
from botocore.exceptions import ClientError, NoCredentialsError

from gateway.sinks.kinesis.entries import Entry
from gateway.sinks.kinesis.sigv4 import SigV4Signer, canonical_host

# The Kinesis API is AWS JSON 1.1 (botocore's service model: targetPrefix, jsonVersion).
TARGET = "Kinesis_20131202.PutRecords"
CONTENT_TYPE = "application/x-amz-json-1.1"
SERVICE = "kinesis"
AMZ_DATE = "%Y%m%dT%H%M%SZ"


class PutResult(msgspec.Struct):
    """One entry's answer: a sequence number and shard, or an error code and message."""

    SequenceNumber: str | None = None
    ShardId: str | None = None
    ErrorCode: str | None = None
    ErrorMessage: str | None = None


class _Answer(msgspec.Struct):
    Records: list[PutResult]


class _Record(msgspec.Struct, omit_defaults=True):
    Data: bytes  # msgspec writes bytes as base64, as the API wants
    PartitionKey: str
    ExplicitHashKey: str | None = None


class _Request(msgspec.Struct):
    StreamName: str
    Records: list[_Record]


_encode = msgspec.json.Encoder().encode
_decode_answer = msgspec.json.Decoder(_Answer).decode


def request_body(stream_name: str, call: list[Entry]) -> bytes:
    """The PutRecords request for ``call`` as JSON bytes."""
    return _encode(
        _Request(
            stream_name,
            [_Record(e.data, e.partition_key, e.explicit_hash_key) for e in call],
        )
    )


def read_answer(status: int, headers: dict[str, str], body: bytes) -> list[PutResult]:
    """The per-entry results of a PutRecords answer.

    An error status raises ``ClientError`` shaped as botocore's JSON protocol makes it (code
    from ``__type`` without its namespace, else the status; message from ``message`` or
    ``Message``). A 200 that is not a PutRecords answer raises ``msgspec.DecodeError`` or
    ``msgspec.ValidationError``: the caller retries it like an outage.
    """
    if status < 300:
        return _decode_answer(body).Records
    try:
        error = msgspec.json.decode(body) if body else {}
    except msgspec.DecodeError:
        error = {"message": body.decode(errors="replace")}
    if not isinstance(error, dict):
        error = {}
    code = error.get("__type") or str(status)
    code = str(code).split(":", 1)[0].rsplit("#", 1)[-1]
    message = error.get("message", error.get("Message", ""))
    metadata: dict[str, Any] = {"HTTPStatusCode": status}
    if "x-amzn-requestid" in headers:
        metadata["RequestId"] = headers["x-amzn-requestid"]
    response: Any = {"Error": {"Code": code, "Message": str(message)}, "ResponseMetadata": metadata}
    raise ClientError(response, "PutRecords")


class LeanPutRecords:
    """PutRecords calls to one endpoint, signed with the session's (refreshed) credentials."""

    def __init__(
        self,
        http_session: Any,
        endpoint_url: str,
        region: str,
        credentials: Any,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``http_session``: an aiobotocore HTTP session (``send(AWSPreparedRequest)``);
        ``credentials``: botocore credentials (refreshable ones refresh themselves), or None
        when there are none, which fails each call as botocore would."""
        self._http = http_session
        self._url = endpoint_url.rstrip("/") + "/"
        self._host = canonical_host(endpoint_url)
        self._signer = SigV4Signer(region, SERVICE)
        self._credentials = credentials
        self._clock = clock

    @classmethod
    async def for_client(cls, session: Any, client: Any) -> LeanPutRecords | None:
        """The lean path beside an aiobotocore Kinesis ``client`` of ``session``; None when the
        endpoint has a path (only ``/`` is signed here), and botocore keeps PutRecords."""
        endpoint = client.meta.endpoint_url
        if urlsplit(endpoint).path not in ("", "/"):
            return None
        credentials = await session.get_credentials()
        # aiobotocore keeps its HTTP session on the endpoint; sharing it shares the pool.
        http = client._endpoint.http_session
        return cls(http, endpoint, client.meta.region_name, credentials)

    async def put(self, stream_name: str, call: list[Entry]) -> list[PutResult]:
        """Send ``call``; the answer's results, one per entry (see ``read_answer``)."""
        if self._credentials is None:
            raise NoCredentialsError()
        frozen = await self._credentials.get_frozen_credentials()
        body = request_body(stream_name, call)
        headers = {"Host": self._host, "Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET}
        headers |= self._signer.sign(
            headers,
            hashlib.sha256(body).hexdigest(),
            time.strftime(AMZ_DATE, time.gmtime(self._clock())),
            frozen.access_key,
            frozen.secret_key,
            frozen.token,
        )
        prepared = HTTPHeaders()
        for name, value in headers.items():
            prepared[name] = value
        request = AWSPreparedRequest("POST", self._url, prepared, body, stream_output=False)
        response = await self._http.send(request)
        return read_answer(response.status_code, response.headers, await response.content)
