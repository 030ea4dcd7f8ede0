"""The bridge inside the gateway process: sources, routes and destination pools, put together.

``Gateway.serve`` owns the lifecycle: the bridge starts once the pipeline runs; at shutdown it
first stops taking messages, then the pipeline flushes (pipeline routes' acknowledgements leave as
their records are written), then ``close`` waits — within the deadline — for the destinations to
confirm what is in flight, and disconnects keeping the sessions, so whatever was not acknowledged
is redelivered to the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable

import structlog

from gateway.bridge.client import tls_context
from gateway.bridge.publisher import DestinationPool
from gateway.bridge.routes import MqttRoute, PipelineRoute, Route
from gateway.bridge.settings import PIPELINE, BridgeSettings, ClientTlsSettings
from gateway.bridge.source import SourceSession
from gateway.bridge.stats import RouteStats
from gateway.common.settings_base import ConfigError
from gateway.common.tasks import exit_if_died
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
    ) -> None:
        """Everything is built (TLS files read, codecs found) before anything connects;
        ``ConfigError`` lists what is unusable."""
        self.settings = settings
        self._flow = flow
        self._loop = asyncio.get_running_loop()
        problems: list[str] = []
        backoff = (settings.backoff_base_s, settings.backoff_cap_s)
        self.pools = {
            d.name: DestinationPool(d, _tls(d.tls, f"bridge.destinations.{i}", problems), backoff)
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
                route = MqttRoute(r, stats, self.pools[r.destination], settings.name)
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
        tasks = []
        for pool in self.pools.values():
            tasks += pool.start()
        for source in self.sources:
            tasks.append(source.start())
            self._flow.register(source)
        for task in tasks:
            task.add_done_callback(exit_if_died("bridge task"))

    def status(self) -> str:
        """One line for ``systemctl status``: each source's connection state."""
        return "bridge " + ", ".join(f"{s.name} {s.state}" for s in self.sources)

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
        disconnect; the sessions keep whatever is left for the next run."""
        # A window empties as its messages are acknowledged, or all at once if its connection
        # drops (then the broker keeps them): either way nothing is left to wait for.
        windows = [s.window.wait_empty() for s in self.sources if s.window is not None]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*windows), timeout_s)
        await asyncio.gather(*(s.close() for s in self.sources))
        await asyncio.gather(*(p.close() for p in self.pools.values()))


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
