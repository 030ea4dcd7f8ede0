"""structlog set-up: JSON lines when stdout is not a terminal (systemd, containers), a readable
console otherwise. Logs describe connections and lifecycle, never individual frames at info."""

from __future__ import annotations

import logging
import sys

import structlog

from gateway.ops.settings import LogSettings


def configure(settings: LogSettings) -> None:
    as_json = settings.format == "json" or (settings.format == "auto" and not sys.stdout.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[settings.level.upper()]
        ),
        # One write per line: lines of several workers sharing stdout never interleave
        # (a pipe write below PIPE_BUF is atomic).
        logger_factory=structlog.WriteLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
