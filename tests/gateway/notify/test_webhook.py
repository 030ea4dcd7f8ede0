"""The webhook target against a real receiver on loopback that verifies every signature."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from pydantic import SecretStr

from gateway.journal.settings import LocalSinkSettings
from gateway.notify.dispatcher import Dispatcher
from gateway.notify.settings import RetrySettings, WebhookTargetSettings
from gateway.notify.targets import WebhookTarget
from tests.gateway.notify.notes import notification
from tests.gateway.notify.receiver import WebhookReceiver
from tests.gateway.notify.scripted import dead_letters, until

SECRET = "correct horse battery staple"
RETRY = RetrySettings(first_s=0.01, max_s=0.02, max_attempts=3)


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    r = WebhookReceiver(SECRET.encode())
    await r.start()
    yield r
    await r.stop()


async def deliver(
    tmp_path: Path, url: str, *, secret: str = SECRET, **settings: Any
) -> tuple[Dispatcher, bytes]:
    """Start a dispatcher with the webhook target and submit one notification."""
    target = WebhookTarget(WebhookTargetSettings(url=url, secret=SecretStr(secret), **settings))
    await target.open()
    d = Dispatcher([target], RETRY, LocalSinkSettings(data_dir=tmp_path))
    d.start()
    note = notification()
    body = msgspec.json.encode(note)
    d.submit([note], [body], time.monotonic(), None)
    return d, body


@pytest.mark.asyncio
async def test_a_signed_json_post_per_notification(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    d, body = await deliver(tmp_path, receiver.url, headers={"X-Tenant": "acme"})
    stats = d.stats.targets["webhook"]
    await until(lambda: stats.delivered == 1)
    assert receiver.taken == [msgspec.json.decode(body)]
    assert receiver.requests[0]["X-Tenant"] == "acme"
    assert sum(stats.latency.counts) == 1 and stats.retries == 0
    await d.close(0.0)


@pytest.mark.asyncio
async def test_a_wrong_secret_is_refused_by_the_receiver_and_dead_lettered(
    tmp_path: Path, receiver: WebhookReceiver, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "not the shared secret at all"
    d, _ = await deliver(tmp_path, receiver.url, secret=wrong)
    stats = d.stats.targets["webhook"]
    await until(lambda: stats.dead_letters["refused"] == 1)
    await d.close(0.0)
    assert receiver.rejected == 1 and receiver.taken == []  # 401 is not worth a retry
    [line] = dead_letters(tmp_path)
    assert (line["target"], line["reason"], line["detail"]) == ("webhook", "refused", "HTTP 401")
    assert wrong not in capsys.readouterr().out + json.dumps(line)


@pytest.mark.asyncio
async def test_server_errors_are_retried_until_taken(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    receiver.statuses = [500, 503, 200]
    d, body = await deliver(tmp_path, receiver.url)
    stats = d.stats.targets["webhook"]
    await until(lambda: stats.delivered == 1)
    assert stats.retries == 2 and receiver.taken == [msgspec.json.decode(body)]
    # Every attempt was signed afresh and verified.
    assert len(receiver.requests) == 3 and receiver.rejected == 0
    await d.close(0.0)
    assert dead_letters(tmp_path) == []


@pytest.mark.asyncio
async def test_a_persistent_failure_ends_in_the_dead_letter_file(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    receiver.statuses = [500]
    d, body = await deliver(tmp_path, receiver.url)
    stats = d.stats.targets["webhook"]
    await until(lambda: stats.dead_letters["expired"] == 1)
    await d.close(0.0)
    assert len(receiver.requests) == RETRY.max_attempts and stats.retries == 2
    [line] = dead_letters(tmp_path)
    assert line["detail"] == "out of attempts after 3 attempts; last error: HTTP 500"
    assert line["record"] == msgspec.json.decode(body)


@pytest.mark.asyncio
async def test_a_hanging_receiver_times_out_and_the_retry_goes_through(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    receiver.hang = asyncio.Event()  # the first request never gets an answer
    d, _ = await deliver(tmp_path, receiver.url, timeout_s=0.2)
    stats = d.stats.targets["webhook"]
    await until(lambda: stats.delivered == 1)
    assert stats.retries == 1 and len(receiver.taken) == 1
    await d.close(0.0)


@pytest.mark.asyncio
async def test_connection_failures_are_retried_and_keep_the_url_out_of_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = WebhookReceiver(SECRET.encode())
    url = await closed.start()
    await closed.stop()  # nothing listens there any more
    d, _ = await deliver(tmp_path, url + "?token=query-secret")
    stats = d.stats.targets["webhook"]
    await until(lambda: stats.dead_letters["expired"] == 1)
    await d.close(0.0)
    [line] = dead_letters(tmp_path)
    assert line["detail"].endswith("last error: ClientConnectorError")
    assert "query-secret" not in capsys.readouterr().out + line["detail"]


FAILING = "356307042449999"
OTHERS = [f"3563070424{i:05d}" for i in range(20)]


async def fan_out(tmp_path: Path, url: str) -> tuple[Dispatcher, list[str]]:
    """A dispatcher that retries for ever (fast); FAILING's open and a second notification of
    it go first, then one of each of OTHERS. Returns FAILING's two notification ids."""
    target = WebhookTarget(WebhookTargetSettings(url=url, secret=SecretStr(SECRET)))
    await target.open()
    retry = RetrySettings(first_s=0.02, max_s=0.05, max_attempts=100_000)
    d = Dispatcher([target], retry, LocalSinkSettings(data_dir=tmp_path))
    d.start()
    failing = [notification(FAILING), notification(FAILING, code="EVB1-0x0102")]
    others = [notification(device, raw_id=f"raw-{device}") for device in OTHERS]
    for note in [*failing, *others]:
        d.submit([note], [msgspec.json.encode(note)], time.monotonic(), None)
    return d, [n.id for n in failing]


