"""sd_notify without libsystemd: a real AF_UNIX datagram socket plays systemd's side."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from gateway.ops import systemd_notify
from gateway.ops.systemd_notify import Notifier

LogEntries = list[MutableMapping[str, Any]]


class FakeSystemd:
    """The receiving end of ``NOTIFY_SOCKET``: one bound datagram socket."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(2.0)

    def receive(self) -> bytes:
        return self.sock.recv(4096)

    def nothing_pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(4096)
        except BlockingIOError:
            return True
        finally:
            self.sock.settimeout(2.0)
        return False


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[LogEntries]:
    """What the module logs; a fresh logger, so no cached configuration bypasses the capture."""
    with capture_logs() as entries:
        monkeypatch.setattr(systemd_notify, "log", structlog.get_logger("gateway.systemd"))
        yield entries


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[FakeSystemd, str]]:
    path = str(tmp_path / "notify")
    systemd = FakeSystemd(path)
    yield systemd, path
    systemd.sock.close()


@pytest.fixture
def abstract_socket() -> Iterator[tuple[FakeSystemd, str]]:
    name = f"ev-gateway-test-{uuid.uuid4().hex}"
    systemd = FakeSystemd("\0" + name)
    yield systemd, "@" + name
    systemd.sock.close()


@pytest.fixture(params=["path", "abstract"])
def systemd(
    request: pytest.FixtureRequest,
    path_socket: tuple[FakeSystemd, str],
    abstract_socket: tuple[FakeSystemd, str],
) -> tuple[FakeSystemd, str]:
    return path_socket if request.param == "path" else abstract_socket


def test_each_message_is_one_datagram_of_exact_fields(systemd: tuple[FakeSystemd, str]) -> None:
    server, address = systemd
    notifier = Notifier(address)
    assert notifier.enabled
    notifier.ready("3 listeners, sink local")
    assert server.receive() == b"READY=1\nSTATUS=3 listeners, sink local"
    notifier.status("draining")
    assert server.receive() == b"STATUS=draining"
    notifier.watchdog()
    assert server.receive() == b"WATCHDOG=1"
    notifier.stopping("flushing 12 batches")
    assert server.receive() == b"STOPPING=1\nSTATUS=flushing 12 batches"
    assert server.nothing_pending()
    notifier.close()


def test_reloading_carries_the_monotonic_clock_in_microseconds(
    path_socket: tuple[FakeSystemd, str],
) -> None:
    server, address = path_socket
    notifier = Notifier(address)
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = server.receive().split(b"\n")
    assert first == b"RELOADING=1"
    key, _, value = second.partition(b"=")
    assert key == b"MONOTONIC_USEC"
    assert before <= int(value) <= after
    notifier.close()


def test_a_newline_in_a_status_cannot_inject_another_field(
    path_socket: tuple[FakeSystemd, str],
) -> None:
    server, address = path_socket
    notifier = Notifier(address)
    notifier.status("bad\nREADY=1")
    assert server.receive() == b"STATUS=bad READY=1"
    notifier.close()


def test_from_environment_reads_only_the_systemd_variables(
    path_socket: tuple[FakeSystemd, str],
) -> None:
    server, address = path_socket
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    notifier = Notifier.from_environment(env)
    assert notifier.watchdog_interval_s() == 15.0
    notifier.watchdog()
    assert server.receive() == b"WATCHDOG=1"
    notifier.close()


def test_without_a_socket_everything_is_a_no_op(logs: LogEntries) -> None:
    for notifier in (Notifier(None), Notifier(""), Notifier.from_environment({})):
        assert not notifier.enabled
        notifier.ready("up")
        notifier.status("x")
        notifier.watchdog()
        notifier.reloading()
        notifier.stopping("down")
        notifier.close()
        assert notifier.watchdog_interval_s() is None
    assert logs == []
    # Even with a watchdog configured: nobody could be fed without the socket.
    assert Notifier(None, watchdog_usec="30000000").watchdog_interval_s() is None


def test_an_unsupported_address_is_reported_once_and_ignored(logs: LogEntries) -> None:
    notifier = Notifier("relative/notify")
    notifier.ready("up")
    notifier.watchdog()
    assert not notifier.enabled
    assert [entry["log_level"] for entry in logs] == ["warning"]


def test_a_vanished_systemd_is_logged_once_and_never_raises(
    tmp_path: Path, logs: LogEntries
) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    for _ in range(3):
        notifier.ready("up")
        notifier.watchdog()
    assert len(logs) == 1
    assert logs[0]["log_level"] == "warning"
    assert logs[0]["detail"] == "READY=1"
    notifier.close()


def test_a_full_systemd_queue_drops_messages_instead_of_blocking(
    path_socket: tuple[FakeSystemd, str], logs: LogEntries
) -> None:
    server, address = path_socket
    notifier = Notifier(address)
    started = time.monotonic()
    # Nobody reads: the receiver's datagram queue fills (net.unix.max_dgram_qlen) and a
    # blocking send would hang here.
    for _ in range(100_000):
        notifier.watchdog()
        if logs:
            break
    assert time.monotonic() - started < 10
    assert len(logs) == 1
    assert server.receive() == b"WATCHDOG=1"
    notifier.close()


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 15.0),
        ("1000000", "self", 0.5),
        ("30000000", "1", None),  # the variables belong to another process (our parent)
        ("30000000", "x", None),
        ("0", None, None),
        ("", None, None),
        ("-5", None, None),
        (" 30000000", None, None),
        ("3e7", None, None),
        (str(2**64 - 1), None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(
    path_socket: tuple[FakeSystemd, str], usec: str | None, pid: str | None, expected: float | None
) -> None:
    _, address = path_socket
    pid_value = str(os.getpid()) if pid == "self" else pid
    assert Notifier(address, usec, pid_value).watchdog_interval_s() == expected
