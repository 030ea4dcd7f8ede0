"""What botocore itself makes of a PutRecords request: the reference the lean path is held to."""

from __future__ import annotations

import datetime
from typing import Any
from unittest import mock

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.serialize import create_serializer

from gateway.sinks.kinesis.lean import CONTENT_TYPE, TARGET


def signed_headers(
    url: str,
    body: bytes,
    at: datetime.datetime,
    region: str,
    credentials: tuple[str, str, str | None],
) -> dict[str, str]:
    """The headers botocore's ``SigV4Auth`` adds to a PutRecords POST at ``at`` (UTC)."""
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET},
    )
    with mock.patch("botocore.auth.get_current_datetime", return_value=at):
        SigV4Auth(Credentials(*credentials), "kinesis", region).add_auth(request)
    return {
        name: request.headers[name]
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token")
        if name in request.headers
    }


def serialized(params: dict[str, Any]) -> dict[str, Any]:
    """botocore's serialization of a PutRecords call (body as bytes, headers)."""
    model = botocore.session.get_session().get_service_model("kinesis")
    serializer = create_serializer(model.metadata["protocol"], include_validation=True)
    request: dict[str, Any] = serializer.serialize_to_request(
        params, model.operation_model("PutRecords")
    )
    return request
