"""The SNS target against moto_server on loopback: a topic with an SQS queue subscribed, read
back (body and attributes, raw delivery or the SNS envelope), a filter policy on the attributes,
and a FIFO topic and queue deduplicating a redelivered notification."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiobotocore.session
import msgspec
import pytest
import pytest_asyncio

from gateway.journal.settings import LocalSinkSettings
from gateway.notify.dispatcher import Dispatcher
from gateway.notify.settings import RetrySettings, SnsTargetSettings
from gateway.notify.targets import SnsTarget, message_group_id
from parser.rules import Notification
from tests import s3server
from tests.gateway.notify.notes import notification, outgoing
from tests.gateway.notify.scripted import dead_letters, until
from tests.s3server import MotoS3, isolate_aws

ACCOUNT = "123456789012"  # moto's default account
moto = s3server.moto  # one moto_server (S3, SNS and SQS) for this module


class Aws:
    """SNS and SQS clients on moto, for setting up topics and queues and reading them back."""

    def __init__(self, endpoint: str, sns: Any, sqs: Any) -> None:
        self.endpoint = endpoint
        self.sns = sns
        self.sqs = sqs

    async def topic(self, *, fifo: bool = False) -> str:
        name = f"faults-{uuid.uuid4().hex[:8]}" + (".fifo" if fifo else "")
        attributes = {"FifoTopic": "true"} if fifo else {}
        response = await self.sns.create_topic(Name=name, Attributes=attributes)
        arn: str = response["TopicArn"]
        return arn

    async def queue_on(
        self, topic_arn: str, *, raw: bool, filter_policy: dict[str, Any] | None = None
    ) -> str:
        fifo = topic_arn.endswith(".fifo")
        name = f"ops-{uuid.uuid4().hex[:8]}" + (".fifo" if fifo else "")
        attributes = {"FifoQueue": "true"} if fifo else {}
        url: str = (await self.sqs.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"]
        subscription = {"RawMessageDelivery": "true" if raw else "false"}
        if filter_policy is not None:
            subscription["FilterPolicy"] = json.dumps(filter_policy)
        await self.sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}",
            Attributes=subscription,
        )
        return url

    async def messages(self, queue_url: str) -> list[dict[str, Any]]:
        """Everything in the queue now (SNS delivers to SQS before Publish returns, on moto)."""
        out: list[dict[str, Any]] = []
        while True:
            response = await self.sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                AttributeNames=["All"],
                WaitTimeSeconds=0,
            )
            batch = response.get("Messages", [])
            if not batch:
                return out
            out += batch
            for message in batch:
                await self.sqs.delete_message(
                    QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"]
                )


@pytest_asyncio.fixture
async def aws(moto: MotoS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[Aws]:
    isolate_aws(monkeypatch, tmp_path)
    session = aiobotocore.session.get_session()
    async with (
        session.create_client("sns", endpoint_url=moto.endpoint) as sns,
        session.create_client("sqs", endpoint_url=moto.endpoint) as sqs,
    ):
        yield Aws(moto.endpoint, sns, sqs)


async def publish(
    aws: Aws, tmp_path: Path, topic_arn: str, notes: list[Notification]
) -> Dispatcher:
    """Deliver ``notes`` through a dispatcher with the SNS target; returns once SNS took them
    or they were dead-lettered."""
    target = SnsTarget(SnsTargetSettings(topic_arn=topic_arn, endpoint_url=aws.endpoint))
    await target.open()
    retry = RetrySettings(first_s=0.01, max_s=0.02, max_attempts=2)
    d = Dispatcher([target], retry, LocalSinkSettings(data_dir=tmp_path))
    d.start()
    d.submit(notes, [msgspec.json.encode(n) for n in notes], time.monotonic(), None)
    stats = d.stats.targets["sns"]
    await until(lambda: stats.delivered + sum(stats.dead_letters.values()) == len(notes))
    await d.close(0.0)
    return d


def attributes(note: Notification) -> dict[str, str]:
    return {
        "device_id": note.device_id,
        "code": note.code,
        "severity": note.severity,
        "state": note.state,
    }


@pytest.mark.asyncio
async def test_raw_delivery_carries_the_record_and_its_attributes(aws: Aws, tmp_path: Path) -> None:
    topic = await aws.topic()
    queue = await aws.queue_on(topic, raw=True)
    note = notification()
    d = await publish(aws, tmp_path, topic, [note])
    assert d.stats.targets["sns"].delivered == 1
    [message] = await aws.messages(queue)
    assert msgspec.json.decode(message["Body"], type=Notification) == note
    got = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert got == attributes(note)


@pytest.mark.asyncio
async def test_the_sns_envelope_carries_them_too(aws: Aws, tmp_path: Path) -> None:
    topic = await aws.topic()
    queue = await aws.queue_on(topic, raw=False)
    note = notification(code="EVB1-0x0102")
    await publish(aws, tmp_path, topic, [note])
    [message] = await aws.messages(queue)
    envelope = json.loads(message["Body"])
    assert (envelope["Type"], envelope["TopicArn"]) == ("Notification", topic)
    assert msgspec.json.decode(envelope["Message"], type=Notification) == note
    got = {k: v["Value"] for k, v in envelope["MessageAttributes"].items()}
    assert got == attributes(note)


@pytest.mark.asyncio
async def test_subscribers_filter_on_the_attributes(aws: Aws, tmp_path: Path) -> None:
    topic = await aws.topic()
    critical_only = await aws.queue_on(topic, raw=True, filter_policy={"severity": ["critical"]})
    warning = notification(severity="warning", raw_id="w")
    critical = notification(severity="critical", raw_id="c")
    await publish(aws, tmp_path, topic, [warning, critical])
    [message] = await aws.messages(critical_only)
    assert json.loads(message["Body"])["raw_id"] == "c"


@pytest.mark.asyncio
async def test_fifo_groups_by_device_and_drops_a_redelivery(aws: Aws, tmp_path: Path) -> None:
    topic = await aws.topic(fifo=True)
    queue = await aws.queue_on(topic, raw=True)
    first = notification(device_id="356307042441013", raw_id="a")
    other = notification(device_id="356307042441021", raw_id="b")
    # At least once: the same notification twice (a retry after a lost answer) is one message.
    d = await publish(aws, tmp_path, topic, [first, other, first])
    assert d.stats.targets["sns"].delivered == 3
    messages = await aws.messages(queue)
    assert [json.loads(m["Body"])["raw_id"] for m in messages] == ["a", "b"]
    assert [m["Attributes"]["MessageGroupId"] for m in messages] == [
        "356307042441013",
        "356307042441021",
    ]
    assert messages[0]["Attributes"]["MessageDeduplicationId"] == first.id


@pytest.mark.asyncio
async def test_a_missing_topic_is_refused_and_dead_lettered(aws: Aws, tmp_path: Path) -> None:
    missing = f"arn:aws:sns:us-east-1:{ACCOUNT}:no-such-topic"
    d = await publish(aws, tmp_path, missing, [notification()])
    assert d.stats.targets["sns"].dead_letters == {"refused": 1}
    [line] = dead_letters(tmp_path)
    assert (line["target"], line["reason"]) == ("sns", "refused")
    assert line["detail"].startswith("NotFound")


def test_a_device_id_sns_refuses_as_a_group_id_is_hashed_stably() -> None:
    """MessageGroupId: 1-128 printable ASCII characters, no space; MQTT ids may be anything."""
    assert message_group_id("356307042441013") == "356307042441013"
    assert message_group_id("fleet/ev-7:a~!") == "fleet/ev-7:a~!"
    for refused in ("ev 7", "Fahrzeug-ä", "x" * 129, ""):
        group = message_group_id(refused)
        assert re.fullmatch(r"[0-9a-f]{32}", group)
        assert group == message_group_id(refused)
    assert message_group_id("ev 7") != message_group_id("ev 8")


def test_a_fifo_entry_carries_that_group_id() -> None:
    arn = f"arn:aws:sns:us-east-1:{ACCOUNT}:alerts.fifo"
    target = SnsTarget(SnsTargetSettings(topic_arn=arn))
    entry = target._entry(0, outgoing(device_id="ev 7"))
    assert entry["MessageGroupId"] == message_group_id("ev 7")
