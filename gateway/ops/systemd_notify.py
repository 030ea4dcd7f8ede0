"""systemd's readiness protocol (sd_notify(3)) without libsystemd.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` — a filesystem path, or ``@name`` for a
socket in the abstract namespace — and waits for ``READY=1`` before it counts the service as
started; with ``WatchdogSec=`` it also passes ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``) and kills
the service when no ``WATCHDOG=1`` arrives within that interval. Each message is one datagram of
newline-separated ``KEY=VALUE`` lines, sent from the main process (``NotifyAccess=main``).

Outside systemd every call is a no-op. A failed send is logged once and otherwise ignored, as
libsystemd does: a missing or restarting systemd must never stop the gateway.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from typing import TypeGuard

import structlog

log = structlog.get_logger("gateway.systemd")

# sd_watchdog_enabled(3) treats this value (USEC_INFINITY) as invalid, like zero.
_USEC_INFINITY = 2**64 - 1


class Notifier:
    """Sends sd_notify messages to ``socket_path`` (the value of ``$NOTIFY_SOCKET``).

    ``watchdog_usec`` and ``watchdog_pid`` are the values of ``$WATCHDOG_USEC`` and
    ``$WATCHDOG_PID``. Only :meth:`from_environment` reads the environment.
    """

    def __init__(
        self,
        socket_path: str | None,
        watchdog_usec: str | None = None,
        watchdog_pid: str | None = None,
    ) -> None:
        self._watchdog_usec = watchdog_usec
        self._watchdog_pid = watchdog_pid
        self._sock: socket.socket | None = None
        self._warned = False
        self._address: str | None = None
        if socket_path and socket_path.startswith("@"):
            # An abstract socket: the name starts with a NUL byte instead of the "@".
            self._address = "\0" + socket_path[1:]
        elif socket_path and socket_path.startswith("/"):
            self._address = socket_path
        elif socket_path:
            # Relative paths are refused by sd_notify too; vsock: addresses (VMs) are not ours.
            self._warn("NOTIFY_SOCKET not supported: systemd notifications off", socket_path)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """A notifier for the socket and watchdog systemd passed in ``environ`` (os.environ)."""
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"), env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID"))

    @property
    def enabled(self) -> bool:
        """True when running under a systemd unit that listens for notifications."""
        return self._address is not None

    def ready(self, status: str) -> None:
        """Startup (or a reload) finished: the service is up."""
        self._send("READY=1", f"STATUS={_one_line(status)}")

    def status(self, text: str) -> None:
        """A free-form line shown by ``systemctl status``."""
        self._send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> None:
        """Keep-alive for ``WatchdogSec=``; send every :meth:`watchdog_interval_s` seconds."""
        self._send("WATCHDOG=1")

    def stopping(self, status: str) -> None:
        """Shutdown began; systemd's stop timeout (``TimeoutStopSec=``) runs from here."""
        self._send("STOPPING=1", f"STATUS={_one_line(status)}")

    def reloading(self) -> None:
        """A reload began; call :meth:`ready` when it finished.

        ``MONOTONIC_USEC`` (CLOCK_MONOTONIC, µs) lets systemd ≥ 253 (``Type=notify-reload``)
        tell this reload from an earlier one.
        """
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send("RELOADING=1", f"MONOTONIC_USEC={now_usec}")

    def watchdog_interval_s(self) -> float | None:
        """Seconds between :meth:`watchdog` calls, or None when no watchdog watches us.

        Half of ``WatchdogSec=``, as sd_watchdog_enabled(3) recommends. ``WATCHDOG_PID``, when
        set, must be our pid: a child that inherited the variables is not the one watched.
        """
        if self._address is None or not _is_decimal(self._watchdog_usec):
            return None
        if self._watchdog_pid is not None and (
            not _is_decimal(self._watchdog_pid) or int(self._watchdog_pid) != os.getpid()
        ):
            return None
        usec = int(self._watchdog_usec)
        if not 0 < usec < _USEC_INFINITY:
            return None
        return usec / 2 / 1_000_000

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, *fields: str) -> None:
        if self._address is None:
            return
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                # Never block the event loop: a full queue on systemd's side drops the message.
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            self._warn(f"systemd notification failed: {exc.strerror or exc}", fields[0])

    def _warn(self, message: str, detail: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning(message, detail=detail, note="logged once; notifications stay best-effort")


def _one_line(text: str) -> str:
    # A newline would start another KEY=VALUE field of the message.
    return " ".join(text.splitlines())


def _is_decimal(value: str | None) -> TypeGuard[str]:
    return value is not None and value.isascii() and value.isdecimal()
