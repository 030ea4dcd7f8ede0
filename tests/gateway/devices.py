"""Minimal blocking device clients for integration tests (loopback, bounded timeouts)."""

from __future__ import annotations

import socket
import struct
import threading
import time

from tests.parser.streams import evb1_frame, evb1_login


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


class Sender:
    """One EVB1 device pipelining CELLS frames with up to ``window`` un-ACKed, like a real unit.

    A writer thread sends while the window allows; a reader thread matches ACKs by seq and
    records the frames the gateway acknowledged.
    """

    def __init__(self, port: int, imei: str, window: int = 8) -> None:
        self.dev = DeviceSocket(port, timeout=1)
        self.imei = imei
        self.window = threading.Semaphore(window)
        self.sent: dict[int, bytes] = {}
        self.acked: list[bytes] = []
        self.stop = threading.Event()
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._write, self._read)]

    def start(self) -> None:
        # Frames may follow the login at once: the gateway reads a connection in order.
        self.dev.send(evb1_login(self.imei))
        for t in self._threads:
            t.start()

    def join(self, timeout: float) -> None:
        for t in self._threads:
            t.join(timeout)

    def _write(self) -> None:
        seq = 0
        while not self.stop.is_set():
            if not self.window.acquire(timeout=0.1):
                continue
            seq = seq % 65535 + 1
            body = struct.pack(">IB", 1767225600 + seq, 100) + b"\x0c\xe4" * 100
            frame = evb1_frame(5, seq, body)
            self.sent[seq] = frame
            view = memoryview(frame)
            while view and not self.stop.is_set():
                try:
                    view = view[self.dev.sock.send(view) :]
                except TimeoutError:
                    continue  # paused by the gateway: keep trying, as a unit would
                except OSError:
                    return

    def _read(self) -> None:
        pending = b""
        while True:
            try:
                chunk = self.dev.sock.recv(65536)
            except TimeoutError:
                if self.stop.is_set():
                    return
                continue
            except OSError:
                return
            if not chunk:
                return
            pending += chunk
            while len(pending) >= 11:
                (seq,) = struct.unpack(">H", pending[4:6])
                acked_type = pending[8]
                pending = pending[11:]
                if acked_type == 1:
                    continue  # a login ACK that arrived late (the gateway was paused)
                self.acked.append(self.sent[seq])
                self.window.release()
