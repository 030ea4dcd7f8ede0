"""The delivery targets: an HTTP webhook, an SNS topic and the notifications Kinesis stream.

Each turns a target's own failures into verdicts (retry or refused), never exceptions, and keeps
secrets and URLs out of them: a verdict's reason ends up in logs and dead-letter files.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any

import aiobotocore.session
import aiohttp
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from gateway.notify.queue import ACCEPTED, Outcome, Outgoing, Verdict
from gateway.notify.settings import SnsTargetSettings, WebhookTargetSettings
from gateway.sinks.kinesis import KinesisSink
from parser.kpl import MAX_PARTITION_KEY_CHARS

# Worth sending again: the receiver is overloaded or restarting (RFC 9110 15.5.9, 15.6;
# RFC 6585 4 for 429; RFC 8470 5.2 for 425).
RETRIABLE_STATUS = frozenset({408, 425, 429})
SNS_BATCH = 10  # PublishBatch's limit
SNS_RETRIABLE = frozenset(
    {"Throttling", "ThrottlingException", "ThrottledException", "InternalError", "KMSThrottling"}
)
# What SNS takes as a FIFO MessageGroupId: 1-128 printable ASCII characters, no space (SNS API
# reference, PublishBatchRequestEntry). MQTT client ids may hold any UTF-8.
GROUP_ID = re.compile(r"[!-~]{1,128}")


def message_group_id(device_id: str) -> str:
    """The device id when SNS takes it as a MessageGroupId, else a stable hash of it: one group
    per device either way, and never a refusal that would dead-letter all its notifications."""
    if GROUP_ID.fullmatch(device_id):
        return device_id
    return hashlib.blake2b(device_id.encode(), digest_size=16).hexdigest()


class TargetSetupError(Exception):
    """A target cannot be used as configured (no AWS region, …)."""


def sign(key: bytes, timestamp: str, body: bytes) -> str:
    """``X-Signature``: HMAC-SHA256 over ``<timestamp>.<body>``. The timestamp is inside the
    MAC, so a receiver that refuses old timestamps cannot be fed a captured request again."""
    mac = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookTarget:
    """POSTs each notification as its JSON record, signed; 2xx is accepted, 408/425/429/5xx,
    timeouts and connection failures are retried, any other answer is refused."""

    name = "webhook"
    max_batch = 1

    def __init__(
        self, settings: WebhookTargetSettings, wall: Callable[[], float] = time.time
    ) -> None:
        self._settings = settings
        self._wall = wall
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._settings.timeout_s),
            headers=self._settings.headers,
        )

    async def deliver(self, batch: Sequence[Outgoing]) -> list[Verdict]:
        return [await self._post(item) for item in batch]

    async def _post(self, item: Outgoing) -> Verdict:
        assert self._session is not None
        settings = self._settings
        timestamp = str(int(self._wall()))  # per attempt: a retry is signed afresh
        headers = {
            "Content-Type": "application/json",
            "X-Notification-Id": item.note.id,
            "X-Signature-Timestamp": timestamp,
            "X-Signature": sign(settings.key, timestamp, item.body),
        }
        try:
            async with self._session.post(
                settings.url, data=item.body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                await response.read()  # the connection goes back to the pool clean
        except TimeoutError:
            return Verdict(Outcome.RETRY, f"no answer within {settings.timeout_s:g} s")
        except (aiohttp.ClientError, OSError) as exc:
            # The class only: an exception's text can carry the URL and its query string.
            return Verdict(Outcome.RETRY, type(exc).__name__)
        if 200 <= status < 300:
            return ACCEPTED
        if status in RETRIABLE_STATUS or status >= 500:
            return Verdict(Outcome.RETRY, f"HTTP {status}")
        return Verdict(Outcome.REFUSED, f"HTTP {status}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class SnsTarget:
    """PublishBatch to one topic, with message attributes ``device_id``, ``code``, ``severity``
    and ``state`` for subscription filter policies. A FIFO topic orders per device
    (MessageGroupId) and deduplicates redeliveries by the notification id."""

    name = "sns"
    max_batch = SNS_BATCH

    def __init__(self, settings: SnsTargetSettings) -> None:
        self._settings = settings
        self._stack = AsyncExitStack()
        self._client: Any = None

    async def open(self) -> None:
        s = self._settings
        config = AioConfig(
            retries={"total_max_attempts": 1},  # retries are the dispatcher's
            connect_timeout=min(5.0, s.timeout_s),
            read_timeout=s.timeout_s,
        )
        session = aiobotocore.session.get_session()
        try:
            self._client = await self._stack.enter_async_context(
                session.create_client(
                    "sns", region_name=s.region, endpoint_url=s.endpoint_url, config=config
                )
            )
        except NoRegionError:
            raise TargetSetupError(
                "no AWS region: set notifications.targets.sns.region or AWS_DEFAULT_REGION"
            ) from None
        except (BotoCoreError, ValueError) as exc:
            raise TargetSetupError(str(exc)) from None

    def _entry(self, index: int, item: Outgoing) -> dict[str, Any]:
        note = item.note
        attributes = {
            name: {"DataType": "String", "StringValue": value}
            for name, value in (
                ("device_id", note.device_id),
                ("code", note.code),
                ("severity", note.severity),
                ("state", note.state),
            )
        }
        entry: dict[str, Any] = {
            "Id": str(index),
            "Message": item.body.decode(),
            "MessageAttributes": attributes,
        }
        if self._settings.fifo:
            entry["MessageGroupId"] = message_group_id(note.device_id)
            entry["MessageDeduplicationId"] = note.id
        return entry

    async def deliver(self, batch: Sequence[Outgoing]) -> list[Verdict]:
        entries = [self._entry(i, item) for i, item in enumerate(batch)]
        try:
            response = await self._client.publish_batch(
                TopicArn=self._settings.topic_arn, PublishBatchRequestEntries=entries
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "Unknown")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            outcome = Outcome.RETRY if code in SNS_RETRIABLE or status >= 500 else Outcome.REFUSED
            return [Verdict(outcome, f"{code}: {error.get('Message', '')}")] * len(batch)
        except (BotoCoreError, OSError, TimeoutError) as exc:
            return [Verdict(Outcome.RETRY, type(exc).__name__)] * len(batch)
        verdicts = [ACCEPTED] * len(batch)
        for failed in response.get("Failed", []):
            # SenderFault: the entry itself is wrong; otherwise SNS could not take it now.
            outcome = Outcome.REFUSED if failed.get("SenderFault") else Outcome.RETRY
            reason = f"{failed.get('Code', 'Unknown')}: {failed.get('Message', '')}"
            verdicts[int(failed["Id"])] = Verdict(outcome, reason)
        return verdicts

    async def close(self) -> None:
        await self._stack.aclose()


class KinesisTarget:
    """The ``notifications`` stream of the Kinesis sink, through the sink's own client, shard
    routing, retries and dead letters (what it gives up on comes back ``lost``)."""

    name = "kinesis"
    max_batch = 500  # PutRecords' limit; the sink splits by size as well

    def __init__(self, sink: KinesisSink) -> None:
        self._sink = sink

    async def open(self) -> None:
        """The sink is opened (and closed) by the server."""

    async def deliver(self, batch: Sequence[Outgoing]) -> list[Verdict]:
        records = [item.body for item in batch]
        keys = [item.note.device_id[:MAX_PARTITION_KEY_CHARS] for item in batch]
        lost = set(await self._sink.write("notifications", records, keys))
        gone = Verdict(Outcome.LOST, "dead-lettered by the Kinesis sink")
        return [gone if i in lost else ACCEPTED for i in range(len(batch))]

    async def close(self) -> None:
        """The sink is closed by the server, after the dispatcher."""
