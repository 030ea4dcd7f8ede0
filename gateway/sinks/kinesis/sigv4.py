"""AWS Signature Version 4 for one JSON POST to the service root (sans-I/O: the caller passes the
clock's reading and the credentials).

Only what PutRecords needs: method POST, path ``/``, no query string, the body's SHA-256 signed
(the AWS General Reference, "Create a signed AWS API request"; botocore's ``SigV4Auth`` is the
reference the tests compare against, header for header). The body is hashed once, by the
caller, over the bytes it sends.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_host(url: str) -> str:
    """The ``Host`` header of ``url`` as SigV4 signs it: lowercase, no user info, the port
    only if it is not the scheme's default, IPv6 literals in brackets (as botocore does)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


class SigV4Signer:
    """Signs requests for one service in one region; the signing key is derived once a day.

    ``sign`` returns the headers to send beside the caller's: ``X-Amz-Date``, the session
    token if any, ``Authorization``. Every header the caller passes is signed (names as given,
    compared lowercase), and ``host`` must be among them.
    """

    __slots__ = ("_key", "_region", "_service")

    def __init__(self, region: str, service: str) -> None:
        self._region = region
        self._service = service
        # (secret key, date) -> signing key: credentials rotate, dates roll over.
        self._key: tuple[str, str, bytes] | None = None

    def sign(
        self,
        headers: dict[str, str],
        body_sha256: str,
        amz_date: str,
        access_key: str,
        secret_key: str,
        token: str | None,
    ) -> dict[str, str]:
        """Headers that authenticate a POST to ``/`` with ``headers`` and a body whose SHA-256
        (hex) is ``body_sha256``, at ``amz_date`` (``YYYYMMDDTHHMMSSZ``, UTC)."""
        added = {"X-Amz-Date": amz_date}
        if token:
            added["X-Amz-Security-Token"] = token
        signed = sorted(
            (name.lower(), " ".join(value.split())) for name, value in (headers | added).items()
        )
        names = ";".join(name for name, _ in signed)
        canonical = "\n".join(
            (
                "POST",
                "/",
                "",  # no query string
                *(f"{name}:{value}" for name, value in signed),
                "",  # the header block ends with a newline
                names,
                body_sha256,
            )
        )
        date = amz_date[:8]
        scope = f"{date}/{self._region}/{self._service}/aws4_request"
        string_to_sign = "\n".join(
            (ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest())
        )
        signature = hmac.new(
            self._signing_key(secret_key, date), string_to_sign.encode(), hashlib.sha256
        ).hexdigest()
        added["Authorization"] = (
            f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={names}, "
            f"Signature={signature}"
        )
        return added

    def _signing_key(self, secret_key: str, date: str) -> bytes:
        if self._key is not None and self._key[:2] == (secret_key, date):
            return self._key[2]
        key = f"AWS4{secret_key}".encode()
        for part in (date, self._region, self._service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        self._key = (secret_key, date, key)
        return key
