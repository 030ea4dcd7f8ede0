"""NLB health checks on a dedicated port: ``/healthz`` (alive) and ``/readyz`` (taking traffic).

Served by the gateway's own event loop, so a stuck loop fails the live check too. Ready means:
listeners bound, sinks open, not draining, and no sink stuck for longer than
``health.sink_down_after_s``: a sink with records to write that has written none for that long,
whether its calls fail, every entry comes back throttled or it waits on its rate limiter (an NLB
then sends new devices to a healthy instance while this one keeps its connections and retries).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

MAX_REQUEST_BYTES = 8192
REQUEST_TIMEOUT_S = 5.0


class HealthServer:
    def __init__(self, ready: Callable[[], tuple[bool, str]]) -> None:
        self._ready = ready
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> tuple[str, int]:
        self._server = await asyncio.start_server(
            self._handle, host, port, limit=MAX_REQUEST_BYTES, reuse_port=reuse_port or None
        )
        bound_host, bound_port = self._server.sockets[0].getsockname()[:2]
        return str(bound_host), int(bound_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            method, _, rest = head.partition(b" ")
            path = rest.partition(b" ")[0].split(b"?")[0]
            if method not in (b"GET", b"HEAD"):
                status, body = "405 Method Not Allowed", "GET only\n"
            elif path == b"/healthz":
                status, body = "200 OK", "ok\n"
            elif path == b"/readyz":
                ready, why = self._ready()
                status = "200 OK" if ready else "503 Service Unavailable"
                body = f"{why}\n"
            else:
                status, body = "404 Not Found", "try /healthz or /readyz\n"
            data = body.encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(data)}\r\n"
                f"Connection: close\r\n\r\n".encode()
                + (data if method == b"GET" else b"")
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
