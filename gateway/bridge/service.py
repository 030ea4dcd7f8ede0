"""The bridge inside the gateway process: sources, routes, and per MQTT destination its journal
series (``outbox``) and shipper (with its connection pool), put together.

``Gateway.serve`` owns the lifecycle: the bridge starts once the pipeline runs (``start`` opens
each destination's series and cursor); at shutdown it first stops taking messages, then the
pipeline flushes (pipeline routes' acknowledgements leave as their records are written), then
``close`` waits — within the deadline — for what was taken to be acknowledged, disconnects keeping
the sessions (whatever was not acknowledged is redelivered to the next run), journals what is
pending and stops the shippers: what they did not ship waits in the journal for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable

import structlog

from gateway.bridge.client import tls_context
from gateway.bridge.outbox import Outbox, stranded_series
from gateway.bridge.routes import MqttRoute, PipelineRoute, Route
from gateway.bridge.settings import PIPELINE, BridgeSettings, ClientTlsSettings
from gateway.bridge.shipper import BridgeShipper
from gateway.bridge.source import SourceSession
from gateway.bridge.stats import RouteStats
from gateway.common.settings_base import ConfigError
from gateway.common.sink import SinkError
from gateway.common.tasks import exit_if_died
from gateway.journal.store import Journal, series_prefix
from gateway.pipeline.accept import Pipeline
from gateway.pipeline.flow_control import FlowControl
from gateway.pipeline.registry import CodecRegistry, UnknownCodecError

log = structlog.get_logger("gateway.bridge")


class Bridge:
    def __init__(
        self,
        settings: BridgeSettings,
        registry: CodecRegistry,
        pipeline: Pipeline,
        flow: FlowControl,
        on_change: Callable[[], None],
        journal: Journal,
    ) -> None:
        """Everything is built (TLS files read, codecs found) before anything connects;
        ``ConfigError`` lists what is unusable. Each destination's series lives beside
        ``journal``'s under ``<data_dir>/bridge/``, named for the destination and, as the
        journal's, for the worker: the journal's lock keeps other processes off it."""
        self.settings = settings
        self._flow = flow
        self._loop = asyncio.get_running_loop()
        self._directory = journal.data_dir / "bridge"
        problems: list[str] = []
        backoff = (settings.backoff_base_s, settings.backoff_cap_s)
        self.shippers = {
            d.name: BridgeShipper(
                d,
                _tls(d.tls, f"bridge.destinations.{i}", problems),
                backoff,
                Outbox(
                    self._directory,
                    series_prefix(d.name, journal.tag),
                    journal.settings,
                    flow,
                ),
                journal.data_dir,
                settings.name,
            )
            for i, d in enumerate(settings.destinations)
        }
        self.route_stats: list[RouteStats] = []
        routes: dict[str, list[Route]] = {s.name: [] for s in settings.sources}
        for i, r in enumerate(settings.routes):
            stats = RouteStats(r.name)
            self.route_stats.append(stats)
            route: Route
            if r.destination == PIPELINE:
                assert r.codec is not None  # checked by RouteSettings
                try:
                    codec = registry.create(r.codec)
                except UnknownCodecError as exc:
                    problems.append(f"bridge.routes.{i}.codec: {exc}")
                    continue
                route = PipelineRoute(r, stats, codec, pipeline)
            else:
                route = MqttRoute(r, stats, self.shippers[r.destination].outbox)
            routes[r.source].append(route)
        self.sources = [
            SourceSession(
                s,
                settings,
                _tls(s.tls, f"bridge.sources.{i}", problems),
                routes[s.name],
                on_change,
            )
            for i, s in enumerate(settings.sources)
        ]
        if problems:
            raise ConfigError(problems)

    def start(self) -> None:
        """Open each destination's series and cursor (raises ``SinkError``), then connect."""
        for shipper in self.shippers.values():
            try:
                shipper.open()
            except OSError as exc:
                raise SinkError(
                    f"cannot open the bridge journal of {shipper.name!r}: {exc.strerror or exc}"
                ) from None
        for series, size in stranded_series(self._directory, set(self.shippers)).items():
            log.warning(
                "bridge journal series of no configured destination: its messages are not "
                "shipped (a destination renamed or removed?)",
                series=series,
                directory=str(self._directory),
                bytes=size,
            )
        tasks = []
        for shipper in self.shippers.values():
            tasks += [shipper.outbox.start(), *shipper.start()]
        for source in self.sources:
            tasks.append(source.start())
            self._flow.register(source)
        for task in tasks:
            task.add_done_callback(exit_if_died("bridge task"))

    def status(self) -> str:
        """One line for ``systemctl status``: each source's connection state."""
        return "bridge " + ", ".join(f"{s.name} {s.state}" for s in self.sources)

    def unshipped_bytes(self) -> int:
        """Bytes of the bridge's journal series not yet confirmed by their destinations (for
        the journal's disk budget)."""
        return sum(s.unshipped_bytes() for s in self.shippers.values())

    def down_for_s(self) -> float:
        """How long no source has been connected (0.0 while one is)."""
        since = [s.down_since for s in self.sources]
        if any(t is None for t in since):
            return 0.0
        return self._loop.time() - max(t for t in since if t is not None)

    def stop_taking(self) -> None:
        for source in self.sources:
            self._flow.unregister(source)
            source.stop_taking()

    async def close(self, timeout_s: float) -> None:
        """Wait (up to ``timeout_s``) for what is in flight to be acknowledged, then
        disconnect; the sessions keep whatever is left for the next run. Then journal what
        is pending and stop shipping; the journal keeps what is unshipped."""
        deadline = time.monotonic() + timeout_s
        # A window empties as its messages are acknowledged, or all at once if its connection
        # drops (then the broker keeps them): either way nothing is left to wait for.
        windows = [s.window.wait_empty() for s in self.sources if s.window is not None]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*windows), timeout_s)
        await asyncio.gather(*(s.close() for s in self.sources))
        shippers = self.shippers.values()
        await asyncio.gather(*(s.outbox.close(deadline - time.monotonic()) for s in shippers))
        await asyncio.gather(*(s.close(deadline - time.monotonic()) for s in shippers))


def _tls(
    settings: ClientTlsSettings | None, where: str, problems: list[str]
) -> ssl.SSLContext | None:
    if settings is None:
        return None
    try:
        return tls_context(settings)
    except (OSError, ssl.SSLError) as exc:
        problems.append(f"{where}.tls: cannot load the certificates: {exc}")
        return None
