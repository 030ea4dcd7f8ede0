"""The notification path as the server sees it: the rule engine, the dispatcher and its targets,
built from ``[notifications]``; reloaded on SIGHUP; its metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from gateway.common.settings_base import ConfigError
from gateway.journal.store import Journal
from gateway.notify.dispatcher import Dispatcher
from gateway.notify.metrics import NotificationCollector
from gateway.notify.queue import Target
from gateway.notify.settings import NotificationSettings
from gateway.notify.targets import KinesisTarget, SnsTarget, TargetSetupError, WebhookTarget
from gateway.sinks.kinesis import KinesisSink
from parser.rules import NotificationEngine

log = structlog.get_logger("gateway.notify")


class Notifications:
    """``engine`` is read by the pipeline for every frame; :meth:`reload` replaces it."""

    def __init__(
        self,
        settings: NotificationSettings,
        sink: Journal,
        kinesis: KinesisSink | None,
        clock: Callable[[], float] = time.monotonic,
        worker: int | None = None,
    ) -> None:
        self.settings = settings
        self.engine: NotificationEngine = settings.engine()
        targets: list[Target] = []
        if settings.targets.sns is not None:
            targets.append(SnsTarget(settings.targets.sns))
        if settings.targets.webhook is not None:
            targets.append(WebhookTarget(settings.targets.webhook))
        if kinesis is not None and "notifications" in kinesis.streams:
            targets.append(KinesisTarget(kinesis))
        self.dispatcher = Dispatcher(
            targets,
            settings.retry,
            sink.settings,
            clock,
            current_file=lambda: sink.current_file("notifications"),
            worker=worker,
            series=sink.prefix("notifications"),
        )

    async def open(self) -> None:
        """Open the targets' clients; raises ConfigError for one that cannot work."""
        for target in self.dispatcher.targets:
            try:
                await target.open()
            except TargetSetupError as exc:
                raise ConfigError([f"notifications.targets.{target.name}: {exc}"]) from None
        self.dispatcher.start()

    def reload(self, fresh: NotificationSettings) -> None:
        """SIGHUP: new rules, alarm and storm-control settings. Device state carries over for
        rules that did not change; targets, retries and ``enabled`` need a restart."""
        engine = fresh.engine()
        engine.adopt(self.engine)
        self.engine = engine
        kept = ("enabled", "targets", "retry")
        if any(getattr(fresh, key) != getattr(self.settings, key) for key in kept):
            log.warning("notification targets, retry and enabled change only on restart")
        self.settings = fresh
        log.info("notification rules reloaded", rules=len(engine.rules))

    def collector(self) -> NotificationCollector:
        return NotificationCollector(
            self.dispatcher.stats, self.dispatcher.queued, lambda: self.engine.tracked_devices
        )

    async def close(self, deadline: float) -> None:
        await self.dispatcher.close(deadline)
