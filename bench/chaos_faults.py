"""The faults of the chaos run: what each does to the running system when it starts and when it
ends. A fault is ``start`` then, ``duration`` seconds later, ``end``; the schedule (bench/chaos.py)
decides when. Kill faults end by starting the gateway again: their duration is its downtime.

The hostile clients (garbage, slowloris and oversize connections; idle connections) run on an
event loop in a background thread of their own, so the schedule's clock never waits on them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import os
import random
import signal
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from chaos_system import TCP_CODECS, System

from tests.gateway.disks import fill
from tests.mqtt_broker import MosquittoBroker

# fiu's name for the journal's writes (gateway/journal/segments.py writes with pwrite).
PWRITE = "posix/io/rw/pwrite"
# Whether the fault stops ACKs by design (the fleet's rate then drops until it ends).
STOPS_ACKS = frozenset(
    {"disk-full", "write-eio", "write-enospc", "gateway-sigkill", "gateway-sigterm"}
)


@dataclass(frozen=True, slots=True)
class FaultKind:
    name: str
    about: str
    start: Callable[[System, Hostiles], None]
    end: Callable[[System, Hostiles], None]


def _proxy(system: System, **policy: Any) -> None:
    assert system.proxy is not None
    system.proxy.update(**policy)


def _kinesalite_signal(system: System, sig: signal.Signals) -> None:
    assert system.kinesalite is not None
    os.kill(system.kinesalite.proc.pid, sig)


def _disk_full(system: System, _: Hostiles) -> None:
    fill(system.disk)


def _disk_freed(system: System, _: Hostiles) -> None:
    (system.disk / "ballast").unlink(missing_ok=True)


def _kill(sig: signal.Signals) -> Callable[[System, Hostiles], None]:
    def start(system: System, _: Hostiles) -> None:
        status = system.kill_gateway(system.clock(), sig)
        system.log(f"gateway {sig.name}: exit status {status}")

    return start


def _restart(system: System, _: Hostiles) -> None:
    system.restart_gateway()


def _broker(system: System, name: str) -> MosquittoBroker:
    broker = system.broker_a if name == "a" else system.broker_b
    assert broker is not None
    return broker


def _nothing(system: System, hostiles: Hostiles) -> None:
    pass


KINDS = {
    k.name: k
    for k in (
        FaultKind(
            "kinesis-outage",
            "Kinesis unreachable: the proxy resets every connection",
            lambda s, h: _proxy(s, refuse_connections=True),
            lambda s, h: _proxy(s, refuse_connections=False),
        ),
        FaultKind(
            "kinesis-throttle",
            "every PutRecords entry throttled (ProvisionedThroughputExceeded)",
            lambda s, h: _proxy(s, fail_entries_ratio=1.0),
            lambda s, h: _proxy(s, fail_entries_ratio=0.0),
        ),
        FaultKind(
            "kinesis-5xx",
            "every PutRecords answered 503 ServiceUnavailable",
            lambda s, h: _proxy(s, unavailable_requests=True),
            lambda s, h: _proxy(s, unavailable_requests=False),
        ),
        FaultKind(
            "kinesis-latency",
            "2 s before every Kinesis answer",
            lambda s, h: _proxy(s, delay_s=2.0),
            lambda s, h: _proxy(s, delay_s=0.0),
        ),
        FaultKind(
            "kinesalite-hung",
            "kinesalite SIGSTOPped (connections accepted, never answered), then SIGCONT",
            lambda s, h: _kinesalite_signal(s, signal.SIGSTOP),
            lambda s, h: _kinesalite_signal(s, signal.SIGCONT),
        ),
        FaultKind(
            "disk-full",
            "the journal's tmpfs filled by a ballast file, then freed",
            _disk_full,
            _disk_freed,
        ),
        FaultKind(
            "write-eio",
            "the gateway's pwrite fails with EIO (fiu-ctrl)",
            lambda s, h: s.fiu(f"enable name={PWRITE},failinfo={errno.EIO}"),
            lambda s, h: s.fiu(f"disable name={PWRITE}"),
        ),
        FaultKind(
            "write-enospc",
            "the gateway's pwrite fails with ENOSPC (fiu-ctrl)",
            lambda s, h: s.fiu(f"enable name={PWRITE},failinfo={errno.ENOSPC}"),
            lambda s, h: s.fiu(f"disable name={PWRITE}"),
        ),
        FaultKind(
            "gateway-sigkill",
            "SIGKILL, down for the duration, started again",
            _kill(signal.SIGKILL),
            _restart,
        ),
        FaultKind(
            "gateway-sigterm",
            "SIGTERM (graceful stop), down for the duration, started again",
            _kill(signal.SIGTERM),
            _restart,
        ),
        FaultKind(
            "broker-a-restart",
            "bridge source broker A stopped (SIGTERM: it saves its queues), then started",
            lambda s, h: _broker(s, "a").stop(),
            lambda s, h: _broker(s, "a").start(),
        ),
        FaultKind(
            "broker-b-restart",
            "bridge destination broker B stopped (SIGTERM), then started",
            lambda s, h: _broker(s, "b").stop(),
            lambda s, h: _broker(s, "b").start(),
        ),
        FaultKind(
            "webhook-500",
            "the webhook answers 500 to everything",
            lambda s, h: s.webhook.failing.set() if s.webhook else None,
            lambda s, h: s.webhook.failing.clear() if s.webhook else None,
        ),
        FaultKind(
            "hostile-storm",
            "garbage, slowloris and oversize connections beside the fleet",
            lambda s, h: h.begin("storm", h.storm),
            lambda s, h: h.finish("storm"),
        ),
        FaultKind(
            "idle-connections",
            "connections that never send a byte, reopened when the gateway closes them",
            lambda s, h: h.begin("idle", h.idle),
            lambda s, h: h.finish("idle"),
        ),
    )
}


class Hostiles:
    """Hostile clients on a loop in a background thread; each kind runs until finished."""

    def __init__(self, system: System, seed: int) -> None:
        self._system = system
        self._rng = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._tasks: dict[str, concurrent.futures.Future[None]] = {}
        self._thread = threading.Thread(target=self._loop.run_forever, name="hostiles", daemon=True)
        self._thread.start()
        self.opened = 0  # connections made, for the report

    def begin(self, name: str, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._tasks[name] = asyncio.run_coroutine_threadsafe(job(), self._loop)

    def finish(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                task.result(10)

    def close(self) -> None:
        for name in list(self._tasks):
            self.finish(name)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _port(self) -> int:
        return self._system.ports[self._rng.choice(TCP_CODECS)]

    async def storm(self) -> None:
        jobs = [self._garbage() for _ in range(4)]
        jobs += [self._slowloris() for _ in range(20)]
        jobs += [self._oversize() for _ in range(2)]
        await asyncio.gather(*jobs)

    async def _connect(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            streams = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.5)  # the gateway is down (a kill fault): try again later
            return None
        self.opened += 1
        return streams

    async def _garbage(self) -> None:
        """Random bytes, read what comes back until the gateway hangs up, again."""
        while True:
            streams = await self._connect(self._port())
            if streams is None:
                continue
            reader, writer = streams
            with contextlib.suppress(OSError, TimeoutError):
                writer.write(self._rng.randbytes(self._rng.randrange(1, 8192)))
                await writer.drain()
                await asyncio.wait_for(reader.read(), 2.0)
            writer.close()

    async def _slowloris(self) -> None:
        """A plausible frame start, a byte a second, for as long as the gateway lets it."""
        while True:
            streams = await self._connect(self._port())
            if streams is None:
                continue
            _, writer = streams
            with contextlib.suppress(OSError):
                for byte in b"\x00\x0f356307049999999" * 100:
                    writer.write(bytes((byte,)))
                    await writer.drain()
                    await asyncio.sleep(1.0)
            writer.close()

    async def _oversize(self) -> None:
        """A Teltonika login, then an AVL packet announcing 10 MB and 2 MB of it sent."""
        port = self._system.ports["teltonika"]
        while True:
            streams = await self._connect(port)
            if streams is None:
                continue
            reader, writer = streams
            with contextlib.suppress(OSError, TimeoutError):
                writer.write(b"\x00\x0f356307049999998")
                await asyncio.wait_for(reader.readexactly(1), 5.0)
                writer.write(b"\x00\x00\x00\x00" + (10 << 20).to_bytes(4, "big"))
                for _ in range(32):
                    writer.write(b"\x08" * 65536)
                    await writer.drain()
            writer.close()
            await asyncio.sleep(0.5)

    async def idle(self) -> None:
        """``idle_connections`` sockets that say nothing; the gateway's login timeout closes
        them, and each is opened again."""
        count = self._system.load.idle_connections
        await asyncio.gather(*(self._idle_one(i) for i in range(count)))

    async def _idle_one(self, index: int) -> None:
        await asyncio.sleep(index * 0.002)  # a ramp, not a SYN flood
        while True:
            streams = await self._connect(self._port())
            if streams is None:
                continue
            reader, writer = streams
            with contextlib.suppress(OSError):
                await reader.read()  # until the gateway closes it
            writer.close()
