"""Runs a simulated fleet: builds the devices, drives their clocks, drains and sums up.

One ticker task serves every device: the rate's period is cut into slots of about 10 ms and
each device belongs to one slot, so the fleet's writes are spread evenly over the period and
the event loop carries one timer instead of one per device. A slower housekeeping pass runs the
units' own timers (resends, heartbeats, login timeouts). Lifecycle (uvicorn's shape): start ->
run for the duration or until a signal -> stop recording and drain the outstanding ACKs for at
most ``drain_s`` (a second signal ends that at once) -> hang up -> summary.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from gateway.fleet.device import SimulatedDevice
from gateway.fleet.model import Vehicle
from gateway.fleet.mqtt_unit import Evb1MqttUnit
from gateway.fleet.protocol_units import UNITS
from gateway.fleet.stats import CodecStats, LatencyHistogram, summary
from gateway.fleet.unit import DeviceUnit, UnitSettings

CODECS = tuple(sorted(UNITS))
TRANSPORTS = ("tcp", "mqtt")
# Units that publish over MQTT instead of a raw TCP stream, by codec.
MQTT_UNITS: dict[str, type[DeviceUnit]] = {"evb1": Evb1MqttUnit}
DEFAULT_IMEI_BASE = 350_000_000_000_000
IMEI_DIGITS = 15
DEFAULT_CONNECT_SPREAD_S = 1.0
SLOT_S = 0.01
MAX_SLOTS = 1_000
HOUSEKEEPING_S = 0.2  # resend and heartbeat timers are checked this often at the least
PROGRESS_S = 1.0
_DRAIN_POLL_S = 0.05
_HANGUP_S = 1.0


@dataclass(frozen=True, slots=True)
class FleetConfig:
    codecs: tuple[str, ...]
    targets: dict[str, tuple[str, int]]  # codec -> (host, port)
    devices: int
    rate_hz: float
    duration_s: float  # 0: until a signal
    faults_per_min: float = 0.0  # fault episodes per device per minute
    seed: int = 0
    imei_base: int = DEFAULT_IMEI_BASE
    connect_rate: float | None = None  # connects per second; None: spread over ~1 s
    drain_s: float = 10.0
    progress: bool = False
    transport: str = "tcp"  # or "mqtt": the codec's frames as QoS 1 PUBLISHes (MQTT_UNITS)
    unit: UnitSettings = field(default_factory=UnitSettings)


class FrameLog:
    """Appends one JSON line per frame: ``{"codec", "device_id", "payload": hex}``."""

    def __init__(self, path: Path) -> None:
        self._file: TextIO = path.open("a", encoding="ascii", buffering=1 << 16)

    def write(self, codec: str, device_id: str, payload: bytes) -> None:
        # Codec names and device ids are known-safe tokens (a codec name, digits): no escaping.
        self._file.write(
            f'{{"codec":"{codec}","device_id":"{device_id}","payload":"{payload.hex()}"}}\n'
        )

    def close(self) -> None:
        self._file.close()


class Fleet:
    """Simulated devices sharing one event loop; :meth:`run` runs them once, returns the summary."""

    def __init__(
        self,
        config: FleetConfig,
        *,
        sent_log: FrameLog | None = None,
        acked_log: FrameLog | None = None,
    ) -> None:
        self.config = config
        self.stats = {
            codec: CodecStats(
                codec,
                sent_log.write if sent_log else None,
                acked_log.write if acked_log else None,
            )
            for codec in config.codecs
        }
        self.devices: list[SimulatedDevice] = []
        # Codecs whose target accepted no connection at all (set when the run stops for it).
        self.unreachable: list[str] = []
        self._skipped_frames = 0
        self._stopping = asyncio.Event()
        self._forced = asyncio.Event()

    def stop(self) -> None:
        """Signal handler: the first call ends the run (then drain), the second the drain."""
        if self._stopping.is_set():
            self._forced.set()
        self._stopping.set()

    async def run(self) -> dict[str, object]:
        config = self.config
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._build(loop, time.monotonic())
        self._start_devices()
        tasks = [
            loop.create_task(self._ticker(), name="fleet-ticker"),
            loop.create_task(self._housekeeping(), name="fleet-housekeeping"),
        ]
        if config.progress:
            tasks.append(loop.create_task(self._progress(started), name="fleet-progress"))
        interrupted = False
        try:
            if config.duration_s > 0:
                interrupted = await _wait(self._stopping, config.duration_s)
            else:
                await self._stopping.wait()
                interrupted = True
            tasks[0].cancel()
            ran_s = loop.time() - started
            for device in self.devices:
                device.unit.producing = False
            drained = await self._drain(loop.time() + config.drain_s)
        finally:
            for task in tasks:
                task.cancel()
            await self._hang_up()
            if config.progress:
                sys.stderr.write("\n")
        for device in self.devices:
            device.unit.finish()
        sent = sum(s.sent for s in self.stats.values())
        return summary(
            len(self.devices),
            self.stats.values(),
            {
                "codecs": list(config.codecs),
                "seed": config.seed,
                "rate_hz": config.rate_hz,
                "run_s": round(ran_s, 3),
                "drain_s": round(drained, 3),
                "sent_per_s": round(sent / ran_s, 1) if ran_s > 0 else 0.0,
                "skipped_frames": self._skipped_frames,
                "interrupted": interrupted,
                "unreachable": self.unreachable,
            },
        )

    def _build(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        config = self.config
        epoch_offset_s = time.time() - now  # units run on time.monotonic()
        for index in range(config.devices):
            codec = config.codecs[index % len(config.codecs)]
            device_id = str(config.imei_base + index).zfill(IMEI_DIGITS)
            # Per-device generators seeded by (seed, index): the same device gets the same car
            # whatever the fleet's size or mix.
            vehicle = Vehicle(
                random.Random(f"{config.seed}:vehicle:{index}"),
                now + epoch_offset_s,
                faults_per_min=config.faults_per_min,
            )
            unit_rng = random.Random(f"{config.seed}:unit:{index}")
            units = MQTT_UNITS if config.transport == "mqtt" else UNITS
            unit = units[codec](
                device_id,
                vehicle,
                self.stats[codec],
                settings=config.unit,
                rng=unit_rng,
                epoch_offset_s=epoch_offset_s,
            )
            device = SimulatedDevice(
                unit,
                config.targets[codec],
                loop,
                unit_rng,
                connect_timeout_s=config.unit.ack_timeout_s,
            )
            self.devices.append(device)

    def _start_devices(self) -> None:
        config = self.config
        rng = random.Random(f"{config.seed}:connects")
        rate = config.connect_rate or len(self.devices) / DEFAULT_CONNECT_SPREAD_S
        for index, device in enumerate(self.devices):
            device.start((index + rng.random()) / rate)

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        period_s = 1.0 / self.config.rate_hz
        count = max(1, min(MAX_SLOTS, round(period_s / SLOT_S), len(self.devices)))
        slots: list[list[SimulatedDevice]] = [[] for _ in range(count)]
        for index, device in enumerate(self.devices):
            slots[index * count // len(self.devices)].append(device)
        step_s = period_s / count
        next_at = loop.time()
        slot = 0
        while True:
            delay = next_at - loop.time()
            await asyncio.sleep(delay if delay > 0 else 0)
            now = loop.time()
            for device in slots[slot]:
                device.tick()
            slot = slot + 1 if slot + 1 < count else 0
            next_at += step_s
            if now - next_at > period_s:
                # Over a period behind (the simulator is CPU-bound): skip rather than burst,
                # and report what the fleet did not record.
                self._skipped_frames += round((now - next_at) / period_s * len(self.devices))
                next_at = now

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            for device in self.devices:
                device.housekeep()
            if not self.unreachable:
                self._stop_if_unreachable()

    def _stop_if_unreachable(self) -> None:
        """End the run, without a drain, once a codec's every device has failed to connect and
        none ever did: nothing listens on its target (a wrong port, a gateway that is down),
        and waiting out the duration would only delay saying so."""
        by_codec: dict[str, list[SimulatedDevice]] = {}
        for device in self.devices:
            by_codec.setdefault(device.unit.stats.codec, []).append(device)
        for codec, devices in by_codec.items():
            stats = self.stats[codec]
            # A connection that ever opened is still open or ended in a counted disconnect.
            reached = stats.disconnects > 0 or any(d.connected for d in devices)
            if stats.connect_errors >= len(devices) and not reached:
                self.unreachable.append(codec)
        if self.unreachable:
            self._stopping.set()
            self._forced.set()

    async def _drain(self, deadline: float) -> float:
        """Wait until no frame is outstanding, the deadline passes or a second signal comes."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        while loop.time() < deadline and not self._forced.is_set():
            if all(device.unit.idle for device in self.devices):
                break
            await _wait(self._forced, min(_DRAIN_POLL_S, max(0.0, deadline - loop.time())))
        return loop.time() - began

    async def _hang_up(self) -> None:
        pending = [task for device in self.devices if (task := device.stop()) is not None]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _HANGUP_S
        while any(d.connected for d in self.devices) and loop.time() < deadline:
            await asyncio.sleep(0.01)

    async def _progress(self, started: float) -> None:
        loop = asyncio.get_running_loop()
        last_sent = 0
        while True:
            await asyncio.sleep(PROGRESS_S)
            stats = list(self.stats.values())
            sent = sum(s.sent for s in stats)
            latency = LatencyHistogram()
            for s in stats:
                latency.merge(s.latency)
            online = sum(1 for d in self.devices if d.unit.logged_in)
            p99 = latency.percentile_ms(0.99)
            sys.stderr.write(
                f"\r[{loop.time() - started:7.1f}s] online {online}/{len(self.devices)}"
                f"  sent {sent} ({(sent - last_sent) / PROGRESS_S:.0f}/s)"
                f"  acked {sum(s.acked for s in stats)}"
                f"  resent {sum(s.resent for s in stats)}"
                f"  connect errors {sum(s.connect_errors for s in stats)}"
                f"  ack p99 {'-' if p99 is None else f'{p99:.1f} ms'}   "
            )
            sys.stderr.flush()
            last_sent = sent


async def _wait(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait for ``event`` at most ``timeout_s``; whether it was set."""
    try:
        await asyncio.wait_for(event.wait(), timeout_s)
    except TimeoutError:
        return False
    return True


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop  # noqa: PLC0415 - optional: the default loop works, only slower
    except ImportError:
        return None
    return uvloop.new_event_loop


def simulate(
    config: FleetConfig, *, sent_log: FrameLog | None = None, acked_log: FrameLog | None = None
) -> dict[str, object]:
    """Run a fleet on a fresh (uv)loop with SIGINT/SIGTERM handlers; return its summary."""

    async def main() -> dict[str, object]:
        fleet = Fleet(config, sent_log=sent_log, acked_log=acked_log)
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, fleet.stop)
        try:
            return await fleet.run()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main())
