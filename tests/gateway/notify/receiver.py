"""A webhook receiver like the customer's notification service: a small aiohttp server on
127.0.0.1 (free port) that verifies each request's signature before taking it.

The check is written from the contract, not from the gateway's code: ``X-Signature`` is
``sha256=`` + hex HMAC-SHA256 of ``<X-Signature-Timestamp>.<body>``, the timestamp is at most
five minutes old, and ``X-Notification-Id`` is the body's ``id``. A request failing any of it
gets 401 and is not taken.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

TOLERANCE_S = 300


class WebhookReceiver:
    def __init__(self, secret: bytes, statuses: tuple[int, ...] = (200,)) -> None:
        self.secret = secret
        self.statuses = list(statuses)  # answers in order; the last one repeats
        self.taken: list[dict[str, Any]] = []  # bodies of verified requests
        self.requests: list[dict[str, str]] = []  # headers of every request
        self.rejected = 0
        # While set to an unset Event, requests wait on it (a receiver that hangs).
        self.hang: asyncio.Event | None = None
        # Per device: the answer to its notifications (instead of ``statuses``), and an Event
        # its notifications wait on while unset (a receiver slow for that device only).
        self.device_statuses: dict[str, int] = {}
        self.device_holds: dict[str, asyncio.Event] = {}
        self._held: list[asyncio.Event] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, path: str = "/notify") -> str:
        app = web.Application()
        app.router.add_post(path, self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}{path}"
        return self.url

    async def stop(self) -> None:
        for held in [*self._held, *self.device_holds.values()]:
            held.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def verified(self, headers: dict[str, str], body: bytes) -> bool:
        timestamp = headers.get("X-Signature-Timestamp", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > TOLERANCE_S:
            return False
        mac = hmac.new(self.secret, timestamp.encode() + b"." + body, hashlib.sha256)
        expected = "sha256=" + mac.hexdigest()
        if not hmac.compare_digest(headers.get("X-Signature", ""), expected):
            return False
        notification: dict[str, Any] = json.loads(body)
        return headers.get("X-Notification-Id") == notification.get("id")

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        self.requests.append(headers)
        if self.hang is not None:
            hang, self.hang = self.hang, None  # only this request hangs
            self._held.append(hang)
            await hang.wait()
        if request.content_type != "application/json" or not self.verified(headers, body):
            self.rejected += 1
            return web.Response(status=401)
        device = json.loads(body).get("device_id")
        if device in self.device_holds:
            await self.device_holds[device].wait()
        if device in self.device_statuses:
            status = self.device_statuses[device]
        else:
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if 200 <= status < 300:
            self.taken.append(json.loads(body))
        return web.Response(status=status)


@contextmanager
def threaded_receiver(secret: bytes) -> Iterator[WebhookReceiver]:
    """A receiver on its own event loop in a thread, for tests that drive a real gateway
    process synchronously."""
    loop = asyncio.new_event_loop()
    receiver = WebhookReceiver(secret)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(receiver.start(), loop).result(10)
        yield receiver
    finally:
        asyncio.run_coroutine_threadsafe(receiver.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
