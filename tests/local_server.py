"""A server process the tests start on a free loopback port, ready on return.

Between ``free_port()`` and the server's bind another process may take the port, so a server
that exits or stalls before it is ready is killed and started again on another port. Its output
goes to a file nobody has to drain while it runs; ``stop`` sends SIGTERM, then SIGKILL after
``stop_timeout_s``, and keeps the output readable afterwards.
"""

from __future__ import annotations

import errno
import random
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from typing import IO, ClassVar

# Some servers (kinesalite) treat port 0 as their default, and ports in the kernel's ephemeral
# range (32768-60999) collided with other processes' outgoing connections: pick one below it.
PORT_RANGE = range(20_000, 32_000)


class LocalServer(ABC):
    name: ClassVar[str]
    start_attempts: ClassVar[int] = 5
    ready_timeout_s: ClassVar[float] = 10.0
    poll_interval_s: ClassVar[float] = 0.05
    stop_timeout_s: ClassVar[float] = 5.0

    port: int
    proc: subprocess.Popen[bytes]

    @abstractmethod
    def command(self, port: int, attempt: int) -> list[str]:
        """The command line of start attempt ``attempt`` (from 0), listening on ``port``."""

    @abstractmethod
    def ready(self) -> bool:
        """Whether the running server answers as itself on ``port`` now."""

    def _start(self, log: IO[bytes]) -> None:
        """Start it, logging to ``log`` (readable and seekable); RuntimeError with its output
        if no attempt got ready."""
        self._log = log
        self._final_output = ""
        failures = []
        for attempt in range(self.start_attempts):
            self.port = free_port()
            self.proc = subprocess.Popen(
                self.command(self.port, attempt),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            if self._wait_ready():
                return
            self.kill()
            failures.append(f"port {self.port}: exit status {self.proc.returncode}")
        output = self.output()
        log.close()
        raise RuntimeError(
            f"{self.name} did not get ready (" + "; ".join(failures) + "):\n" + output
        )

    def _wait_ready(self) -> bool:
        """Poll ``ready``; False if the process exits (the port was taken after all) or stalls."""
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self.ready():
                return True
            time.sleep(self.poll_interval_s)
        return False

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr (so far, or until stop())."""
        if self._log.closed:
            return self._final_output
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self) -> int | None:
        """SIGTERM, SIGKILL after ``stop_timeout_s``; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        if not self._log.closed:
            self._final_output = self.output()
            self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(self.stop_timeout_s)


def free_port() -> int:
    """A random port in PORT_RANGE that 127.0.0.1 can bind right now (released before return)."""
    rng = random.Random()
    for _ in range(100):
        port = rng.randrange(PORT_RANGE.start, PORT_RANGE.stop)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    raise
                continue
            return port
    raise RuntimeError(f"no free port in {PORT_RANGE}")
