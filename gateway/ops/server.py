"""``gateway run``: the server's lifecycle (uvicorn's shape: startup → main loop → shutdown).

Startup opens the journal and the shippers' cursors before the listeners; shutdown goes in
reverse: stop accepting, stop reading, journal everything accepted and send the ACKs owed, close
connections, stop the shippers (what they did not ship waits in the journal for the next start),
close the journal — within ``shutdown_timeout_s``. Signal handlers only set flags; a second
signal forces the exit.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import time
from collections.abc import Callable

import structlog
import uvloop
from prometheus_client import CollectorRegistry

from gateway.bridge.metrics import BridgeCollector
from gateway.bridge.service import Bridge
from gateway.common.sink import Sink, SinkError
from gateway.common.stats import SinkStats
from gateway.journal.store import STREAMS, Journal
from gateway.notify.service import Notifications
from gateway.ops.codecs import listener_codec, route_codecs
from gateway.ops.health import HealthServer
from gateway.ops.metrics import GatewayCollector, serve_metrics
from gateway.ops.reload import prepare_reload
from gateway.ops.systemd_notify import Notifier
from gateway.ops.workers import WorkerCollector, follow_supervisor, worker_index
from gateway.pipeline.accept import Pipeline
from gateway.pipeline.flow_control import FlowControl
from gateway.pipeline.registry import CodecRegistry, default_layout_dirs
from gateway.pipeline.settings import json_codec_factories
from gateway.settings import ConfigError, Settings
from gateway.sinks.kinesis import KinesisSetupError, KinesisSink
from gateway.sinks.kinesis.metrics import KinesisCollector
from gateway.sinks.shipper import Shipper
from gateway.sinks.shipping import Shipping
from gateway.sinks.shipping_metrics import ShippingCollector
from gateway.transport.mqtt.listener import MqttListener
from gateway.transport.mqtt.metrics import MqttCollector
from gateway.transport.port import DevicePort
from gateway.transport.tcp import Listener

log = structlog.get_logger("gateway")

SWEEP_INTERVAL_S = 1.0
EXIT_FORCED = 130


class Gateway:
    def __init__(
        self,
        settings: Settings,
        reload: Callable[[], Settings] | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self._notifier = notifier or Notifier(None)
        self._status = "starting"
        self._load_again = reload
        self.registry = CodecRegistry({})
        self._stop = asyncio.Event()
        self._signals = 0
        self.listeners: list[Listener] = []
        self.mqtt_listeners: list[MqttListener] = []
        self.bridge: Bridge | None = None
        self.notifications: Notifications | None = None
        # A worker of `run --workers N` (or of ev-gateway@.service): its index.
        self.worker = worker_index()
        # Set by startup():
        self.flow: FlowControl
        self.sink: Journal
        self.sink_stats: dict[str, SinkStats]
        self.kinesis: KinesisSink | None = None
        self.shipping: Shipping
        self.pipeline: Pipeline
        self._sweeper: asyncio.Task[None]
        self._watchdog: asyncio.Task[None] | None = None
        self._health: HealthServer | None = None
        self._stop_metrics: Callable[[], None] = lambda: None
        # Set by drain():
        self._stopping_since = 0.0
        self._deadline = 0.0

    async def serve(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit status (uvicorn's ``serve`` shape)."""
        await self.startup()
        await self.main_loop()
        flushed = await self.drain()
        return await self.shutdown(flushed)

    async def startup(self) -> None:
        """Sinks first, then the pipeline, listeners, bridge, metrics, signals and health;
        READY once every port is bound."""
        settings = self.settings
        self.registry = CodecRegistry.load(
            [*default_layout_dirs(), *settings.layout_dirs],
            configured=json_codec_factories(settings.json_codecs),
        )
        loop = asyncio.get_running_loop()
        self.flow = FlowControl(
            settings.pipeline.high_water_bytes, settings.pipeline.low_water_bytes, loop.time
        )
        sinks = await self._open_sinks()
        if settings.notifications.enabled:
            self.notifications = Notifications(
                settings.notifications, self.sink, self.kinesis, worker=self.worker
            )
            await self.notifications.open()
        self.pipeline = Pipeline(
            settings.pipeline,
            sinks,
            self.flow,
            self.sink_stats,
            self.notifications,
            shipped_streams=frozenset(s.stream for s in self.shipping.shippers),
            journal_end=self.sink.end,
        )
        self.pipeline.start()
        self.shipping.start()
        for ls in settings.listeners:
            self.listeners.append(
                Listener(ls, listener_codec(self.registry, ls), self.pipeline, self.flow)
            )
        for ms in settings.mqtt_listeners:
            self.mqtt_listeners.append(
                MqttListener(ms, route_codecs(self.registry, ms), self.pipeline, self.flow)
            )
        if settings.bridge is not None:
            self.bridge = Bridge(
                settings.bridge,
                self.registry,
                self.pipeline,
                self.flow,
                self._show_status,
                self.sink,
            )
            self.shipping.count_also(self.bridge.unshipped_bytes)
        bound = await self._bind_ports()
        if self.bridge is not None:
            self.bridge.start()
        metrics_address = self._start_metrics() if settings.metrics.enabled else None
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        if self.worker is not None:
            follow_supervisor()  # once SIGTERM drains: its death now stops us cleanly
        health_address = await self._start_health() if settings.health.enabled else None
        self._sweeper = asyncio.create_task(self._sweep(), name="connection-sweeper")
        # The start-up heap (imports, settings, codecs, sinks) lives as long as the process:
        # frozen, the collector's full passes stop walking it under load (~5 % of ingest CPU).
        gc.freeze()
        log.info(
            "ready",
            worker=self.worker,
            listeners=bound,
            metrics=metrics_address,
            health=health_address,
            data_dir=str(self.sink.data_dir),
        )
        # systemd (Type=notify): started once every port is bound; then the watchdog, fed from
        # this loop so that a stuck loop stops the pings.
        ports = " ".join(f"{b['codec']}:{b['port']}" for b in bound) or "no device ports"
        self._status = f"serving {ports}; sink {'kinesis' if self.kinesis else 'local'}"
        self._notifier.ready(self._status_text())
        watchdog_s = self._notifier.watchdog_interval_s()
        if watchdog_s is not None:
            self._watchdog = asyncio.create_task(self._feed_watchdog(watchdog_s), name="watchdog")

    async def main_loop(self) -> None:
        """Serve until a signal: connections are driven by their protocols, the sweeper and the
        watchdog by their tasks; this only waits for the stop flag."""
        await self._stop.wait()

    async def drain(self) -> bool:
        """Stop accepting and reading, flush what was accepted and send the ACKs owed, close
        the connections — within the deadline; False if records stayed unwritten."""
        settings = self.settings
        self._stopping_since = time.monotonic()
        self._deadline = self._stopping_since + settings.shutdown_timeout_s
        log.info("stopping", deadline_s=settings.shutdown_timeout_s)
        self._notifier.stopping(f"draining, deadline {settings.shutdown_timeout_s:g} s")
        self._sweeper.cancel()
        for listener in self.ports:
            listener.stop_accepting()
        for listener in self.ports:
            for conn in list(listener.connections):
                conn.stop_reading()
        if self.bridge is not None:
            self.bridge.stop_taking()
        flushed = True
        try:
            await asyncio.wait_for(
                self.pipeline.flush(), max(0.0, self._deadline - time.monotonic())
            )
        except TimeoutError:
            flushed = False
        # The ACKs owed were written as their batches completed; close() sends what is queued.
        for listener in self.ports:
            for conn in list(listener.connections):
                conn.close("shutdown")
        while any(x.connections for x in self.ports) and time.monotonic() < self._deadline:
            await asyncio.sleep(0.02)
        return flushed

    async def shutdown(self, flushed: bool) -> int:
        """Close everything started, in reverse; the exit status. Records left unwritten
        (``flushed`` False) end the process at once with 1: none of them was ACKed."""
        if self.bridge is not None:  # after the flush: pipeline routes' acknowledgements have left
            await self.bridge.close(max(0.0, self._deadline - time.monotonic()))
        await self.pipeline.close()
        await self.shipping.close()
        if self.notifications is not None:  # before Kinesis: it may be one of the targets
            await self.notifications.close(self._deadline - self._last_words_s())
        if self.kinesis is not None:
            await self.kinesis.close()
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._stop_metrics()
        if self._health is not None:  # answered "draining" until here
            self._health.close()
        if not flushed:
            log.error(
                "shutdown deadline passed with records unwritten",
                unwritten_bytes=self.pipeline.unwritten_bytes,
            )
            # A write stuck in the kernel cannot be cancelled and would block the interpreter's
            # exit (it joins executor threads): leave now. Nothing unwritten was ACKed.
            self.sink.close(wait=False)
            sys.stdout.flush()
            os._exit(1)
        try:
            self.sink.close()
        except OSError as exc:
            log.error("closing the sink failed", error=str(exc))
            return 1
        log.info("stopped", seconds=round(time.monotonic() - self._stopping_since, 2))
        return 0

    def _last_words_s(self) -> float:
        """How long before the deadline retries stop, so dead letters and ACKs still go out."""
        return min(2.0, self.settings.shutdown_timeout_s / 4)

    async def _open_sinks(self) -> dict[str, Sink]:
        """The journal, where every record class is written; Kinesis if configured, with a
        shipper per record class it takes (notifications go by the notification targets)."""
        settings = self.settings
        tag = None if self.worker is None else f"w{self.worker}"
        self.sink = Journal(settings.sink.local, tag)
        self.sink.open()
        self.sink_stats = {stream: SinkStats(stream) for stream in STREAMS}
        shippers: list[Shipper] = []
        if settings.sink.kinesis is not None:
            self.kinesis = KinesisSink(settings.sink.kinesis, settings.sink.local, expire=False)
            try:
                await self.kinesis.open()
            except KinesisSetupError as exc:
                raise ConfigError([f"sink.kinesis: {exc}"]) from None
            shippers = [
                Shipper(
                    "kinesis",
                    stream,
                    self.sink,
                    self.kinesis,
                    self._shipped,
                    linger_s=settings.sink.kinesis.linger_ms / 1000,
                )
                for stream in self.kinesis.streams
                if stream != "notifications"
            ]
        self.shipping = Shipping(
            settings.journal,
            self.sink,
            shippers,
            lambda full: self.flow.hold("journal", full),
        )
        try:
            self.shipping.open()
        except OSError as exc:
            raise SinkError(f"cannot open the shipping cursors: {exc.strerror or exc}") from None
        return dict.fromkeys(STREAMS, self.sink)

    def _shipped(self, stream: str, offset: int, lost: list[int]) -> None:
        """A shipper moved: release the ACKs of ``delivered`` frames every target passed."""
        self.pipeline.shipped(stream, self.shipping.passed(stream), lost)

    async def _bind_ports(self) -> list[dict[str, object]]:
        """Bind every device port; a worker of ``run --workers N`` (or of
        ev-gateway@.service) shares its ports."""
        bound: list[dict[str, object]] = []
        for device_port in self.ports:
            try:
                host, port = await device_port.start(reuse_port=self.worker is not None)
            except OSError as exc:
                ps = device_port.settings
                raise _bind_error(f"listener {device_port.name}", ps.host, ps.port, exc) from None
            bound.append({"codec": device_port.name, "host": host, "port": port})
        return bound

    def _start_metrics(self) -> str:
        """The Prometheus endpoint with every part's collector; its URL."""
        settings, worker = self.settings, self.worker
        registry = CollectorRegistry()
        registry.register(
            GatewayCollector(
                lambda: [s for x in self.ports for s in x.all_stats()],
                self.sink_stats.values(),
                self.flow,
            )
        )
        if self.mqtt_listeners:
            registry.register(
                MqttCollector(
                    lambda: [(str(x.bound_port), x.mqtt_stats) for x in self.mqtt_listeners]
                )
            )
        registry.register(ShippingCollector(self.shipping))
        if self.kinesis is not None:
            registry.register(KinesisCollector(self.kinesis))
        if self.notifications is not None:
            registry.register(self.notifications.collector())
        if self.bridge is not None:
            registry.register(BridgeCollector(self.bridge))
        if worker is not None:
            registry.register(WorkerCollector(worker))
        metrics_port = settings.metrics.port
        if worker is not None and metrics_port:
            metrics_port += worker  # each worker is scraped on its own port
        try:
            host, port, self._stop_metrics = serve_metrics(
                registry, settings.metrics.host, metrics_port
            )
        except OSError as exc:  # another gateway on this host took the port, say
            raise _bind_error("metrics", settings.metrics.host, metrics_port, exc) from None
        return f"http://{host}:{port}/metrics"

    async def _start_health(self) -> str:
        """``/healthz`` and ``/readyz``; the server's URL."""
        health = self.settings.health
        self._health = HealthServer(self._readiness)
        try:
            host, port = await self._health.start(
                health.host, health.port, reuse_port=self.worker is not None
            )
        except OSError as exc:
            raise _bind_error("health", health.host, health.port, exc) from None
        return f"http://{host}:{port}"

    def _readiness(self) -> tuple[bool, str]:
        if self._stop.is_set():
            return False, "draining"
        bridge = self.bridge
        if self.shipping.full:
            return False, f"journal full: {self.shipping.full_reason}"
        down = self.pipeline.failing_for_s()
        if down > self.settings.health.sink_down_after_s:
            return False, f"journal writes failing for {down:.0f} s"
        if bridge is not None:
            gone = bridge.down_for_s()
            if gone > bridge.settings.source_down_after_s:
                return False, f"no bridge source connected for {gone:.0f} s"
        return True, "ready"

    @property
    def ports(self) -> list[DevicePort]:
        """Every device listener: TCP and MQTT."""
        return [*self.listeners, *self.mqtt_listeners]

    def _reload(self) -> None:
        """SIGHUP: read the settings again; apply TLS certificates, source and device
        allow-lists to new connections of the same listeners (ports cannot change live)."""
        try:
            fresh = self._load_again() if self._load_again else self.settings
            apply = prepare_reload(
                self.registry,
                self.listeners,
                self.mqtt_listeners,
                fresh.listeners,
                fresh.mqtt_listeners,
            )
            apply()  # all loaded: applied together
            if self.notifications is not None:
                self.notifications.reload(fresh.notifications)
        except ConfigError as exc:
            log.error("reload failed; keeping the previous settings", error=str(exc))
            return
        log.info("reloaded", listeners=len(self.listeners))

    def _on_sighup(self) -> None:
        self._notifier.reloading()
        try:
            self._reload()
        finally:
            self._notifier.ready(self._status_text())

    def _status_text(self) -> str:
        """The STATUS line: ports and sink, and each bridge source's connection state."""
        if self.bridge is None:
            return self._status
        return f"{self._status}; {self.bridge.status()}"

    def _show_status(self) -> None:
        self._notifier.status(self._status_text())

    async def _feed_watchdog(self, interval_s: float) -> None:
        while True:
            self._notifier.watchdog()
            await asyncio.sleep(interval_s)

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: exiting now", signal=sig.name)
            sys.stdout.flush()
            os._exit(EXIT_FORCED)
        self._stop.set()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            now = time.monotonic()
            for listener in self.ports:
                listener.sweep(now)


def _bind_error(what: str, host: str, port: int, exc: OSError) -> ConfigError:
    """A port that cannot be bound, in one line: ``metrics on 127.0.0.1:9108: Address already
    in use`` (asyncio's own message repeats the address around a lower-cased reason)."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return ConfigError([f"{what} on {host}:{port}: {reason}"])


def run(settings: Settings, reload: Callable[[], Settings] | None = None) -> int:
    """Run the gateway until SIGTERM/SIGINT (SIGHUP reloads); returns the exit status."""
    notifier = Notifier.from_environment()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(Gateway(settings, reload, notifier).serve())
    finally:
        notifier.close()
