"""Our SigV4 signer against botocore's ``SigV4Auth`` on a fixed clock: the same headers, byte for
byte, for the requests the lean PutRecords path sends."""

from __future__ import annotations

import datetime
import hashlib

import pytest

from gateway.sinks.kinesis.lean import CONTENT_TYPE, TARGET
from gateway.sinks.kinesis.sigv4 import SigV4Signer, canonical_host
from tests.gateway.sinks.kinesis.botocore_reference import signed_headers

BODY = b'{"StreamName":"ev-raw","Records":[{"Data":"AAE=","PartitionKey":"dev-1"}]}'
KEY, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def botocore_headers(
    url: str, body: bytes, at: datetime.datetime, region: str, token: str | None
) -> dict[str, str]:
    return signed_headers(url, body, at, region, (KEY, SECRET, token))


def our_headers(
    signer: SigV4Signer,
    url: str,
    body: bytes,
    at: datetime.datetime,
    token: str | None,
    secret: str = SECRET,
) -> dict[str, str]:
    headers = {"Host": canonical_host(url), "Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET}
    return signer.sign(
        headers,
        hashlib.sha256(body).hexdigest(),
        at.strftime("%Y%m%dT%H%M%SZ"),
        KEY,
        secret,
        token,
    )


AT = datetime.datetime(2026, 12, 7, 7, 30, 5)


@pytest.mark.parametrize(
    "url",
    [
        "https://kinesis.eu-west-1.amazonaws.com",
        "https://kinesis.eu-west-1.amazonaws.com:443/",
        "http://127.0.0.1:4567",
        "http://LocalHost:80",
        "https://[::1]:8443",
    ],
)
@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEJr//////////token=="])
def test_headers_are_botocores(url: str, token: str | None) -> None:
    signer = SigV4Signer("eu-west-1", "kinesis")
    expected = botocore_headers(url, BODY, AT, "eu-west-1", token)
    assert our_headers(signer, url, BODY, AT, token) == expected
    assert ("X-Amz-Security-Token" in expected) == (token is not None)


def test_an_empty_and_a_large_body_sign_as_botocore_signs_them() -> None:
    signer = SigV4Signer("us-east-1", "kinesis")
    url = "https://kinesis.us-east-1.amazonaws.com"
    large = b'{"Records":[' + b'{"Data":"' + b"A" * 3_000_000 + b'"}]}'
    for body in (b"", large):
        assert our_headers(signer, url, body, AT, None) == botocore_headers(
            url, body, AT, "us-east-1", None
        )


def test_the_signing_key_follows_the_date_and_the_credentials() -> None:
    # The key is derived once and kept: a new day or rotated credentials must not reuse it.
    signer = SigV4Signer("us-east-1", "kinesis")
    url = "https://kinesis.us-east-1.amazonaws.com"
    next_day = AT + datetime.timedelta(days=1)
    for at in (AT, AT + datetime.timedelta(hours=1), next_day, AT):
        assert our_headers(signer, url, BODY, at, None) == botocore_headers(
            url, BODY, at, "us-east-1", None
        )
    rotated = our_headers(signer, url, BODY, AT, None, secret="another-secret")
    assert rotated != our_headers(signer, url, BODY, AT, None)
    assert rotated["Authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={KEY}/20261207/us-east-1/kinesis/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature="
    )


def test_header_values_are_trimmed_as_sigv4_says() -> None:
    # "Trimall": leading, trailing and repeated inner spaces do not count.
    signer = SigV4Signer("us-east-1", "kinesis")
    tidy = {"Host": "example.com", "X-Amz-Target": TARGET}
    messy = {"Host": "example.com", "X-Amz-Target": f"  {TARGET}  ", "x-custom": "a   b"}
    tidy["x-custom"] = "a b"
    args = ("0" * 64, "20261207T073005Z", KEY, SECRET, None)
    assert signer.sign(messy, *args) == signer.sign(tidy, *args)
