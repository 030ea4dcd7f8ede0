"""Minimal blocking device clients for integration tests (loopback, bounded timeouts)."""

from __future__ import annotations

import socket
import time


class DeviceSocket:
    def __init__(self, port: int, timeout: float = 5.0, source: str | None = None) -> None:
        """``source``: the loopback address to connect from (any of 127.0.0.0/8 on Linux)."""
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source, 0) if source else None
        )
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_exact(self, size: int, timeout: float | None = None) -> bytes:
        """Exactly ``size`` bytes, or fewer if the peer closed or the timeout passed."""
        deadline = time.monotonic() + (timeout or self.timeout)
        data = b""
        while len(data) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(size - len(data))
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
        return data

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True once the gateway has closed this connection (EOF or reset) within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if self.sock.recv(65536) == b"":
                    return True
            except ConnectionResetError:
                return True
            except TimeoutError:
                return False
        return False

    def close(self) -> None:
        self.sock.close()
