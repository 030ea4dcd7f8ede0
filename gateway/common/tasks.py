"""Tasks the gateway cannot run without: if one dies, the process exits.

A background task that dies by a bug (a sink writer, a notification sender, a bridge loop) would
otherwise leave whatever waits on it hanging forever, silently. Exiting with ``EX_SOFTWARE``
lets the supervisor (systemd, the worker supervisor) restart the gateway; nothing un-ACKed is
lost: devices resend it, brokers deliver it again, and the journals are read again at start.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import structlog

log = structlog.get_logger("gateway.common.tasks")

EXIT_SOFTWARE = 70  # sysexits(3) EX_SOFTWARE: an internal error


def exit_if_died(
    what: str, exit: Callable[[int], NoReturn] = os._exit
) -> Callable[[asyncio.Task[Any]], None]:
    """A done-callback: if the task ended with an exception, log it (``"<what> died"``) and
    ``exit`` at once. A cancelled task or one that returned is left alone."""

    def died(task: asyncio.Task[Any]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        log.critical(f"{what} died", task=task.get_name(), error=repr(task.exception()))
        # os._exit skips the interpreter's cleanup, buffered output included: the log line
        # saying why must leave first.
        sys.stdout.flush()
        exit(EXIT_SOFTWARE)

    return died
