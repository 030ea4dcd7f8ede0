"""Real full disks for tests: a small tmpfs mounted by the test (as root) and a ballast file that
takes every byte left on it; and the check that a stream's files hold whole lines only."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def mounted_tmpfs(path: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of ``size_bytes`` at ``path`` (created), unmounted afterwards; skips the test
    when it cannot be mounted (not root, or no CAP_SYS_ADMIN in a container)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)]
    try:
        result = subprocess.run(mount, capture_output=True, text=True, timeout=10, check=False)
    except OSError as exc:  # no mount(8)
        pytest.skip(f"cannot mount a tmpfs: {exc}")
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {result.stderr.strip()}")
    try:
        yield path
    finally:
        # Lazy: a process that failed the test may still hold files open on it.
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=10, check=False)


def fill(directory: Path) -> Path:
    """Write a ballast file in ``directory`` until its file system refuses even one byte."""
    ballast = directory / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for size in (1 << 20, 1 << 12, 1):
            chunk = b"\0" * size
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return ballast


def torn_lines(data_dir: Path, stream: str) -> list[str]:
    """Where ``stream``'s files hold anything but whole JSON lines ("file: reason")."""
    found = []
    for path in sorted((data_dir / stream).glob("*.jsonl")):
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            found.append(f"{path.name}: ends inside a line")
        for number, line in enumerate(data.split(b"\n")[:-1], 1):
            try:
                json.loads(line)
            except ValueError:
                found.append(f"{path.name}:{number}: not a JSON line")
    return found