def ids_sent(receiver: WebhookReceiver) -> list[str]:
    return [headers["X-Notification-Id"] for headers in receiver.requests]


@pytest.mark.asyncio
async def test_a_device_the_receiver_keeps_refusing_holds_back_no_other_device(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """Issue 13, item 10: with one global line, a receiver answering 500 for one device kept
    every other device's alarms unsent. Here they all arrive while that device still fails (it
    cannot settle: it is retried for ever), and its second notification waits for its first."""
    receiver.device_statuses[FAILING] = 500
    d, (first, second) = await fan_out(tmp_path, receiver.url)
    stats = d.stats.targets["webhook"]
    await until(lambda: len(receiver.taken) == len(OTHERS), timeout=30)
    assert sorted(n["device_id"] for n in receiver.taken) == OTHERS
    assert stats.retries >= 1 and first in ids_sent(receiver)
    assert second not in ids_sent(receiver)  # never sent while its device's first fails
    del receiver.device_statuses[FAILING]  # the receiver recovers
    await until(lambda: len(receiver.taken) == len(OTHERS) + 2)
    assert [n["id"] for n in receiver.taken if n["device_id"] == FAILING] == [first, second]
    await d.close(0.0)
    assert dead_letters(tmp_path) == []


@pytest.mark.asyncio
async def test_a_device_the_receiver_is_slow_for_holds_back_no_other_device(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """With one POST in flight, a receiver slow to answer for one device delivered nothing
    else meanwhile; here its POST is held unanswered while every other device's arrives."""
    receiver.device_holds[FAILING] = asyncio.Event()
    d, (first, second) = await fan_out(tmp_path, receiver.url)
    await until(lambda: len(receiver.taken) == len(OTHERS), timeout=30)
    assert ids_sent(receiver).count(first) == 1 and second not in ids_sent(receiver)
    receiver.device_holds.pop(FAILING).set()
    await until(lambda: len(receiver.taken) == len(OTHERS) + 2)
    assert [n["id"] for n in receiver.taken if n["device_id"] == FAILING] == [first, second]
    assert d.stats.targets["webhook"].retries == 0
    await d.close(0.0)
